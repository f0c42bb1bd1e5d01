"""Benchmark images: deterministic, smooth colour fields of a given size.

Why not noise or a blank: the content does not change the cost, but a smooth field gives the
vision tower and the diagnostic map some structure, like a photo, and each prompt of a batch
its own image (Uniform-Smooth seeds its sources by the image's bytes).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def images(count: int, size: tuple[int, int], seed: int = 0) -> list[Image.Image]:
    """``count`` RGB images of ``size`` (width, height), the same for the same arguments."""
    rng = np.random.default_rng(seed)
    width, height = size
    out = []
    for _ in range(count):
        coarse = (rng.random((max(2, height // 32), max(2, width // 32), 3)) * 255).astype(np.uint8)
        out.append(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
    return out
