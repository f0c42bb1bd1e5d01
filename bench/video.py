"""SCR on a video clip: its cost against vanilla and the two-pass limit, as ``end_to_end`` for images.

The main model of a run is a LLaVA shape, which has no video processor, so this section builds a random
Qwen2-VL of the base shape (the family that reads clips natively; ``--model`` does not apply) and captions
one synthetic clip (``scr_core.testbed.clips``, written as H.264 and read back with the family's default
sampling, 2 fps): every temporal slice is a grid with its own sources, so the diagnostic pass and the
hooks see several grids per prompt. Reading the clip is timed once, outside the rounds.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from . import shapes
from .context import Context
from .growth import timed

#: (frame width, height, seconds at 8 fps, patch) of the clip: quick = a few 4x6 slices, full = 12x16 slices
QUICK_CLIP = (96, 64, 3, 8)
FULL_CLIP = (448, 336, 10, 14)


def run(ctx: Context) -> list[dict]:
    from scr_core.testbed.clips import moving_square, write_clip

    s = ctx.settings
    width, height, seconds, patch = QUICK_CLIP if s.quick else FULL_CLIP
    shape = s.shape.with_(name=f"qwen2-vl {width}x{height} clip", family="qwen2_vl", patch=patch, image=(width, height))
    pipe = shapes.build(shape, s.device, ctx.dtype(), s.seed)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = write_clip(Path(folder) / "clip.mp4", moving_square(8 * seconds, width, height), fps=8)
            start = time.perf_counter()
            clip = pipe.read_clip(path)
            read_ms = (time.perf_counter() - start) * 1000
        lengths = s.lengths[:1] if s.quick else s.lengths  # quick: show that it runs, one length
        cells = [measure(ctx, pipe, clip, n, read_ms) for n in lengths]
    finally:
        pipe.release()
    for cell in cells:
        ctx.log(f"video, {cell['frames']} frames = {cell['slices']} slices, {cell['visual_tokens']} visual tokens, "
                f"{cell['new_tokens']} new tokens: SCR x{cell['ratios']['scr/vanilla']['median']:.3f} of vanilla, "
                f"x{cell['ratios']['scr/two_pass_limit']['median']:.3f} of the two-pass limit")
    return cells


def measure(ctx: Context, pipe, clip, n: int, read_ms: float) -> dict:
    grids = pipe.prepare(clip).layout.grids_of(0)
    return {**timed(ctx, pipe, clip, n), "frames": len(clip.frames), "slices": len(grids),
            "slice_grid": [grids[0].height, grids[0].width], "read_ms": read_ms}
