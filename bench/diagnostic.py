"""The diagnostic pass against the naive one and against one vanilla prefill.

Four calls on one prepared batch (vision features shared), interleaved: the diagnostic as
shipped (early exit, attention rows captured, plan selected), the bare early exit (its
floor), the naive full-depth eager diagnostic, and the prefill of a vanilla generation (the
model forward alone, from the pipeline's timings). Then the peak memory of each call.
"""

from __future__ import annotations

import statistics

from . import memory
from .context import Context
from .naive import largest_difference, naive_maps
from .timing import column, interleave, paired, stats

CALLS = ("diagnostic", "early_exit", "naive_eager", "prefill")


def run(ctx: Context) -> list[dict]:
    cells = []
    for batch in ctx.settings.batches:
        cell = measure(ctx, batch)
        cells.append(cell)
        ms, peak = cell["ms"], cell["peak_bytes"]
        ctx.log(f"diagnostic, batch {batch}: " + ", ".join(
            f"{name} {ms[name]['median']:.1f} ms" + ("" if peak[name] is None else f" / {peak[name] / 2**20:.1f} MiB")
            for name in CALLS))
    return cells


def measure(ctx: Context, batch: int) -> dict:
    pipe, s = ctx.pipe, ctx.settings
    prepared = pipe.prepare(ctx.images(batch))
    cfg = ctx.config()
    last = max(cfg.diag_layers)
    calls = {
        "diagnostic": lambda: pipe.diagnose(prepared, config=cfg),
        "early_exit": lambda: pipe.early_exit(prepared, last_layer=last),
        "naive_eager": lambda: naive_maps(pipe, prepared, cfg),
        "prefill": lambda: pipe.generate(prepared, scr=None, max_new_tokens=1),
    }
    own_time = {"early_exit": lambda value: value, "prefill": lambda results: results[0].timings.prefill_ms}

    def timed(name):
        def run():
            value = calls[name]()
            return {"ms": own_time[name](value)} if name in own_time else None

        return run

    rounds = interleave({name: timed(name) for name in CALLS}, s.repeats, s.warmup, ctx.device)
    ms = {name: column(r) for name, r in rounds.items()}
    peaks = {name: _median_peak(calls[name], ctx.device, s.memory_repeats) for name in CALLS}
    shipped = [d.maps for d in pipe.diagnose(prepared, config=cfg)]
    return {
        "batch": batch,
        "ms": {name: stats(v) for name, v in ms.items()},
        "ratios": {f"{name}/prefill": paired(ms[name], ms["prefill"], lambda a, b: a / b)
                   for name in ("diagnostic", "early_exit", "naive_eager")},
        "peak_bytes": peaks,
        "memory_ratios": {f"{name}/prefill": _ratio(peaks[name], peaks["prefill"])
                          for name in ("diagnostic", "early_exit", "naive_eager")},
        "memory_method": memory.method(ctx.device),
        "naive_max_abs_diff": largest_difference(naive_maps(pipe, prepared, cfg), shipped),
    }


def _median_peak(call, device: str, repeats: int) -> int | None:
    values = [memory.peak_bytes(call, device) for _ in range(max(1, repeats))]
    if any(v is None for v in values):
        return None
    return int(statistics.median(values))


def _ratio(a: int | None, b: int | None) -> float | None:
    return a / b if a is not None and b else None
