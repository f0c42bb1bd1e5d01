"""Qwen2-VL and Qwen2.5-VL (``Qwen2VLForConditionalGeneration``, ``Qwen2_5_VLForConditionalGeneration``).

Dynamic resolution: the image processor resizes each image to multiples of
``patch_size * merge_size`` pixels (28 px for the real models) within ``min_pixels`` and
``max_pixels`` and reports ``image_grid_thw`` = (t, H/patch, W/patch) per image (t = 1 for
images). The vision merger fuses ``merge_size``² patches into one token, so the decoder sees a
grid of ``(H/patch/merge) x (W/patch/merge)`` ``<|image_pad|>`` tokens per image, row-major,
between ``<|vision_start|>`` and ``<|vision_end|>``. Several images in one prompt each get
their own grid (and their own K budget, the default ``source_budgets``).

The decoder (Qwen2 with GQA) uses M-RoPE: position ids are 3-D (temporal, height, width) and
are computed from ``input_ids``, ``image_grid_thw`` and ``mm_token_type_ids``; the prepared
inputs keep every processor output (only the vision tower's run is shared), so the
diagnostic forward and ``generate`` build the same position ids as a plain call. The rotary
embedding is applied before the attention interface, so the diagnostic capture sees post-RoPE
queries and keys. Hooks on layers 0..15 (the paper's Qwen2-VL-7B setting, 28 layers).

Resolution knobs (declared ``options``): ``SCRPipeline.from_pretrained(..., adapter_options={"max_pixels": ...})``
(CLI ``--min-pixels/--max-pixels``), passed to the processor; they size images, not clips.

Clips (``native_video``): the video processor resizes the sampled frames and merges
``temporal_patch_size`` (2) consecutive frames into one temporal slice; ``video_grid_thw`` =
(slices, H/patch, W/patch) per clip, and the decoder sees each slice as one row-major grid of
``(H/patch/merge) x (W/patch/merge)`` ``<|video_pad|>`` tokens, slice after slice (``layout.video_runs``).
Each slice is a grid of its own (a budget per slice, neighbours inside it). Sampling: the video
processor's ``min_frames`` / ``max_frames`` (4 / 768) around Qwen's reference rate of 2 fps
(qwen-vl-utils' ``FPS``; the processor itself has no rate), the count rounded down to whole slices
(a clip shorter than a slice is padded by the processor with its last frame). Frames are capped per
frame as the reference implementation does (``cap_pixels_per_frame=True``).
"""

from __future__ import annotations

from torch import nn

from .base import Adapter, AdapterOption


#: Resolution kwargs that ``AutoProcessor.from_pretrained`` applies to the image processor's ``size``.
PIXEL_KWARGS = ("min_pixels", "max_pixels")


class Qwen2VLAdapter(Adapter):
    model_types = ("qwen2_vl", "qwen2_5_vl")
    unquantized_modules = ("model.visual", "lm_head")  # the merger (projector) is inside model.visual
    paper_hook_layers = (0, 15)
    options = (
        AdapterOption("min_pixels", int, None, "smallest image area in pixels (dynamic resolution)",
                      applies_to="processor", minimum=1),
        AdapterOption("max_pixels", int, None, "largest image area in pixels (dynamic resolution; fewer "
                      "visual tokens, faster)", applies_to="processor", minimum=1),
    )
    native_video = True
    video_fps = 2.0

    def __init__(self, model: nn.Module, processor) -> None:
        super().__init__(model, processor)
        # AutoProcessor.from_pretrained(..., min_pixels=, max_pixels=) sets the image processor's
        # size, but transformers 5.24 also leaves both in the tokenizer's init kwargs, from where
        # every processor call passes them again (a deprecated path that warns on each call).
        # The size already holds them, so drop the stale copies.
        init_kwargs = getattr(getattr(processor, "tokenizer", None), "init_kwargs", None)
        if isinstance(init_kwargs, dict):
            for key in PIXEL_KWARGS:
                init_kwargs.pop(key, None)

    def merge_size(self) -> int:
        return int(self.model.config.vision_config.spatial_merge_size)

    def frames_per_slice(self) -> int:
        return int(getattr(self.video_processor(), "temporal_patch_size", None)
                   or self.model.config.vision_config.temporal_patch_size)

    def video_kwargs(self) -> dict:
        processor = self.video_processor()
        return {"cap_pixels_per_frame": True} if hasattr(processor, "cap_pixels_per_frame") else {}

    def layout_rule(self) -> dict:
        rule = {"kind": "thw_runs", "image_token_id": int(self.model.config.image_token_id),
                "merge_size": self.merge_size()}
        video = getattr(self.model.config, "video_token_id", None)
        if video is not None:
            rule.update(video_token_id=int(video), frames_per_slice=self.frames_per_slice())
        return rule
