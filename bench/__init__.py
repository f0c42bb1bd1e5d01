"""Performance benchmarks of SCR: ``python -m bench [--quick] [--json out.json]``.

Why a package of its own: the numbers docs/performance.md quotes must be reproducible on a user's
hardware and model, with the variants interleaved in one process so that a busy machine
slows them alike. ``python -m bench --report out.json`` renders its tables and the
plot from the JSON alone (no torch needed).
"""
