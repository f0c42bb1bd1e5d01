"""Where the visual grids sit in ``input_ids``, from the rule the exporter wrote (numpy only).

The rules mirror the adapters' own (``Adapter.split_runs``, Qwen2-VL's ``image_grid_thw``
grids): the exporter writes the family's rule and numbers into ``scr_config.json`` so the
runtime needs neither torch nor the adapter. The parity tests check that both give the same plans.
"""

from __future__ import annotations

import numpy as np

from scr_core import LayoutError, VisualGrid, VisualLayout


def locate(rule: dict, input_ids: np.ndarray, image_grid_thw: np.ndarray | None = None) -> VisualLayout:
    kind = rule.get("kind")
    if kind == "token_runs":
        return token_runs(input_ids, int(rule["image_token_id"]), *(int(v) for v in rule["grid"]))
    if kind == "thw_runs":
        if image_grid_thw is None:
            raise LayoutError("the processor output has no image_grid_thw; was an image passed to the processor?")
        merge = int(rule["merge_size"])
        sizes = [(int(h) // merge, int(w) // merge) for _, h, w in np.asarray(image_grid_thw).tolist()]
        return sized_runs(input_ids, int(rule["image_token_id"]), sizes)
    if kind == "spans":
        return spans(input_ids, int(rule["start_token_id"]), int(rule["end_token_id"]), int(rule["image_token_id"]),
                     *(int(v) for v in rule["grid"]))
    raise LayoutError(f"unknown layout rule {kind!r} in scr_config.json; re-export with this version")


def token_runs(input_ids: np.ndarray, token_id: int, height: int, width: int) -> VisualLayout:
    """Every image is ``height*width`` copies of ``token_id``, row-major (LLaVA, Chameleon)."""
    per_image = height * width
    grids = []
    for sample, row in enumerate(np.asarray(input_ids)):
        positions = np.flatnonzero(row == token_id).astype(np.int64)
        if positions.size == 0 or positions.size % per_image:
            raise LayoutError(f"prompt {sample} has {positions.size} image tokens (id {token_id}); expected a "
                              f"multiple of {per_image} ({height}x{width} per image)")
        for image, chunk in enumerate(positions.reshape(-1, per_image)):
            grids.append(VisualGrid(sample, height, width, chunk, image))
    return VisualLayout(tuple(grids), int(input_ids.shape[0]), int(input_ids.shape[1]))


def sized_runs(input_ids: np.ndarray, token_id: int, sizes: list[tuple[int, int]]) -> VisualLayout:
    """Images of their own sizes (processor order), each a run of ``h*w`` ``token_id`` (Qwen2-VL)."""
    grids, queue = [], iter(sizes)
    for sample, row in enumerate(np.asarray(input_ids)):
        positions = np.flatnonzero(row == token_id).astype(np.int64)
        used, image = 0, 0
        while used < positions.size:
            size = next(queue, None)
            if size is None:
                raise LayoutError(f"prompt {sample} has more image tokens than image_grid_thw accounts for")
            height, width = size
            chunk = positions[used:used + height * width]
            if chunk.size != height * width:
                raise LayoutError(f"prompt {sample}: image {image} needs {height * width} tokens but only "
                                  f"{chunk.size} are left")
            grids.append(VisualGrid(sample, height, width, chunk, image))
            used += chunk.size
            image += 1
    if next(queue, None) is not None:
        raise LayoutError("image_grid_thw lists more images than the prompts have image tokens")
    return VisualLayout(tuple(grids), int(input_ids.shape[0]), int(input_ids.shape[1]))


def spans(input_ids: np.ndarray, start_id: int, end_id: int, inner_id: int, height: int, width: int) -> VisualLayout:
    """Every image between a start and an end token, ``n`` grids of ``height*width`` inside (InternVL tiles)."""
    per_grid = height * width
    grids = []
    for sample, row in enumerate(np.asarray(input_ids)):
        starts, ends = np.flatnonzero(row == start_id).tolist(), np.flatnonzero(row == end_id).tolist()
        if not starts or len(starts) != len(ends) or any(e <= s for s, e in zip(starts, ends)):
            raise LayoutError(f"prompt {sample}: image start tokens (id {start_id}) and end tokens (id {end_id}) "
                              "do not pair up")
        for image, (start, end) in enumerate(zip(starts, ends)):
            inner = np.arange(start + 1, end, dtype=np.int64)
            if inner.size == 0 or inner.size % per_grid or not (row[start + 1:end] == inner_id).all():
                raise LayoutError(f"prompt {sample}, image {image}: {inner.size} tokens between the start and end "
                                  f"tokens; expected a multiple of {per_grid} image tokens")
            for chunk in inner.reshape(-1, per_grid):
                grids.append(VisualGrid(sample, height, width, chunk, image))
    return VisualLayout(tuple(grids), int(input_ids.shape[0]), int(input_ids.shape[1]))
