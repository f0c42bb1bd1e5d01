"""The pixels Load Image Folder outputs hold right now, so a prompt cannot pile up folder loads.

ComfyUI keeps a node's outputs in its cache after the run (until a prompt without that node runs, or
longer with ``--cache-lru``), so a per-node limit lets four loads in one prompt, or one new load per
prompt, hold four times the budget. Each load is charged here when made and released when ComfyUI
drops its tensors (a weakref finalizer, whatever the cache type), and a new load must fit in
``SCR_MAX_FOLDER_PIXELS`` together with everything still held.
"""

from __future__ import annotations

import gc
import threading
import weakref

_lock = threading.Lock()
_held = {"pixels": 0}


def held_pixels() -> int:
    return _held["pixels"]


def _release(pixels: int) -> None:
    with _lock:
        _held["pixels"] -= pixels


def room(budget: int) -> int:
    """Pixels a new load may still take (a full collection first, so tensors that only a reference
    cycle kept are not counted)."""
    if _held["pixels"]:
        gc.collect()
    return budget - _held["pixels"]


def hold(tensor, pixels: int) -> None:
    """Charge ``pixels`` until ``tensor`` (one image of a load's output) is freed."""
    with _lock:
        _held["pixels"] += pixels
    weakref.finalize(tensor, _release, pixels)
