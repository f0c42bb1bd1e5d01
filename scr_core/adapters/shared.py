"""Rules shared by the newer families' adapters: hooked layers as a fraction of depth, and one
K budget per image split over that image's grids.

Hooked layers. The paper has no numbers for these families; they get the same fraction of
their decoder depth as the paper's rule for the nearest family:

* ``LLAVA_FRACTION`` = 12/32: LLaVA-1.5-7B hooks layers 0..11 of 32;
* ``QWEN_FRACTION`` = 16/28: Qwen2-VL-7B hooks layers 0..15 of 28.

``fraction_range(f, depth)`` = layers 0 .. round(f·depth) − 1 (at least one layer).

Shared K. A family that shows one image as several grids (a base view plus a high-resolution
view, tiles plus a global image, pan-and-scan crops) gives the image one budget of K,
split over its grids in proportion to their diagnostic attention mass, exactly InternVL's
rule (``Adapter.shares_k``: largest-remainder rounding, capped by what each
grid can hold).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..config import SCRConfig
from ..layout import VisualGrid
from ..selection import proportional_budgets, source_capacity

LLAVA_FRACTION = 12 / 32
QWEN_FRACTION = 16 / 28


def fraction_range(fraction: float, depth: int) -> tuple[int, ...]:
    """Layers 0 .. round(fraction·depth) − 1 of a decoder with ``depth`` layers (at least layer 0)."""
    return tuple(range(min(depth, max(1, round(fraction * depth)))))


def shared_budgets(grids: Sequence[VisualGrid], maps: Sequence[np.ndarray], cfg: SCRConfig) -> list[int]:
    """K per image (grids with the same ``image``), split over its grids by attention mass."""
    budgets = [cfg.k] * len(maps)
    by_image: dict[object, list[int]] = {}
    for index, grid in enumerate(grids):
        by_image.setdefault(index if grid.image is None else grid.image, []).append(index)
    for members in by_image.values():
        if len(members) < 2:
            continue
        masses = [float(np.sum(maps[i])) for i in members]
        caps = [source_capacity(grids[i].height, grids[i].width, cfg.exclude_border) for i in members]
        for i, budget in zip(members, proportional_budgets(cfg.k, masses, caps)):
            budgets[i] = budget
    return budgets


def prepare_grouped(adapter, images: Sequence[Sequence[Image.Image]], prompts: Sequence[str]) -> dict:
    """``Adapter.prepare`` with the images passed to the processor grouped per prompt.

    Processors that count images per prompt (Gemma 3) or treat a prompt's several images
    differently (LLaVA-OneVision) need the nesting a flat list loses.
    """
    texts = [adapter.format_prompt(p, len(imgs)) for p, imgs in zip(prompts, images)]
    return dict(adapter.processor(images=[list(imgs) for imgs in images], text=texts, return_tensors="pt",
                                  padding=True, padding_side="left", **adapter.processor_kwargs()))
