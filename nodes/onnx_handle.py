"""An exported SCR folder (``python -m export.onnx``) behind the same ``VLM_MODEL`` socket as a
transformers model, so Diagnose, Caption and Caption Compare run on onnxruntime unchanged.

onnxruntime's memory is outside torch's, so ComfyUI's ModelPatcher cannot move it; the sessions
live as long as the loader's output (ComfyUI drops it on ``/free`` and when the inputs change).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .handle import register_handle

if TYPE_CHECKING:
    from export.runtime import OnnxVLM
    from scr_core.runner import VLMRunner


class OnnxHandle:
    """What Load ONNX VLM outputs (a ``VLM_MODEL``, ``nodes.handle.ModelHandle``): the ``OnnxVLM`` as it is."""

    def __init__(self, vlm: OnnxVLM, name: str) -> None:
        self.pipe, self.name = vlm, name
        register_handle(self)

    def __repr__(self) -> str:
        return f"OnnxHandle({self.name!r}, {self.pipe.providers[0]})"

    @contextmanager
    def use(self) -> Iterator[VLMRunner]:  # the type checker checks OnnxVLM against the protocol here
        yield self.pipe

    def status(self) -> dict:
        return {"name": self.name, "family": "onnx", "device": self.pipe.device, "loaded": True,
                "keep_loaded": True, "onnxruntime": self.pipe.onnxruntime}
