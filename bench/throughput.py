"""Captioning throughput: images per second at batch 1, 4 and 8, on the benchmark model and on the bundled
testbed, for a caption user's folder of images (``Caption Folder``, ``caption-folder --batch-size``).

Each round captions the same images with SCR (a fresh diagnostic per batch) at every batch size in turn
(interleaved rounds, forced length, so every batch decodes the same number of tokens); images/s is the
images over the round's wall time, and the ratio to batch 1 is paired within a round.
"""

from __future__ import annotations

from .context import Context, check_length
from .timing import column, interleave, paired, stats


def run(ctx: Context) -> list[dict]:
    from scr_core import SCRConfig, SCRPipeline, default_model
    from scr_core.demo import DEMO_SCENE, testbed_scene

    s = ctx.settings
    count, n = max(s.throughput_batches), s.throughput_tokens
    models = [("benchmark model", ctx.pipe, ctx.images(count), ctx.config())]
    testbed = SCRPipeline.from_pretrained(default_model()[0], device=s.device)
    scenes = [testbed_scene(DEMO_SCENE[0], index).image for index in range(count)]
    models.append(("testbed", testbed, scenes, testbed.resolve(SCRConfig(k=8))))
    cells = []
    for name, pipe, images, cfg in models:
        def caption_all(batch: int, pipe=pipe, images=images, cfg=cfg):
            def once():
                for start in range(0, len(images), batch):
                    results = pipe.caption(images[start:start + batch], scr=cfg, max_new_tokens=n, min_new_tokens=n)
                    check_length(results, n, f"batch {batch}")
            return once

        rounds = interleave({b: caption_all(b) for b in s.throughput_batches}, s.repeats, s.warmup, ctx.device)
        per_s = {b: [len(images) * 1000 / ms for ms in column(rounds[b])] for b in s.throughput_batches}
        first = min(s.throughput_batches)
        cell = {"model": name, "images": len(images), "new_tokens": n,
                "images_per_s": {str(b): stats(v) for b, v in per_s.items()},
                "speedup": {str(b): paired(v, per_s[first], lambda a, c: a / c) for b, v in per_s.items()}}
        cells.append(cell)
        ctx.log(f"throughput, {name}, {len(images)} images, {n} tokens: " + ", ".join(
            f"batch {b} {cell['images_per_s'][str(b)]['median']:.2f} images/s" for b in s.throughput_batches))
    del testbed
    return cells
