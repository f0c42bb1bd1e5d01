"""Give the PyTorch weights of a written graph back to the system, so an export holds about one part at a time.

The pipeline is not used after an export, so each parameter no later graph reads has its data replaced
with an empty tensor of its dtype: weights the loader copied (a dtype conversion) are freed at once. A
checkpoint already in the export's dtype is not copied: safetensors maps the file and the parameters point
into the mapping, whose pages stay resident while it is mapped, so their page-interior range is also
handed back with ``madvise(MADV_PAGEOUT)``: a reclaim hint that never loses data (a page still needed is
read again from the file; memory that is not file-backed stays put without swap).
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from collections.abc import Iterable

import torch

MADV_PAGEOUT = 21  # Linux >= 5.4; elsewhere the hint is skipped and only the copies are freed


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


def release(parameters: Iterable[torch.nn.Parameter]) -> int:
    """Empty ``parameters`` in place (their modules cannot run afterwards); returns the bytes dropped."""
    libc, page, dropped = _libc(), mmap.PAGESIZE, 0
    for param in parameters:
        old = param.data
        if old.numel() == 0 or old.device.type != "cpu":
            continue
        param.data = torch.empty(0, dtype=old.dtype)
        start = old.data_ptr()
        end = start + old.numel() * old.element_size()
        first, last = -(-start // page) * page, end // page * page  # whole pages of this tensor only
        if libc is not None and last > first:
            libc.madvise(first, last - first, MADV_PAGEOUT)
        dropped += end - start
        del old
    return dropped
