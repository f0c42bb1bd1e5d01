"""Render a diagnostic map over its image: the picture users look at to trust (or not) the plan."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .selection import GridPlan


def render_heatmap(image: Image.Image, attention: np.ndarray, plan: GridPlan | None = None,
                   alpha: float = 0.55, size: int = 448) -> Image.Image:
    """Attention map (H, W) upsampled over ``image``; sources outlined red, neighbours cyan."""
    from matplotlib import colormaps

    base = image.convert("RGB").resize((size, size), Image.BICUBIC)
    values = np.asarray(attention, dtype=np.float64)
    span = values.max() - values.min()
    norm = (values - values.min()) / span if span > 0 else np.zeros_like(values)
    colours = (colormaps["inferno"](norm)[..., :3] * 255).astype(np.uint8)
    overlay = Image.fromarray(colours).resize((size, size), Image.NEAREST)
    out = Image.blend(base, overlay, alpha)
    if plan is not None:
        draw = ImageDraw.Draw(out)
        cell_h, cell_w = size / plan.height, size / plan.width

        def box(index: int) -> tuple[float, float, float, float]:
            row, col = divmod(index, plan.width)
            return (col * cell_w + 1, row * cell_h + 1, (col + 1) * cell_w - 2, (row + 1) * cell_h - 2)

        for index in plan.neighbours:
            draw.rectangle(box(index), outline=(0, 220, 255), width=1)
        for index in plan.sources:
            draw.rectangle(box(index), outline=(255, 40, 40), width=3)
    return out
