"""What the exporter must know per model family beyond ``scr_core``'s adapters: how to trace the
vision tower, how the runtime builds position ids, and the layout rule it follows without torch.

One class per traced vision tower, picked by the pipeline's adapter (the one registry of families is
``scr_core.adapters``'); a family without one is refused with an ``UnsupportedModelError`` that says
which families export.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.export import Dim

from scr_core import UnsupportedModelError
from scr_core.adapters import Adapter, ChameleonAdapter, InternVLAdapter, LlavaAdapter, Qwen2VLAdapter

from .folder_config import Expand, ProcessorRule, VisionGrid


class FamilyExport:
    """Base: subclasses set ``adapter_class`` and implement the vision tower."""

    #: the scr_core adapter of the models this class traces
    adapter_class: ClassVar[type[Adapter]]
    #: "sequential": position ids = cumsum(attention_mask) - 1 (decode: +1 per token); "mrope": Qwen2-VL's 3-D ids
    position_rule: ClassVar[str] = "sequential"  # folder_config.POSITION_RULES
    #: "image_features" (rows merged by embedding.onnx) or "image_token_ids" (written into input_ids)
    vision_output: ClassVar[str] = "image_features"

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.model = pipe.model
        self.adapter = pipe.adapter

    @classmethod
    def traces(cls, config) -> bool:
        """Whether this class traces the vision tower of a model with ``config`` (one adapter may serve
        several towers)."""
        return True

    def vision_module(self) -> nn.Module:
        raise NotImplementedError

    def vision_example(self) -> tuple[dict, dict]:
        """(example inputs, dynamic shapes) for the vision graph; batch >= 2 so the batch stays dynamic."""
        raise NotImplementedError

    def image_token_id(self) -> int:
        return int(self.model.config.image_token_id)

    def suppressed_tokens(self) -> list[int]:
        """Token ids whose logits the model's forward sets to the dtype's minimum (none by default)."""
        return []

    def position_example(self, batch: int, seq: int, past: int) -> torch.Tensor:
        """Example position ids of a step after ``past`` cached tokens."""
        return (torch.arange(seq) + past).repeat(batch, 1)

    def position_dims(self, batch, seq) -> dict:
        return {0: batch, 1: seq}

    def layout_rule(self) -> dict:
        """How the runtime finds the grids in ``input_ids``: the adapter's own rule, as data
        (``scr_core.layout.layout_from_rule``, which the adapter's ``layout`` follows too)."""
        rule = self.adapter.layout_rule()
        if rule is None:
            raise UnsupportedModelError(f"{type(self.adapter).__name__} has no layout rule the runtime can follow")
        return rule

    def processor_rule(self) -> ProcessorRule:
        """How the runtime runs the processor without torch, as data ``export.preprocess.Preprocessor``
        follows: the folder's ``AutoProcessor`` (PIL backend) unless ``expand`` says how to expand the image
        placeholders by hand; the reserved tokens are the adapter's (prompts are refused on both runtimes alike)."""
        return ProcessorRule(backend="pil", reserved_tokens=tuple(sorted(self.adapter.reserved_tokens())))


class LlavaVision(nn.Module):
    """pixel_values[N,3,H,W] → image_features[N·Nv, D]: the chosen CLIP/SigLIP layer, CLS dropped
    ("default" strategy), through the projector — what ``LlavaModel.get_image_features`` does."""

    def __init__(self, model: Any) -> None:  # a transformers model: its submodules differ per family
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
    adapter_class = LlavaAdapter

    def __init__(self, pipe) -> None:
        super().__init__(pipe)
        if self.adapter.layout_rule().get("lead"):  # checked before any graph is traced
            raise UnsupportedModelError(
                "ONNX export does not support a LLaVA whose image tokens keep the CLS token "
                "(vision_feature_select_strategy='full' on a tower with CLS); the PyTorch pipeline runs it")

    def vision_module(self) -> nn.Module:
        return LlavaVision(self.model)

    def vision_example(self) -> tuple[dict, dict]:
        vision = self.model.config.vision_config
        size = int(vision.image_size)
        pixels = torch.randn(2, int(getattr(vision, "num_channels", 3)), size, size, dtype=self.model.dtype)
        return {"pixel_values": pixels}, {"pixel_values": {0: torch.export.Dim("images")}}


def _masked_vision_attention(self, hidden_states, cu_seqlens, position_embeddings=None, **kwargs):
    """Qwen2-VL's vision attention as one SDPA call with a block-diagonal mask from ``cu_seqlens``.

    The stock forward splits the sequence with ``lengths.tolist()``, a data-dependent shape the
    dynamo exporter refuses; masking every image to itself computes the same thing.
    """
    import sys

    apply_rotary_pos_emb_vision = sys.modules[type(self).__module__].apply_rotary_pos_emb_vision  # the family's own
    seq = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(seq, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    index = torch.arange(seq, device=hidden_states.device)
    segment = (index[:, None] >= cu_seqlens[None, 1:]).sum(-1)
    mask = (segment[:, None] == segment[None, :])[None, None]
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling)
    return self.proj(out.transpose(1, 2).reshape(seq, -1))


class Qwen2VLVision(nn.Module):
    """pixel_values[N, C·T·P·P] + vision_position_ids[N, 2] + cu_seqlens[n+1] → image_features[N/merge², D].

    The host computes the rotary position ids and the per-image boundaries from ``image_grid_thw``
    (``export.preprocess``), so no data-dependent shape is left in the graph.
    """

    def __init__(self, model: Any) -> None:  # a transformers model: its submodules differ per family
        super().__init__()
        self.visual = model.model.visual
        for block in self.visual.blocks:
            block.attn.forward = _masked_vision_attention.__get__(block.attn)

    def forward(self, pixel_values, vision_position_ids, cu_seqlens):
        hidden = self.visual.patch_embed(pixel_values)
        rotary = self.visual.rotary_pos_emb(hidden, vision_position_ids)
        for block in self.visual.blocks:
            hidden = block(hidden, cu_seqlens=cu_seqlens, position_embeddings=rotary)
        return self.visual.merger(hidden)


class Qwen2VLExport(FamilyExport):
    adapter_class = Qwen2VLAdapter
    position_rule = "mrope"

    @classmethod
    def traces(cls, config) -> bool:
        return not _windowed(config)

    def vision_module(self) -> nn.Module:
        return Qwen2VLVision(self.model)

    def _vision_config(self):
        return self.model.config.vision_config

    def vision_example(self) -> tuple[dict, dict]:
        from .preprocess import vision_rotary_ids, vision_segments

        vision = self._vision_config()
        merge = int(vision.spatial_merge_size)
        grids = np.array([[1, 2 * merge, 2 * merge], [1, 2 * merge, 3 * merge]])
        patches = int((grids[:, 1] * grids[:, 2]).sum())
        width = int(vision.in_channels * vision.temporal_patch_size * vision.patch_size ** 2)
        inputs = {"pixel_values": torch.randn(patches, width, dtype=self.model.dtype),
                  "vision_position_ids": torch.from_numpy(vision_rotary_ids(grids, merge)),
                  "cu_seqlens": torch.from_numpy(vision_segments(grids))}
        patches_dim = Dim("patches")
        shapes = {"pixel_values": {0: patches_dim}, "vision_position_ids": {0: patches_dim},
                  "cu_seqlens": {0: Dim("segments")}}
        return inputs, shapes

    def position_example(self, batch: int, seq: int, past: int) -> torch.Tensor:
        return (torch.arange(seq) + past).repeat(3, batch, 1)

    def position_dims(self, batch, seq) -> dict:
        return {1: batch, 2: seq}

    def processor_rule(self) -> ProcessorRule:
        """Image processor and tokenizer apart (Qwen2-VL's ``AutoProcessor`` needs torchvision for its video
        processor): one placeholder per merged patch, and the tower's rotary ids and segments from the grids."""
        tokenizer = self.pipe.processor.tokenizer
        merge = self.adapter.merge_size()
        return replace(super().processor_rule(),
                       expand=Expand(image_token=tokenizer.convert_ids_to_tokens(self.image_token_id()),
                                     count="image_grid_thw", merge_size=merge),
                       vision_grid=VisionGrid(merge_size=merge))


class InternVLVision(nn.Module):
    """pixel_values[N,3,H,W] (tiles) → image_features[N·h·w, D]: ``InternVLModel.get_image_features``
    (vision tower, pixel shuffle, projector), flattened to one row per visual token."""

    def __init__(self, model: Any) -> None:  # a transformers model: its submodules differ per family
        super().__init__()
        self.model = model.model
        self.layer = model.config.vision_feature_layer
        self.strategy = model.config.vision_feature_select_strategy

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.model.get_image_features(pixel_values=pixel_values, vision_feature_layer=self.layer,
                                                 vision_feature_select_strategy=self.strategy,
                                                 return_dict=True).pooler_output
        return features.reshape(-1, features.shape[-1])


class InternVLExport(FamilyExport):
    """InternVL with one 448 px tile per image (the adapter's default ``max_tiles=1``): one grid and
    one K per image. Dynamic tiling (several grids sharing one K) is not exported."""

    adapter_class = InternVLAdapter

    def vision_module(self) -> nn.Module:
        return InternVLVision(self.model)

    def vision_example(self) -> tuple[dict, dict]:
        vision = self.model.config.vision_config
        size = vision.image_size if isinstance(vision.image_size, (list, tuple)) else (vision.image_size,) * 2
        pixels = torch.randn(2, int(getattr(vision, "num_channels", 3)), int(size[0]), int(size[1]),
                             dtype=self.model.dtype)
        return {"pixel_values": pixels}, {"pixel_values": {0: Dim("tiles")}}

    def processor_rule(self) -> ProcessorRule:
        """Image processor and tokenizer apart (``InternVLProcessor`` needs torchvision): one tile per image,
        ``image_seq_length`` placeholders per tile between the start and end tokens."""
        processor = self.pipe.processor
        return replace(super().processor_rule(),
                       expand=Expand(image_token=processor.image_token, count="num_patches",
                                     tokens_per_patch=int(processor.image_seq_length),
                                     prefix=processor.start_image_token, suffix=processor.end_image_token),
                       image_kwargs={"crop_to_patches": False, "min_patches": 1, "max_patches": 1})


class Qwen25VLVision(Qwen2VLVision):
    """Qwen2.5-VL's tower: as Qwen2-VL's, plus windowed attention in most blocks. The host computes the
    window permutation (``window_index``), its inverse and the window boundaries (``export.preprocess``)."""

    def forward(self, pixel_values, vision_position_ids, cu_seqlens, window_index, cu_window_seqlens,
                reverse_index):
        visual = self.visual
        hidden = visual.patch_embed(pixel_values)
        seq = hidden.shape[0]
        hidden = visual.permute_input_for_window_attn(hidden, window_index, seq_len=seq)
        rotary = visual.rotary_pos_emb(hidden, vision_position_ids)
        rotary = tuple(visual.permute_input_for_window_attn(f, window_index, seq_len=seq) for f in rotary)
        for index, block in enumerate(visual.blocks):
            bounds = cu_seqlens if index in visual.fullatt_block_indexes else cu_window_seqlens
            hidden = block(hidden, cu_seqlens=bounds, position_embeddings=rotary)
        return visual.merger(hidden)[reverse_index]


class Qwen25VLExport(Qwen2VLExport):
    @classmethod
    def traces(cls, config) -> bool:
        return _windowed(config)

    def vision_module(self) -> nn.Module:
        return Qwen25VLVision(self.model)

    def vision_example(self) -> tuple[dict, dict]:
        from .preprocess import window_inputs

        inputs, shapes = super().vision_example()
        vision = self._vision_config()
        merge = int(vision.spatial_merge_size)
        grids = np.array([[1, 2 * merge, 2 * merge], [1, 2 * merge, 3 * merge]])
        for name, value in window_inputs(grids, merge, int(vision.window_size), int(vision.patch_size)).items():
            inputs[name] = torch.from_numpy(value)
        units = Dim("merged_tokens")
        shapes.update(window_index={0: units}, cu_window_seqlens={0: Dim("windows")},
                      reverse_index={0: units})
        return inputs, shapes

    def processor_rule(self) -> ProcessorRule:
        vision = self._vision_config()
        rule = super().processor_rule()
        assert rule.vision_grid is not None  # Qwen2-VL's rule has one
        return replace(rule, vision_grid=replace(rule.vision_grid, window_size=int(vision.window_size),
                                                 patch_size=int(vision.patch_size)))


class ChameleonVision(nn.Module):
    """pixel_values[N,3,H,W] → image_token_ids[N·h·w]: the VQ encoder's codes mapped to the text vocabulary.

    The tokens, not their embeddings: the runtime writes them into ``input_ids`` over the image
    placeholders and ``embedding.onnx`` embeds them, so the embedding table is stored once.
    """

    def __init__(self, model: Any) -> None:  # a transformers model: its submodules differ per family
        super().__init__()
        self.model = model.model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        codes = self.model.vqmodel.encode(pixel_values, return_dict=True).image_tokens
        return self.model.vocabulary_mapping.convert_img2bpe(codes).reshape(-1)


class ChameleonExport(FamilyExport):
    adapter_class = ChameleonAdapter
    vision_output = "image_token_ids"

    def vision_module(self) -> nn.Module:
        return ChameleonVision(self.model)

    def vision_example(self) -> tuple[dict, dict]:
        vq = self.model.config.vq_config
        pixels = torch.randn(2, int(vq.in_channels), int(vq.resolution), int(vq.resolution), dtype=self.model.dtype)
        return {"pixel_values": pixels}, {"pixel_values": {0: Dim("images")}}

    def image_token_id(self) -> int:
        return int(self.adapter.image_token_id())

    def suppressed_tokens(self) -> list[int]:
        """``ChameleonForConditionalGeneration.forward`` forbids the image codes in generated text."""
        return [int(t) for t in self.model.model.vocabulary_mapping.image_tokens]

    def processor_rule(self) -> ProcessorRule:
        return replace(super().processor_rule(), chat_template=self.adapter.chat_template())


def _windowed(config) -> bool:
    """Qwen2.5-VL's tower: window attention in most blocks (Qwen2-VL's attends over the whole image)."""
    return getattr(config.vision_config, "window_size", None) is not None


EXPORTS: tuple[type[FamilyExport], ...] = (LlavaExport, Qwen2VLExport, Qwen25VLExport, InternVLExport,
                                           ChameleonExport)


def exported_types() -> list[str]:
    return sorted({t for cls in EXPORTS for t in cls.adapter_class.model_types})


def unsupported(model_type) -> str:
    return (f"ONNX export does not support {model_type!r} models; it exports: {', '.join(exported_types())}. "
            "Another decoder VLM runs in the PyTorch pipeline (python -m scr_core) with the generic adapter")


def check_exportable(model_type) -> None:
    """Refuse a model type before any weight is read (from its config.json alone)."""
    if model_type not in exported_types():
        raise UnsupportedModelError(unsupported(model_type))


def family_for(pipe) -> FamilyExport:
    found = [cls for cls in EXPORTS if type(pipe.adapter) is cls.adapter_class and cls.traces(pipe.model.config)]
    if not found:
        raise UnsupportedModelError(unsupported(getattr(pipe.model.config, "model_type", None)))
    return found[0](pipe)
