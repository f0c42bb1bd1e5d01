"""What SCR needs to know about a model family, in one place per family.

An adapter answers four questions (compare pyvene's per-architecture site mappings):
where are the decoder layers, which config drives their attention, how are prompts built,
and where do the visual tokens sit (with their grid); families that cut one image into
several grids also say how K is shared among them (``source_budgets``). Nothing outside ``adapters/`` names
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

from ..config import SCRConfig, paper_range
from ..errors import LayoutError
from ..layout import VisualGrid, VisualLayout


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
        """The config object the decoder's attention reads ``_attn_implementation`` from.

        That is the ``config`` of the attention modules themselves (the module with a
        ``layer_idx`` inside each decoder layer), which the diagnostic pass switches to its
        capturing attention; the decoder stack's own ``config`` is the fallback.
        """
        found = attention_config(self.decoder_layers())
        return found if found is not None else self.language_model().config

    def default_hook_layers(self, depth: int) -> tuple[int, ...]:
        """The paper's hook range for this family (see ``config.paper_range`` for shallow decoders)."""
        return paper_range(*self.paper_hook_layers, depth)

    # -- plan --------------------------------------------------------------------
    def source_budgets(self, grids: Sequence[VisualGrid], maps: Sequence[np.ndarray], cfg: SCRConfig) -> list[int]:
        """Sources each grid of one prompt may take (``grids`` and ``maps`` in sequence order).

        Default: every grid is an image with its own budget of ``cfg.k``. Families that cut one
        image into several grids (tiles) split ``k`` among them instead.
        """
        return [cfg.k] * len(maps)

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
            for image, chunk in enumerate(positions.reshape(-1, per_image)):
                grids.append(VisualGrid(sample, height, width, chunk, image))
        return VisualLayout(tuple(grids), int(input_ids.shape[0]), int(input_ids.shape[1]))

    @staticmethod
    def split_spans(input_ids: torch.Tensor, start_id: int, end_id: int, height: int, width: int,
                    inner_id: int | None = None) -> VisualLayout:
        """Layout for families that put each image between a start and an end token.

        The tokens strictly between one start/end pair form ``n`` grids of ``height*width``
        tokens each (``n`` = 1 for one grid per image, more for tiles); the grids of one pair
        share their ``image`` index. ``inner_id``, when given, must be the id of every token
        inside the span.
        """
        per_grid = height * width
        grids = []
        for sample, row in enumerate(input_ids):
            ids = row.cpu()
            starts = torch.nonzero(ids == start_id).flatten().tolist()
            ends = torch.nonzero(ids == end_id).flatten().tolist()
            if len(starts) != len(ends) or any(e <= s for s, e in zip(starts, ends)) or \
                    any(s2 <= e for e, s2 in zip(ends, starts[1:])):
                raise LayoutError(
                    f"prompt {sample} has {len(starts)} image-start tokens (id {start_id}) and {len(ends)} image-end "
                    f"tokens (id {end_id}) that do not pair up; was the prompt built by the model's processor?"
                )
            if not starts:
                raise LayoutError(f"prompt {sample} has no image span (start id {start_id}, end id {end_id})")
            for image, (start, end) in enumerate(zip(starts, ends)):
                inner = np.arange(start + 1, end, dtype=np.int64)
                if inner.size == 0 or inner.size % per_grid:
                    raise LayoutError(
                        f"prompt {sample}, image {image}: {inner.size} tokens between the start and end tokens; "
                        f"expected a multiple of {per_grid} ({height}x{width} per grid)"
                    )
                if inner_id is not None and not bool((ids[start + 1:end] == inner_id).all()):
                    raise LayoutError(
                        f"prompt {sample}, image {image}: the image span holds tokens other than the image token "
                        f"(id {inner_id})"
                    )
                for chunk in inner.reshape(-1, per_grid):
                    grids.append(VisualGrid(sample, height, width, chunk, image))
        return VisualLayout(tuple(grids), int(input_ids.shape[0]), int(input_ids.shape[1]))


def attention_config(layers: Sequence[nn.Module]):
    """The ``config`` of the first attention module (one with a ``layer_idx``) in ``layers[0]``."""
    if not len(layers):
        return None
    for module in layers[0].modules():
        config = getattr(module, "config", None)
        if getattr(module, "layer_idx", None) is not None and hasattr(config, "_attn_implementation"):
            return config
    return None
