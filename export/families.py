"""What the exporter must know per model family beyond ``scr_core``'s adapters: how to trace the
vision tower, how the runtime builds position ids, and the layout rule it follows without torch.

One class per family, picked by ``config.model_type``; a family without one is refused with an
``UnsupportedModelError`` that says which families export.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from scr_core.errors import UnsupportedModelError


class FamilyExport:
    """Base: subclasses set ``model_types`` and implement the vision tower and the layout rule."""

    model_types: ClassVar[tuple[str, ...]] = ()
    #: "sequential": position ids = cumsum(attention_mask) - 1 (decode: +1 per token); "mrope": Qwen2-VL's 3-D ids
    position_rule: ClassVar[str] = "sequential"

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.model = pipe.model
        self.adapter = pipe.adapter

    def vision_module(self) -> nn.Module:
        raise NotImplementedError

    def vision_example(self) -> tuple[dict, dict]:
        """(example inputs, dynamic shapes) for the vision graph; batch >= 2 so the batch stays dynamic."""
        raise NotImplementedError

    def image_token_id(self) -> int:
        return int(self.model.config.image_token_id)

    def position_example(self, batch: int, seq: int, past: int) -> torch.Tensor:
        """Example position ids of a step after ``past`` cached tokens."""
        return (torch.arange(seq) + past).repeat(batch, 1)

    def position_dims(self, batch, seq) -> dict:
        return {0: batch, 1: seq}

    def layout_rule(self) -> dict:
        """How the runtime finds the grids in ``input_ids`` (see ``export.layout``)."""
        raise NotImplementedError

    def processor_rule(self) -> dict:
        """How the runtime runs the processor without torch."""
        return {"kind": "auto_processor", "backend": "pil"}


class LlavaVision(nn.Module):
    """pixel_values[N,3,H,W] → image_features[N·Nv, D]: the chosen CLIP/SigLIP layer, CLS dropped
    ("default" strategy), through the projector — what ``LlavaModel.get_image_features`` does."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.tower = model.model.vision_tower
        self.projector = model.model.multi_modal_projector
        config = model.config
        self.layer = config.vision_feature_layer
        self.drop_cls = config.vision_feature_select_strategy == "default"

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        states = self.tower(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
        layers = [self.layer] if isinstance(self.layer, int) else list(self.layer)
        picked = [states[i][:, 1:] if self.drop_cls else states[i] for i in layers]
        features = self.projector(torch.cat(picked, dim=-1))
        return features.reshape(-1, features.shape[-1])


class LlavaExport(FamilyExport):
    model_types = ("llava",)

    def vision_module(self) -> nn.Module:
        return LlavaVision(self.model)

    def vision_example(self) -> tuple[dict, dict]:
        vision = self.model.config.vision_config
        size = int(vision.image_size)
        pixels = torch.randn(2, int(getattr(vision, "num_channels", 3)), size, size, dtype=self.model.dtype)
        return {"pixel_values": pixels}, {"pixel_values": {0: torch.export.Dim("images")}}

    def layout_rule(self) -> dict:
        height, width = self.adapter.grid_size()
        return {"kind": "token_runs", "image_token_id": self.image_token_id(), "grid": [height, width]}


FAMILIES: dict[str, type[FamilyExport]] = {t: cls for cls in (LlavaExport,) for t in cls.model_types}


def family_for(pipe) -> FamilyExport:
    model_type = getattr(pipe.model.config, "model_type", None)
    try:
        return FAMILIES[model_type](pipe)
    except KeyError:
        raise UnsupportedModelError(
            f"ONNX export does not support {model_type!r} models yet; it exports: {', '.join(sorted(FAMILIES))}. "
            "The PyTorch pipeline (python -m scr_core) runs every supported family"
        ) from None
