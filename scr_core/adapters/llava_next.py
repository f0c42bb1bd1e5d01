"""LLaVA-NeXT (``LlavaNextForConditionalGeneration``) and LLaVA-OneVision
(``LlavaOnevisionForConditionalGeneration``): a base view plus an "anyres" high-resolution view.

What the model does (transformers 5.24, ``pack_image_features``): the image processor cuts
the image into tiles of ``vision_config.image_size`` px on the best canvas of
``image_grid_pinpoints``, after one resized copy of the whole image (the base). Every tile
becomes side x side features (side = image_size // patch_size; "default" drops CLIP's CLS,
"full" keeps SigLIP's patches). The image's run of ``<image>`` tokens is then

    base grid (side x side, row-major)
    + high-res grid: the tiles stitched into (rows·side) x (cols·side), the padding the
      processor added around the image cropped off (``unpad_image``), OneVision only:
      bilinearly shrunk when it holds more than ``anyres_max_N`` tiles' worth,
      and one ``image_newline`` feature appended to *every row*: R x (C + 1) tokens.

SCR sees two grids per image: the base (side x side) and the high-res view (R x C) whose
positions skip the newline tokens: a newline is never a source or a neighbour, and since
each grid row is its own row, neighbours never wrap from a row's end to the next row's
start. Both grids show the whole image and share one K, split by attention mass
(``shared.shared_budgets``).

OneVision multi-image prompts: the processor and the model give each image of a prompt with
several images only its base grid followed by a single newline token (side² + 1 tokens),
so such an image is one side x side grid. The adapter passes the images to the processor
grouped per prompt, so this rule applies (flat lists would treat every image as a single one).

OneVision clips (``native_video``): every sampled frame goes through the tower at the base size
and is bilinearly pooled to ceil(side/2) x ceil(side/2) features (``apply_pooling``); a clip's run of
``<video>`` tokens is its frames' pooled grids one after the other, then one newline feature. Each
frame is a temporal slice of its own (a grid, a budget, neighbours inside it); the newline is no
patch. The processor has no sampling default: 32 frames, the OneVision paper's video setting.
LLaVA-NeXT has no video processor: a clip is a multi-image prompt of its frames (the base rule).

Hooked layers: the LLaVA rule, the first 12/32 of the decoder (``shared.LLAVA_FRACTION``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import LayoutError
from ..layout import VisualGrid, VisualLayout, by_appearance
from .base import Adapter
from .shared import LLAVA_FRACTION, prepare_grouped


class LlavaNextAdapter(Adapter):
    model_types = ("llava_next",)
    unquantized_modules = ("model.vision_tower", "model.multi_modal_projector", "lm_head")
    hook_fraction = LLAVA_FRACTION
    shares_k = True

    def base_side(self) -> int:
        vision = self.model.config.vision_config
        return int(vision.image_size) // int(vision.patch_size)

    def highres_shape(self, image_size: Sequence[int]) -> tuple[int, int]:
        """(rows, cols) of the high-res grid for an image of (height, width) px, newlines excluded."""
        from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape, unpad_image

        config, side = self.model.config, self.base_side()
        tiles_h, tiles_w = get_anyres_image_grid_shape(list(image_size), config.image_grid_pinpoints,
                                                       config.vision_config.image_size)
        canvas = torch.empty(1, tiles_h * side, tiles_w * side)
        rows, cols = unpad_image(canvas, list(image_size)).shape[1:]
        return self.shrink(int(rows), int(cols))

    def shrink(self, rows: int, cols: int) -> tuple[int, int]:
        """LLaVA-NeXT keeps the unpadded grid (OneVision shrinks large ones)."""
        return rows, cols

    def image_pieces(self, inputs: dict) -> list[tuple[tuple[int, int], tuple[int, int] | None]]:
        """Per image, in processor order: (base grid, high-res grid or None)."""
        side = self.base_side()
        return [((side, side), self.highres_shape(size)) for size in inputs["image_sizes"].tolist()]

    def layout(self, inputs: dict) -> VisualLayout:
        if "image_sizes" not in inputs:
            raise LayoutError("the processor output has no image_sizes; was an image passed to the processor?")
        return self.image_layout(inputs)

    def image_layout(self, inputs: dict) -> VisualLayout:
        input_ids = inputs["input_ids"]
        token_id = self.model.config.image_token_id
        queue = iter(enumerate(self.image_pieces(inputs) if "image_sizes" in inputs else []))
        grids = []
        for sample, row in enumerate(input_ids):
            positions = torch.nonzero(row == token_id).flatten().cpu().numpy().astype(np.int64)
            used, image = 0, 0
            while used < positions.size:
                try:
                    index, ((bh, bw), high) = next(queue)
                except StopIteration:
                    raise LayoutError(f"prompt {sample} has more image tokens (id {token_id}) than its images "
                                      "account for") from None
                count = bh * bw + (high[0] * (high[1] + 1) if high else 1)
                chunk = positions[used:used + count]
                if chunk.size != count:
                    raise LayoutError(f"prompt {sample}: image {index} needs {count} image tokens but only "
                                      f"{chunk.size} are left; was the prompt built by the model's processor?")
                grids.append(VisualGrid(sample, bh, bw, chunk[:bh * bw], image))
                if high:
                    rows, cols = high
                    grids.append(VisualGrid(sample, rows, cols, chunk[bh * bw:].reshape(rows, cols + 1)[:, :cols]
                                            .reshape(-1), image))
                used += count
                image += 1
        if next(queue, None) is not None:
            raise LayoutError("the processor lists more images than the prompts have image tokens")
        return VisualLayout(tuple(grids), int(input_ids.shape[0]), int(input_ids.shape[1]))

    def newline_positions(self, layout: VisualLayout, inputs: dict, sample: int) -> np.ndarray:
        """Image-token positions of ``sample`` that belong to no grid: the image-newline features."""
        row = inputs["input_ids"][sample]
        image_positions = torch.nonzero(row == self.model.config.image_token_id).flatten().cpu().numpy()
        in_grids = np.concatenate([g.positions for g in layout.grids_of(sample)])
        return np.setdiff1d(image_positions, in_grids)


class LlavaOnevisionAdapter(LlavaNextAdapter):
    model_types = ("llava_onevision",)
    native_video = True
    video_frames = 32

    def layout(self, inputs: dict) -> VisualLayout:
        if "pixel_values_videos" not in inputs:
            return super().layout(inputs)
        return by_appearance([self.image_layout(inputs), self.video_layout(inputs)])

    def video_layout(self, inputs: dict) -> VisualLayout:
        """Each clip: one pooled grid per frame, then a newline token (never a patch)."""
        input_ids = inputs["input_ids"]
        frames = int(inputs["pixel_values_videos"].shape[1])
        side = -(-self.base_side() // 2)
        per_clip = frames * side * side + 1
        grids = []
        for sample, row in enumerate(input_ids):
            positions = torch.nonzero(row == self.model.config.video_token_id).flatten().cpu().numpy().astype(np.int64)
            if positions.size % per_clip:
                raise LayoutError(f"prompt {sample} has {positions.size} video tokens; expected a multiple of "
                                  f"{per_clip} ({frames} frames of {side}x{side} and a newline per clip)")
            for clip, run in enumerate(positions.reshape(-1, per_clip)):
                for frame in range(frames):
                    grids.append(VisualGrid(sample, side, side, run[frame * side * side:(frame + 1) * side * side],
                                            clip, frames=(frame, frame + 1)))
        return VisualLayout(tuple(grids), int(input_ids.shape[0]), int(input_ids.shape[1]))

    def shrink(self, rows: int, cols: int) -> tuple[int, int]:
        """``anyres_max_N``: a grid above N tiles' worth (by > 10 %) is resized to N tiles' worth."""
        side = self.base_side()
        max_tiles = int(self.model.config.vision_aspect_ratio.removeprefix("anyres_max_"))
        ratio = math.sqrt(rows * cols / (max_tiles * side ** 2))
        if ratio > 1.1:
            return int(rows // ratio), int(cols // ratio)
        return rows, cols

    def image_pieces(self, inputs: dict) -> list[tuple[tuple[int, int], tuple[int, int] | None]]:
        side = self.base_side()
        sizes = inputs["image_sizes"].tolist()
        counts = inputs.get("batch_num_images")
        counts = [1] * len(sizes) if counts is None else [int(n) for n in torch.as_tensor(counts).tolist()]
        single = [n == 1 for n in counts for _ in range(n)]
        return [((side, side), self.highres_shape(size) if alone else None) for size, alone in zip(sizes, single)]

    def prepare(self, images: Sequence[Sequence[Image.Image]], prompts: Sequence[str]) -> dict:
        """Images grouped per prompt, so prompts with several images get OneVision's multi-image rule."""
        return prepare_grouped(self, images, prompts)
