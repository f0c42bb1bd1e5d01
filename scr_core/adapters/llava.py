"""LLaVA-1.5 (``LlavaForConditionalGeneration``): CLIP patches -> projector -> Llama decoder.

Each ``<image>`` is expanded by the processor into (image_size / patch_size)² copies of the
image token (24x24 = 576 at 336 px / 14 px), row-major, CLS dropped. Hooks on layers 0..11.
"""

from __future__ import annotations

from torch import nn

from ..layout import VisualLayout
from .base import Adapter


class LlavaAdapter(Adapter):
    model_types = ("llava",)
    paper_hook_layers = (0, 11)

    def language_model(self) -> nn.Module:
        return self.model.model.language_model

    def grid_size(self) -> tuple[int, int]:
        vision = self.model.config.vision_config
        side = vision.image_size // vision.patch_size
        return side, side

    def layout(self, inputs: dict) -> VisualLayout:
        height, width = self.grid_size()
        return self.split_runs(inputs["input_ids"], self.model.config.image_token_id, height, width)
