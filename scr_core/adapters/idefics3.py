"""Idefics3 (``Idefics3ForConditionalGeneration``) and SmolVLM (``SmolVLMForConditionalGeneration``,
same layout; its processor needs the ``num2words`` package): SigLIP tiles -> pixel shuffle -> MLP
-> Llama-style decoder.

What the model does (transformers 5.24): the image processor resizes the image (longest edge
``size["longest_edge"]``) and, with ``do_image_splitting``, cuts it into rows x cols tiles of
``max_image_size["longest_edge"]`` px, plus a global image (the whole picture at one tile's
size); without splitting only the global image is kept. Every tile goes through the vision
tower on its own, (image_size / patch_size)² patches, and the pixel shuffle (``scale_factor``,
2 for Idefics3-8B and SmolVLM) folds s x s neighbouring patches into one token: a row-major
grid of side image_size / patch_size / scale_factor per tile (Idefics3-8B: 364 / 14 / 2 =
13, i.e. 169 tokens; SmolVLM-256M/500M: 512 / 16 / 4 = 8, 64 tokens). In the
prompt every tile is ``<fake_token_around_image><row_i_col_j>`` + its tokens, rows end with
a newline, and the image ends with ``<fake_token_around_image><global-img>`` + the global
image's tokens + ``<fake_token_around_image>``.

SCR: every run of ``<image>`` tokens (between marker tokens) is one grid; a run after
``<global-img>`` is the image's global view and closes the image, so the tiles before it
belong to the same image. Each tile is its own grid (no neighbours across tiles, the marker
tokens are never sources or neighbours), the image's K is split over its tiles and global
view by attention mass (the InternVL rule, ``shared.shared_budgets``). A tile's region is
read from its ``<row_i_col_j>`` marker (heatmaps draw the tiles back into a mosaic).

Option ``no_image_splitting`` (adapter; 0, the default, keeps the processor's
``do_image_splitting`` tiling; 1 turns it off: the global image only, one grid per image):
CLI ``--no-image-splitting 1``, ``adapter_options={"no_image_splitting": 1}``; 0 = default as
for every family option (the ComfyUI loader's convention).
Hooked layers: the paper's Qwen rule as a fraction, the first 16/28 of the decoder
(``shared.QWEN_FRACTION``: 0..17 of Idefics3-8B's 32 layers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import LayoutError
from ..layout import FULL_REGION, VisualGrid, VisualLayout
from .base import Adapter, AdapterOption
from .shared import QWEN_FRACTION, prepare_grouped


class Idefics3Adapter(Adapter):
    model_types = ("idefics3",)
    unquantized_modules = ("model.vision_model", "model.connector", "lm_head")
    hook_fraction = QWEN_FRACTION
    shares_k = True
    options = (AdapterOption("no_image_splitting", int, 0, "1: turn the processor's do_image_splitting off (one "
                             "global image per image); 0: tiles plus a global image (default)", minimum=0,
                             maximum=1),)
    no_image_splitting: int

    def language_model(self) -> nn.Module:
        return self.model.model.text_model

    def grid_size(self) -> tuple[int, int]:
        vision, scale = self.model.config.vision_config, int(self.model.config.scale_factor)
        patches = int(vision.image_size) // int(vision.patch_size)
        if patches % scale:
            raise LayoutError(f"{patches} patches per side do not fold by the scale factor {scale}")
        return patches // scale, patches // scale

    def processor_kwargs(self) -> dict:
        return {"do_image_splitting": not self.no_image_splitting}

    def reserved_tokens(self) -> set[str]:
        return super().reserved_tokens() | {"<fake_token_around_image>", "<global-img>"}

    def _markers(self) -> tuple[int, dict[int, tuple[int, int]]]:
        """(id of ``<global-img>``, tile marker id -> (row, col), 0-based)."""
        tokenizer = self.processor.tokenizer
        global_token = (getattr(self.processor, "global_image_token", None)
                        or getattr(self.processor, "global_image_tag", None) or "<global-img>")
        global_id = tokenizer.convert_tokens_to_ids(global_token)
        tiles = {}
        for row in range(6):
            for col in range(6):
                token_id = tokenizer.convert_tokens_to_ids(f"<row_{row + 1}_col_{col + 1}>")
                if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
                    tiles[token_id] = (row, col)
        return global_id, tiles

    def layout(self, inputs: dict) -> VisualLayout:
        input_ids = inputs["input_ids"]
        height, width = self.grid_size()
        per_grid = height * width
        token_id = self.model.config.image_token_id
        global_id, tiles = self._markers()
        grids = []
        for sample, row in enumerate(input_ids.cpu()):
            positions = torch.nonzero(row == token_id).flatten().numpy().astype(np.int64)
            if positions.size == 0:
                raise LayoutError(f"prompt {sample} has no image tokens (id {token_id}); was the prompt built by the "
                                  "model's processor?")
            runs = np.split(positions, np.flatnonzero(np.diff(positions) != 1) + 1)
            image, pending = 0, []
            for run in runs:
                if run.size != per_grid:
                    raise LayoutError(f"prompt {sample}: a run of {run.size} image tokens; expected {per_grid} "
                                      f"({height}x{width}) per tile")
                marker = int(row[run[0] - 1]) if run[0] > 0 else None
                if marker in tiles:
                    pending.append((run, tiles[marker]))
                    continue
                if marker != global_id:
                    raise LayoutError(f"prompt {sample}: image tokens at {int(run[0])} follow neither a tile marker "
                                      "nor <global-img>")
                rows = max((r for _, (r, _) in pending), default=-1) + 1
                cols = max((c for _, (_, c) in pending), default=-1) + 1
                for tile, (r, c) in pending:
                    region = (c / cols, r / rows, (c + 1) / cols, (r + 1) / rows)
                    grids.append(VisualGrid(sample, height, width, tile, image, region))
                grids.append(VisualGrid(sample, height, width, run, image, FULL_REGION))
                image, pending = image + 1, []
            if pending:
                raise LayoutError(f"prompt {sample}: tiles without their global image at the end")
        return VisualLayout(tuple(grids), int(input_ids.shape[0]), int(input_ids.shape[1]))


class SmolVLMAdapter(Idefics3Adapter):
    """SmolVLM: Idefics3's layout; its processor counts images per prompt, so they go in grouped."""

    model_types = ("smolvlm",)

    def prepare(self, images: Sequence[Sequence[Image.Image]], prompts: Sequence[str]) -> dict:
        return prepare_grouped(self, images, prompts)
