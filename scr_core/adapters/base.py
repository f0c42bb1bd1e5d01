"""What SCR needs to know about a model family, in one place per family.

An adapter answers four questions (compare pyvene's per-architecture site mappings):
where are the decoder layers, which config drives their attention, how are prompts built,
and where do the visual tokens sit (with their grid). Nothing outside ``adapters/`` names
a model family.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..config import paper_range
from ..layout import VisualGrid, VisualLayout
from ..errors import LayoutError


class Adapter(ABC):
    """Base class; subclasses register themselves for one or more ``config.model_type`` values."""

    model_types: ClassVar[tuple[str, ...]] = ()
    #: Default hooked layers (the paper's table), as a function of decoder depth.
    paper_hook_layers: ClassVar[tuple[int, int]] = (0, 15)

    def __init__(self, model: nn.Module, processor) -> None:
        self.model = model
        self.processor = processor

    # -- decoder -----------------------------------------------------------------
    @abstractmethod
    def language_model(self) -> nn.Module:
        """The decoder stack (has ``.layers`` and ``.config``)."""

    def decoder_layers(self) -> nn.ModuleList:
        return self.language_model().layers

    def decoder_config(self):
        """The config object the decoder's attention reads ``_attn_implementation`` from."""
        return self.language_model().config

    def default_hook_layers(self, depth: int) -> tuple[int, ...]:
        """The paper's hook range for this family (see ``config.paper_range`` for shallow decoders)."""
        return paper_range(*self.paper_hook_layers, depth)

    # -- inputs ------------------------------------------------------------------
    def format_prompt(self, prompt: str, num_images: int) -> str:
        """The processor's chat template around ``num_images`` images followed by ``prompt``."""
        content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def prepare(self, images: Sequence[Sequence[Image.Image]], prompts: Sequence[str]) -> dict:
        """Processor outputs for a left-padded batch (one list of images per prompt)."""
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"
        texts = [self.format_prompt(p, len(imgs)) for p, imgs in zip(prompts, images)]
        flat = [img for imgs in images for img in imgs]
        return dict(self.processor(images=flat, text=texts, return_tensors="pt", padding=True))

    @abstractmethod
    def layout(self, inputs: dict) -> VisualLayout:
        """Locate every image grid in ``inputs['input_ids']``."""

    @staticmethod
    def split_runs(input_ids: torch.Tensor, token_id: int, height: int, width: int) -> VisualLayout:
        """Layout for families that expand each image into ``height*width`` copies of one token."""
        per_image = height * width
        grids = []
        for sample, row in enumerate(input_ids):
            positions = torch.nonzero(row == token_id).flatten().cpu().numpy().astype(np.int64)
            if positions.size == 0 or positions.size % per_image:
                raise LayoutError(
                    f"prompt {sample} has {positions.size} image tokens (id {token_id}); expected a multiple of "
                    f"{per_image} ({height}x{width} per image). Was the prompt built by the model's processor?"
                )
            for chunk in positions.reshape(-1, per_image):
                grids.append(VisualGrid(sample, height, width, chunk))
        return VisualLayout(tuple(grids), int(input_ids.shape[0]), int(input_ids.shape[1]))
