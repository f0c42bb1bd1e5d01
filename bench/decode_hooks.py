"""Decode steps with the SCR hooks installed vs none.

The hooks act on the prefill only; on a decode step (one token) they return at once. This
measures that claim: the same prepared batch generates with a plan (hooks on every hooked
layer for the whole generation) and without, interleaved, and the pipeline's own per-token
decode time (model forwards only) is compared.
"""

from __future__ import annotations

from .context import Context, check_length
from .timing import column, interleave, paired, stats


def run(ctx: Context) -> list[dict]:
    pipe, s = ctx.pipe, ctx.settings
    n = s.hook_tokens
    cells = []
    for batch in s.batches:
        prepared = pipe.prepare(ctx.images(batch))
        cfg = ctx.config()
        plans = [d.plan for d in pipe.diagnose(prepared, config=cfg)]

        def decode(plan, name):
            def run():
                results = pipe.generate(prepared, scr=plan, max_new_tokens=n, min_new_tokens=n)
                check_length(results, n, name)
                return {"ms": results[0].timings.decode_ms_per_token}

            return run

        rounds = interleave({"hooks": decode(plans, "hooked decode"), "none": decode(None, "plain decode")},
                            s.repeats, s.warmup, ctx.device)
        hooks, none = column(rounds["hooks"]), column(rounds["none"])
        cell = {"batch": batch, "new_tokens": n, "hook_layers": list(cfg.hook_layers),
                "ms_per_token": {"hooks": stats(hooks), "none": stats(none)},
                "ratio": paired(hooks, none, lambda a, b: a / b)}
        cells.append(cell)
        ctx.log(f"decode hooks, batch {batch}: {cell['ms_per_token']['hooks']['median']:.3f} ms/token with hooks, "
                f"{cell['ms_per_token']['none']['median']:.3f} without (x{cell['ratio']['median']:.4f})")
    return cells
