"""The VLM as a model ComfyUI's memory manager knows about.

Caption packs that keep a transformers model in a node's cache leave it in VRAM for good: ComfyUI
cannot offload it when a diffusion model needs the memory, and "Unload models" (``POST /free``)
does nothing. Here the model is wrapped in ComfyUI's ``ModelPatcher`` and loaded through
``model_management.load_models_gpu`` before every use, so ComfyUI can move it to the offload
device (CPU) under memory pressure or on ``/free``, exactly like its own checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .handle import register_handle

if TYPE_CHECKING:
    from scr_core.pipeline import SCRPipeline
    from scr_core.runner import VLMRunner


def model_bytes(model) -> int:
    """Parameter + buffer bytes of the loaded model (what a quantized load saves)."""
    return int(model.get_memory_footprint()) if model is not None else 0


def model_quantization(model) -> str | None:
    from scr_core.loading import model_quantization as stored

    return stored(model) if model is not None else None


class _Managed(torch.nn.Module):
    """The transformers model under a module whose ``device`` ModelPatcher may set (HF's is read-only)."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.hf_model = model
        self.device = device


class VLMHandle:
    """What Load VLM outputs (a ``VLM_MODEL``, ``nodes.handle.ModelHandle``): the SCR pipeline plus its place
    in ComfyUI's memory."""

    def __init__(self, pipe: SCRPipeline, name: str, load_device, offload_device, keep_loaded: bool) -> None:
        import comfy.model_patcher

        self.pipe, self.name, self.keep_loaded = pipe, name, keep_loaded
        self.patcher = comfy.model_patcher.ModelPatcher(_Managed(pipe.model, pipe.device), load_device,
                                                        offload_device)
        register_handle(self)

    def __repr__(self) -> str:
        return f"VLMHandle({self.name!r}, {self.pipe.adapter.__class__.__name__})"

    def use(self) -> _InUse:
        """``with handle.use() as pipe:`` — the model on its load device for the block."""
        return _InUse(self)

    def loaded(self) -> bool:
        """Whether ComfyUI counts this model as loaded (``/free`` with unload_models clears that)."""
        import comfy.model_management as mm

        return any(entry.model is self.patcher for entry in mm.current_loaded_models)

    def unload(self) -> None:
        """Back to the offload device and out of ComfyUI's loaded list (keep_loaded off)."""
        import comfy.model_management as mm

        for index, entry in enumerate(list(mm.current_loaded_models)):
            if entry.model is self.patcher:
                entry.model_unload()
                mm.current_loaded_models.pop(index)
                break
        mm.soft_empty_cache()

    def status(self) -> dict:
        return {"name": self.name, "family": self.pipe.adapter.__class__.__name__,
                "device": str(self.pipe.device), "loaded": self.loaded(), "keep_loaded": self.keep_loaded,
                "bytes": model_bytes(self.pipe.model), "quantization": model_quantization(self.pipe.model)}


class _InUse:
    def __init__(self, handle: VLMHandle) -> None:
        self.handle = handle

    def __enter__(self) -> VLMRunner:  # the type checker checks SCRPipeline against the protocol here
        import comfy.model_management as mm

        # full load: transformers modules have no ComfyUI low-VRAM casting, so the model must be whole
        mm.load_models_gpu([self.handle.patcher], force_full_load=True)
        return self.handle.pipe

    def __exit__(self, *exc) -> None:
        if not self.handle.keep_loaded:
            self.handle.unload()
