"""Gemma 3 (``Gemma3ForConditionalGeneration``): SigLIP -> average-pooled soft tokens -> Gemma 3 decoder.

What the model does (transformers 5.24): the vision tower sees ``vision_config.image_size``
px (896 for the real models) as (image_size / patch_size)² patches (64x64); the projector
average-pools them to ``mm_tokens_per_image`` soft tokens (256 = 16x16), row-major. The
processor writes every image as ``\\n\\n<start_of_image>`` + ``mm_tokens_per_image`` copies
of ``<image_soft_token>`` + ``<end_of_image>\\n\\n``: one grid of side
``sqrt(mm_tokens_per_image)`` per run of image tokens.

Pan-and-scan (adapter option ``pan_and_scan=N``, CLI ``--pan-and-scan N``; 0, the default,
is off): the image processor (``do_pan_and_scan``, at most N crops) adds ``num_crops``
crops of a wide or tall image, each written as one more full image sequence after the
original ("Here is the original image ... and here are some crops ..."). Each crop is its
own 16x16 grid; the original and its crops are one image and share one K, split by attention
mass (the InternVL rule, ``shared.shared_budgets``). The crops' regions of the picture are not
reproduced: heatmaps draw every grid over the whole picture.

Attention among the image tokens of one image is bidirectional (``token_type_ids`` build
that mask; the adapter keeps them next to the shared vision features). The diagnostic reads
the post-image text rows, which are causal as for every family, through the same capture.
Hooked layers: the paper's Qwen rule as a fraction, the first 16/28 of the decoder
(``shared.QWEN_FRACTION``: 0..18 of Gemma 3 4B's 34 layers, 0..26 of 12B's 48).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from PIL import Image

from ..errors import LayoutError
from ..layout import VisualGrid, VisualLayout, token_runs
from .base import Adapter, AdapterOption
from .shared import QWEN_FRACTION, prepare_grouped


class Gemma3Adapter(Adapter):
    model_types = ("gemma3",)
    unquantized_modules = ("model.vision_tower", "model.multi_modal_projector", "lm_head")
    hook_fraction = QWEN_FRACTION
    shares_k = True
    options = (AdapterOption("pan_and_scan", int, 0, "pan-and-scan: up to N crops of a wide or tall image, each "
                             "one more grid sharing the image's K (default 0: off)", minimum=0),)
    pan_and_scan: int

    def grid_size(self) -> tuple[int, int]:
        tokens = int(self.model.config.mm_tokens_per_image)
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise LayoutError(f"mm_tokens_per_image={tokens} is not a square grid")
        return side, side

    def processor_kwargs(self) -> dict:
        if not self.pan_and_scan:
            return {"do_pan_and_scan": False}
        kwargs = {"do_pan_and_scan": True, "pan_and_scan_max_num_crops": self.pan_and_scan}
        # Gemma3Processor's call defaults (min crop 256 px, ratio 1.2) override the checkpoint's own
        # image-processor settings; pass those explicitly.
        image_processor = getattr(self.processor, "image_processor", None)
        for name in ("pan_and_scan_min_crop_size", "pan_and_scan_min_ratio_to_activate"):
            value = getattr(image_processor, name, None)
            if value is not None:
                kwargs[name] = value
        return kwargs

    def prepare(self, images: Sequence[Sequence[Image.Image]], prompts: Sequence[str]) -> dict:
        """Images grouped per prompt (the processor checks each prompt's count of images); with
        pan-and-scan also ``num_crops`` per image, which the processor computes but drops from its
        output (``layout`` needs it to group an image's crops; ``model_inputs`` removes it)."""
        inputs = prepare_grouped(self, images, prompts)
        if self.pan_and_scan:
            flat = [image for group in images for image in group]
            kwargs = {k: v for k, v in self.processor_kwargs().items()}
            crops = self.processor.image_processor(flat, **kwargs)["num_crops"]
            inputs["num_crops"] = torch.as_tensor([int(n) for n in crops], dtype=torch.long)
        return inputs

    def model_inputs(self, inputs: dict) -> dict:
        """``num_crops`` (read by ``layout``) is not a model input."""
        return {k: v for k, v in inputs.items() if k != "num_crops"}

    def layout(self, inputs: dict) -> VisualLayout:
        height, width = self.grid_size()
        layout = token_runs(inputs["input_ids"], self.model.config.image_token_id, height, width)
        crops = inputs.get("num_crops")
        if crops is None:
            return layout
        crops = [int(n) for n in torch.as_tensor(crops).flatten().tolist()]
        grids: list[VisualGrid] = []
        queue = iter(crops)
        for sample in range(layout.batch_size):
            own = layout.grids_of(sample)
            used, image = 0, 0
            while used < len(own):
                count = 1 + next(queue, 0)
                if used + count > len(own):
                    raise LayoutError(f"prompt {sample}: image {image} has {count - 1} pan-and-scan crops but only "
                                      f"{len(own) - used} image grids are left")
                grids.extend(VisualGrid(g.sample, g.height, g.width, g.positions, image)
                             for g in own[used:used + count])
                used += count
                image += 1
        return VisualLayout(tuple(grids), layout.batch_size, layout.seq_len)
