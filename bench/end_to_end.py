"""SCR, vanilla and the peers end to end, with the two-pass limit.

Every variant captions the same images from scratch (processor, vision tower, passes,
decode) with a forced length (``min_new_tokens = max_new_tokens``), interleaved in one
process. The two-pass limit of a round is that round's vanilla run plus one early-exit
forward through the last diagnostic layer on shared vision features: what any two-pass
design must pay at least, so SCR's distance from it is what the implementation adds.
"""

from __future__ import annotations

from .context import Context, check_length, timings
from .timing import column, interleave, paired, stats

PEERS = ("uniform", "vcd", "dola")
METHODS = ("scr", *PEERS)
PARTS = ("vision_ms", "diagnostic_ms", "prefill_ms", "decode_ms_per_token")


def run(ctx: Context) -> list[dict]:
    s = ctx.settings
    cells = []
    for batch in s.batches:
        images = ctx.images(batch)
        prepared = ctx.pipe.prepare(images)
        for n in s.lengths:
            rounds = interleave(variants(ctx, images, prepared, n), s.repeats, s.warmup, ctx.device)
            cell = summarise(rounds, batch, n)
            cells.append(cell)
            ctx.log(_line(cell))
    return cells


def variants(ctx: Context, images, prepared, n: int) -> dict:
    from scr_core.eval.baselines import generate_dola, generate_vcd

    pipe = ctx.pipe
    forced = {"max_new_tokens": n, "min_new_tokens": n}
    scr, uniform = ctx.config(), ctx.config(selection="uniform")
    last = max(scr.diag_layers)

    def checked(name, call):
        def run():
            results = call()
            check_length(results, n, name)
            return timings(results)

        return run

    return {
        "vanilla": checked("vanilla", lambda: pipe.caption(images, scr=None, **forced)),
        "scr": checked("SCR", lambda: pipe.caption(images, scr=scr, **forced)),
        "early_exit": lambda: {"ms": pipe.early_exit(prepared, last_layer=last)},
        "uniform": checked("Uniform-Smooth", lambda: pipe.caption(images, scr=uniform, **forced)),
        "vcd": checked("VCD", lambda: generate_vcd(pipe, images, None, **forced)),
        "dola": checked("DoLa", lambda: generate_dola(pipe, images, None, **forced)),
    }


def summarise(rounds: dict[str, list[dict]], batch: int, n: int) -> dict:
    ms = {name: column(r) for name, r in rounds.items()}
    limit = [v + e for v, e in zip(ms["vanilla"], ms["early_exit"])]
    scr_parts = rounds["scr"]
    return {
        "batch": batch,
        "new_tokens": n,
        "ms": {**{name: stats(v) for name, v in ms.items()}, "two_pass_limit": stats(limit)},
        "parts": {name: {key: stats(column(rounds[name], key)) for key in PARTS} for name in ("vanilla", *METHODS)},
        "ratios": {
            "scr/vanilla": paired(ms["scr"], ms["vanilla"], _ratio),
            "scr/two_pass_limit": paired(ms["scr"], limit, _ratio),
            "two_pass_limit/vanilla": paired(limit, ms["vanilla"], _ratio),
            "diagnostic/prefill": paired(column(scr_parts, "diagnostic_ms"), column(scr_parts, "prefill_ms"), _ratio),
            **{f"{peer}/vanilla": paired(ms[peer], ms["vanilla"], _ratio) for peer in PEERS},
        },
        "overhead_ms": {m: paired(ms[m], ms["vanilla"], _minus) for m in METHODS},
        "overhead_ms_per_token": {m: paired(ms[m], ms["vanilla"], lambda a, b: (a - b) / n) for m in METHODS},
    }


def _ratio(a: float, b: float) -> float:
    return a / b


def _minus(a: float, b: float) -> float:
    return a - b


def _line(cell: dict) -> str:
    ms, r = cell["ms"], cell["ratios"]
    return (f"end to end, batch {cell['batch']}, {cell['new_tokens']} tokens: "
            f"vanilla {ms['vanilla']['median']:.1f} ms, SCR {ms['scr']['median']:.1f} ms "
            f"(x{r['scr/vanilla']['median']:.3f}; "
            f"x{r['scr/two_pass_limit']['median']:.3f} of the two-pass limit), "
            + ", ".join(f"{p} x{r[f'{p}/vanilla']['median']:.3f}" for p in PEERS))
