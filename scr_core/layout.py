"""Where the visual tokens sit in a batch of token sequences, and what part of which image each grid shows.

numpy only (no torch): the onnxruntime path and the result types use it too, and the families' layout
rules live here as data (``layout_from_rule``) for both runtimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

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
    ``frames`` is set on the grids of a video clip: the clip's sampled frames ``[first, stop)`` the grid
    (one temporal slice) shows; a slice is a grid of its own with its own budget (``selection.slice_budget``),
    and ``image`` is then the clip's place among the prompt's images and clips.
    """

    sample: int
    height: int
    width: int
    positions: np.ndarray  # int64, shape (height * width,)
    image: int | None = None
    region: tuple[float, float, float, float] = FULL_REGION
    frames: tuple[int, int] | None = None

    @property
    def is_slice(self) -> bool:
        """One temporal slice of a video clip."""
        return self.frames is not None

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
    return _runs(input_ids, token_id, [[(h, w, None)] for h, w in sizes], "image", "image_grid_thw")


def _runs(input_ids, token_id: int, items: Sequence[Sequence[tuple]], what: str, source: str) -> VisualLayout:
    """Per sample, the positions of ``token_id`` cut into the grids of ``items`` in order: each item (an
    image, a clip) is a list of (h, w, frames) grids whose ``h*w`` tokens follow one another."""
    ids = _rows(input_ids)
    grids, queue = [], iter(enumerate(items))
    for sample, row in enumerate(ids):
        positions = np.flatnonzero(row == token_id).astype(np.int64)
        used, number = 0, 0
        while used < positions.size:
            index, parts = next(queue, (None, None))
            if parts is None:
                raise LayoutError(f"prompt {sample} has more {what} tokens (id {token_id}) than {source} accounts for")
            for height, width, frames in parts:
                chunk = positions[used:used + height * width]
                if chunk.size != height * width:
                    raise LayoutError(f"prompt {sample}: {what} {index} needs {height * width} tokens "
                                      f"({height}x{width}) "
                                      f"but only {chunk.size} {what} tokens are left")
                grids.append(VisualGrid(sample, height, width, chunk, number, frames=frames))
                used += chunk.size
            number += 1
    if next(queue, None) is not None:
        raise LayoutError(f"{source} lists more {what}s than the prompts have {what} tokens")
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


def video_runs(input_ids, token_id: int, video_grid_thw, merge_size: int, frames_per_slice: int) -> VisualLayout:
    """Clips whose every temporal slice is a run of ``h*w`` copies of one token, slice after slice, in the
    processor's order: ``video_grid_thw`` = (slices, H, W) patches per clip before the merge (Qwen2-VL's
    video grid). Text between slices (Qwen3-VL's timestamps) is skipped: only the token's positions count."""
    clips = []
    for index, (t, h, w) in enumerate(_rows(video_grid_thw).tolist()):
        if h % merge_size or w % merge_size:
            raise LayoutError(f"clip {index} has grid (t, h, w) = ({t}, {h}, {w}); h and w must be divisible by "
                              f"the merge size {merge_size}")
        clips.append([(h // merge_size, w // merge_size, (step * frames_per_slice, (step + 1) * frames_per_slice))
                      for step in range(int(t))])
    return _runs(input_ids, token_id, clips, "clip", "video_grid_thw")


def by_appearance(layouts: Sequence[VisualLayout]) -> VisualLayout:
    """The grids of several layouts of one batch (images, clips) as one, in sequence order, with ``image``
    renumbered per prompt in order of appearance: the place of each image or clip among the prompt's."""
    first = layouts[0]
    grids = sorted((g for layout in layouts for g in layout.grids), key=lambda g: (g.sample, int(g.positions[0])))
    renumbered: list[VisualGrid] = []
    seen: dict[tuple, int] = {}
    for g in grids:
        key = (g.sample, g.is_slice, g.image if g.image is not None else ("own", int(g.positions[0])))
        if key not in seen:
            seen[key] = sum(1 for k in seen if k[0] == g.sample)
        renumbered.append(replace(g, image=seen[key]))
    return VisualLayout(tuple(renumbered), first.batch_size, first.seq_len)


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


# each rule's required fields, all integers but ``grid`` ([rows, cols]); ``token_runs`` may add ``lead``
RULE_FIELDS = {"token_runs": ("image_token_id", "grid"), "thw_runs": ("image_token_id", "merge_size"),
               "spans": ("start_token_id", "end_token_id", "image_token_id", "grid")}


def layout_from_rule(rule: dict, input_ids, image_grid_thw=None, video_grid_thw=None) -> VisualLayout:
    """The grids by a family's layout rule as data (``{"kind": "token_runs" | "thw_runs" | "spans", ...}``,
    what the adapter writes into an export's ``scr_config.json``). A ``thw_runs`` rule with a
    ``video_token_id`` places clips too (``video_runs``), ``frames_per_slice`` frames per slice."""
    kind = rule.get("kind")
    if kind == "token_runs":
        height, width = (int(v) for v in rule["grid"])
        return token_runs(input_ids, int(rule["image_token_id"]), height, width, lead=int(rule.get("lead", 0)))
    if kind == "thw_runs":
        clips = video_grid_thw is not None and "video_token_id" in rule
        if image_grid_thw is None and not clips:
            raise LayoutError("the processor output has no image_grid_thw; was an image passed to the processor?")
        merge = int(rule["merge_size"])
        images = sized_runs(input_ids, int(rule["image_token_id"]),
                            merged_sizes(image_grid_thw, merge) if image_grid_thw is not None else [])
        if not clips:
            return images
        videos = video_runs(input_ids, int(rule["video_token_id"]), video_grid_thw, merge,
                            int(rule.get("frames_per_slice", 1)))
        return by_appearance([images, videos])
    if kind == "spans":
        height, width = (int(v) for v in rule["grid"])
        return spans(input_ids, int(rule["start_token_id"]), int(rule["end_token_id"]), height, width,
                     inner_id=int(rule["image_token_id"]))
    raise LayoutError(f"unknown layout rule {kind!r}; export the folder again with this version")
