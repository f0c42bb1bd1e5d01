"""Where the visual tokens sit in a batch of token sequences, and what part of which image each grid shows.

numpy only (no torch): the onnxruntime path and the result types use it too, and the families' layout
rules live here as data (``layout_from_rule``) for both runtimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import LayoutError

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


# -- the layout rules: where a family's processor puts each image's tokens ---------------------------------
# Data-driven and numpy only, so the PyTorch adapters and the onnxruntime runner (which reads the rule an
# adapter wrote into scr_config.json) find the same grids with the same code.

def _rows(input_ids) -> np.ndarray:
    """``input_ids`` (a torch tensor on any device, or an array) as a 2-D numpy array."""
    if hasattr(input_ids, "detach"):
        input_ids = input_ids.detach().cpu().numpy()
    return np.asarray(input_ids)


def token_runs(input_ids, token_id: int, height: int, width: int, lead: int = 0) -> VisualLayout:
    """Every image is ``height*width`` copies of one token, row-major (after ``lead`` copies that are no
    patch, e.g. a CLS feature a LLaVA keeps): LLaVA, Chameleon, Gemma 3."""
    ids = _rows(input_ids)
    per_image = height * width + lead
    grids = []
    for sample, row in enumerate(ids):
        positions = np.flatnonzero(row == token_id).astype(np.int64)
        if positions.size == 0 or positions.size % per_image:
            raise LayoutError(
                f"prompt {sample} has {positions.size} image tokens (id {token_id}); expected a multiple of "
                f"{per_image} ({'CLS + ' if lead else ''}{height}x{width} per image). Was the prompt built by "
                "the model's processor?")
        for image, chunk in enumerate(positions.reshape(-1, per_image)):
            grids.append(VisualGrid(sample, height, width, chunk[lead:], image))
    return VisualLayout(tuple(grids), int(ids.shape[0]), int(ids.shape[1]))


def sized_runs(input_ids, token_id: int, sizes: Sequence[tuple[int, int]]) -> VisualLayout:
    """Images of their own sizes, in the processor's order, each a run of ``h*w`` copies of one token
    (Qwen2-VL's ``image_grid_thw`` after the merge)."""
    ids = _rows(input_ids)
    grids, queue = [], iter(enumerate(sizes))
    for sample, row in enumerate(ids):
        positions = np.flatnonzero(row == token_id).astype(np.int64)
        used, image = 0, 0
        while used < positions.size:
            index, size = next(queue, (None, None))
            if size is None:
                raise LayoutError(f"prompt {sample} has more image tokens (id {token_id}) than image_grid_thw "
                                  "accounts for")
            height, width = size
            chunk = positions[used:used + height * width]
            if chunk.size != height * width:
                raise LayoutError(f"prompt {sample}: image {index} needs {height * width} tokens ({height}x{width}) "
                                  f"but only {chunk.size} image tokens are left")
            grids.append(VisualGrid(sample, height, width, chunk, image))
            used += chunk.size
            image += 1
    if next(queue, None) is not None:
        raise LayoutError("image_grid_thw lists more images than the prompts have image tokens")
    return VisualLayout(tuple(grids), int(ids.shape[0]), int(ids.shape[1]))


def spans(input_ids, start_id: int, end_id: int, height: int, width: int, inner_id: int | None = None) -> VisualLayout:
    """Every image between a start and an end token: the tokens strictly inside form ``n`` grids of
    ``height*width`` (1 for one grid per image, more for tiles, which share the pair's ``image`` index);
    ``inner_id``, when given, must be every inside token's id (InternVL)."""
    ids = _rows(input_ids)
    per_grid = height * width
    grids = []
    for sample, row in enumerate(ids):
        starts, ends = np.flatnonzero(row == start_id).tolist(), np.flatnonzero(row == end_id).tolist()
        if len(starts) != len(ends) or any(e <= s for s, e in zip(starts, ends)) or \
                any(s2 <= e for e, s2 in zip(ends, starts[1:])):
            raise LayoutError(f"prompt {sample} has {len(starts)} image-start tokens (id {start_id}) and {len(ends)} "
                              f"image-end tokens (id {end_id}) that do not pair up; was the prompt built by the "
                              "model's processor?")
        if not starts:
            raise LayoutError(f"prompt {sample} has no image span (start id {start_id}, end id {end_id})")
        for image, (start, end) in enumerate(zip(starts, ends)):
            inner = np.arange(start + 1, end, dtype=np.int64)
            if inner.size == 0 or inner.size % per_grid:
                raise LayoutError(f"prompt {sample}, image {image}: {inner.size} tokens between the start and end "
                                  f"tokens; expected a multiple of {per_grid} ({height}x{width} per grid)")
            if inner_id is not None and not bool((row[start + 1:end] == inner_id).all()):
                raise LayoutError(f"prompt {sample}, image {image}: the image span holds tokens other than the "
                                  f"image token (id {inner_id})")
            for chunk in inner.reshape(-1, per_grid):
                grids.append(VisualGrid(sample, height, width, chunk, image))
    return VisualLayout(tuple(grids), int(ids.shape[0]), int(ids.shape[1]))


def merged_sizes(image_grid_thw, merge_size: int) -> list[tuple[int, int]]:
    """(rows, cols) of merged tokens for each image, in processor order: ``image_grid_thw``'s patches over
    the merge (still images only)."""
    sizes = []
    for index, (t, h, w) in enumerate(_rows(image_grid_thw).tolist()):
        if t != 1 or h % merge_size or w % merge_size:
            raise LayoutError(f"image {index} has grid (t, h, w) = ({t}, {h}, {w}); SCR expects still images "
                              f"(t = 1) with h and w divisible by the merge size {merge_size}")
        sizes.append((h // merge_size, w // merge_size))
    return sizes


def layout_from_rule(rule: dict, input_ids, image_grid_thw=None) -> VisualLayout:
    """The grids by a family's layout rule as data (``{"kind": "token_runs" | "thw_runs" | "spans", ...}``,
    what the adapter writes into an export's ``scr_config.json``)."""
    kind = rule.get("kind")
    if kind == "token_runs":
        height, width = (int(v) for v in rule["grid"])
        return token_runs(input_ids, int(rule["image_token_id"]), height, width, lead=int(rule.get("lead", 0)))
    if kind == "thw_runs":
        if image_grid_thw is None:
            raise LayoutError("the processor output has no image_grid_thw; was an image passed to the processor?")
        return sized_runs(input_ids, int(rule["image_token_id"]), merged_sizes(image_grid_thw, int(rule["merge_size"])))
    if kind == "spans":
        height, width = (int(v) for v in rule["grid"])
        return spans(input_ids, int(rule["start_token_id"]), int(rule["end_token_id"]), height, width,
                     inner_id=int(rule["image_token_id"]))
    raise LayoutError(f"unknown layout rule {kind!r}; export the folder again with this version")
