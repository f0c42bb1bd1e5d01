"""Where the visual tokens sit in a batch of token sequences, and what part of which image each grid shows.

numpy only (no torch): the onnxruntime path and the result types use it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FULL_REGION = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class VisualGrid:
    """One image (or tile) as it appears in sample ``sample``'s sequence.

    ``positions[i]`` is the sequence position of grid patch ``i`` (row-major over height x width).
    ``image`` numbers the images of the sample (0, 1, ...) for families that split one image into
    several grids (tiles + thumbnail): grids of one image share it and share one K budget
    (``Adapter.source_budgets``). ``None`` means the grid is an image of its own.
    ``region`` is the part of that image the grid shows, as fractions (x0, y0, x1, y1) of its
    width and height: the whole image for most families, one tile for InternVL's tiling. It is
    only used to draw heatmaps.
    """

    sample: int
    height: int
    width: int
    positions: np.ndarray  # int64, shape (height * width,)
    image: int | None = None
    region: tuple[float, float, float, float] = FULL_REGION

    @property
    def is_full_image(self) -> bool:
        return tuple(self.region) == FULL_REGION


@dataclass(frozen=True)
class VisualLayout:
    """All visual grids of a batch of ``batch_size`` sequences of length ``seq_len`` (left-padded)."""

    grids: tuple[VisualGrid, ...]
    batch_size: int
    seq_len: int

    def grids_of(self, sample: int) -> tuple[VisualGrid, ...]:
        return tuple(g for g in self.grids if g.sample == sample)

    def text_query_start(self, sample: int) -> int:
        """First position after the sample's last visual token: where post-image text starts."""
        return int(max(g.positions.max() for g in self.grids_of(sample))) + 1
