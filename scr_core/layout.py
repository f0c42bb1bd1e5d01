"""Where the visual tokens sit in a batch of token sequences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VisualGrid:
    """One image (or tile) as it appears in sample ``sample``'s sequence.

    ``positions[i]`` is the sequence position of grid patch ``i`` (row-major over height x width).
    ``image`` numbers the images of the sample (0, 1, ...) for families that split one image into
    several grids (tiles + thumbnail): grids of one image share it and share one K budget
    (``Adapter.source_budgets``). ``None`` means the grid is an image of its own.
    """

    sample: int
    height: int
    width: int
    positions: np.ndarray  # int64, shape (height * width,)
    image: int | None = None


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
