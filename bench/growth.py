"""How SCR's cost grows with visual tokens and decoder depth.

Each point is a random model of the base shape with one thing changed (24x24 -> 32x32 visual
tokens, a Qwen2-VL dynamic grid, 16/32/48 layers), timed end to end at one forced length,
batch 1: vanilla, SCR and the early exit (two-pass limit), interleaved. Growth with new
tokens comes from the end-to-end section's lengths. Always random models: the axis is the
shape, so ``--model`` does not apply here.
"""

from __future__ import annotations

from . import shapes
from .context import Context, check_length, timings
from .timing import column, interleave, paired, stats


def run(ctx: Context) -> list[dict]:
    s = ctx.settings
    points, measured = [], {}
    for axis, label, shape in shapes.growth_shapes(s.shape, s.quick):
        if shape not in measured:  # the base shape sits on both axes: measured once
            reuse = shape == s.shape and not s.model
            pipe = ctx.pipe if reuse else shapes.build(shape, s.device, ctx.dtype(), s.seed)
            try:
                measured[shape] = measure(ctx, pipe, shape)
            finally:
                if not reuse:
                    pipe.release()
        point = {**measured[shape], "axis": axis, "label": label}
        points.append(point)
        ctx.log(f"growth, {axis} {label} ({point['visual_tokens']} visual tokens, {point['depth']} layers): "
                f"SCR x{point['ratios']['scr/vanilla']['median']:.3f} of vanilla, "
                f"x{point['ratios']['scr/two_pass_limit']['median']:.3f} of the two-pass limit, "
                f"diagnostic x{point['ratios']['diagnostic/prefill']['median']:.3f} of the prefill")
    return points


def measure(ctx: Context, pipe, shape: shapes.Shape) -> dict:
    return {"family": shape.family, "shape": shape.to_dict(),
            **timed(ctx, pipe, ctx.images(1, shape.image), ctx.settings.growth_tokens)}


def timed(ctx: Context, pipe, images, n: int) -> dict:
    """Vanilla, SCR and the early exit on ``images`` (one prompt) at ``n`` forced new tokens, interleaved:
    times, ratios and the two-pass limit (the video section measures a clip with it too)."""
    s = ctx.settings
    prepared = pipe.prepare(images)
    cfg = ctx.config(pipe)
    forced = {"max_new_tokens": n, "min_new_tokens": n}

    def caption(scr, name):
        def run():
            results = pipe.caption(images, scr=scr, **forced)
            check_length(results, n, name)
            return timings(results)

        return run

    rounds = interleave({
        "vanilla": caption(None, "vanilla"),
        "scr": caption(cfg, "SCR"),
        "early_exit": lambda: {"ms": pipe.early_exit(prepared, last_layer=max(cfg.diag_layers))},
    }, s.repeats, s.warmup, ctx.device)
    ms = {name: column(r) for name, r in rounds.items()}
    limit = [v + e for v, e in zip(ms["vanilla"], ms["early_exit"])]
    div = lambda a, b: a / b  # noqa: E731
    return {
        "visual_tokens": sum(g.height * g.width for g in prepared.layout.grids_of(0)),
        "depth": pipe.depth,
        "new_tokens": n,
        "ms": {**{name: stats(v) for name, v in ms.items()}, "two_pass_limit": stats(limit)},
        "ratios": {
            "scr/vanilla": paired(ms["scr"], ms["vanilla"], div),
            "scr/two_pass_limit": paired(ms["scr"], limit, div),
            "two_pass_limit/vanilla": paired(limit, ms["vanilla"], div),
            "diagnostic/prefill": paired(column(rounds["scr"], "diagnostic_ms"), column(rounds["scr"], "prefill_ms"),
                                         div),
        },
        "overhead_ms": paired(ms["scr"], ms["vanilla"], lambda a, b: a - b),
    }
