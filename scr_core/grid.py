"""Patch-grid geometry: flat row-major index <-> (row, col), interior mask, 8-neighbourhoods."""

from __future__ import annotations

import numpy as np

# Offsets of the 8-connected neighbourhood, row-major order.
NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = tuple(
    (dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)
)


def to_row_col(index: int, width: int) -> tuple[int, int]:
    return divmod(int(index), width)


def to_index(row: int, col: int, width: int) -> int:
    return row * width + col


def interior_mask(height: int, width: int, exclude_border: bool = True) -> np.ndarray:
    """Boolean (height, width) mask of patches allowed as sources."""
    mask = np.ones((height, width), dtype=bool)
    if exclude_border:
        mask[0, :] = mask[-1, :] = False
        mask[:, 0] = mask[:, -1] = False
    return mask


def neighbours8(index: int, height: int, width: int) -> list[int]:
    """Flat indices of the 8-connected neighbours that lie on the grid (row-major order)."""
    row, col = to_row_col(index, width)
    out = []
    for dr, dc in NEIGHBOUR_OFFSETS:
        r, c = row + dr, col + dc
        if 0 <= r < height and 0 <= c < width:
            out.append(to_index(r, c, width))
    return out
