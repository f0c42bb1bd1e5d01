"""What a ``VLM_MODEL`` socket carries, the live ones, and the route that lists them (no ComfyUI import here).

A handle (``nodes.memory.VLMHandle`` for PyTorch, ``nodes.onnx_handle.OnnxHandle`` for onnxruntime)
lends its runner for a block: ``with handle.use() as pipe:`` yields a ``scr_core.runner.VLMRunner``,
so the nodes call only what that protocol offers and never ask which runtime is behind it.
"""

from __future__ import annotations

import weakref
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from scr_core.runner import VLMRunner


class ModelHandle(Protocol):
    """A loaded VLM as the nodes see it: a name, its runner for a block, and one status row."""

    name: str

    def use(self) -> AbstractContextManager[VLMRunner]:
        """``with handle.use() as pipe:`` — the runner, ready to run, for the block."""
        ...

    def status(self) -> dict:
        """The row ``GET /scr/models`` shows for it."""
        ...


# Every live handle, for the status route (GET /scr/models).
_HANDLES: weakref.WeakSet = weakref.WeakSet()


def register_handle(handle: ModelHandle) -> None:
    """Track a live handle for ``GET /scr/models`` (gone when ComfyUI drops the loader's output)."""
    _HANDLES.add(handle)


def handle_statuses() -> list[dict]:
    return [h.status() for h in list(_HANDLES)]


def register_routes() -> None:
    """``GET /scr/models``: the loaded VLMs and whether ComfyUI counts them as loaded."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is None:
        return

    @PromptServer.instance.routes.get("/scr/models")
    async def models(request):
        return web.json_response(handle_statuses())
