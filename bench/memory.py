"""Peak memory of one call, over what was in use before it.

GPU: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (tensors only).
CPU: the process's peak resident set (``VmHWM``) after resetting it through
``/proc/self/clear_refs`` (Linux), minus the resident set before the call, with freed heap
handed back first (``malloc_trim``) so that reused pages do not hide an allocation. Why not
``tracemalloc``: it sees Python's allocator only, and torch allocates tensors with its own.
Why not ``ru_maxrss``: it cannot be reset, so only the first, largest call would count.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def method(device: str) -> str | None:
    """How ``peak_bytes`` measures on ``device``, or None where it cannot."""
    if device.startswith("cuda"):
        return "torch.cuda.max_memory_allocated over the allocation before the call"
    if _can_reset_rss():
        return "peak RSS (VmHWM, reset via /proc/self/clear_refs) over the RSS before the call"
    return None


def peak_bytes(fn: Callable[[], object], device: str) -> int | None:
    """Bytes the call ``fn()`` added at its peak, or None where ``method`` is None."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    if not _can_reset_rss():
        fn()
        return None
    gc.collect()
    _trim()
    base = _status_bytes("VmRSS")
    CLEAR_REFS.write_text("5")
    fn()
    return max(0, _status_bytes("VmHWM") - base)


def _status_bytes(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in {STATUS}")


def _can_reset_rss() -> bool:
    try:
        CLEAR_REFS.write_text("5")
        _status_bytes("VmHWM")
        return True
    except OSError:
        return False


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
