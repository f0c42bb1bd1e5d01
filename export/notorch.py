"""Keep torch out of a process that only runs onnxruntime.

The runtime never imports torch, but transformers (which loads the tokenizer and the image
processor) imports it whenever it is installed — about 700 MiB of resident memory for nothing.
``hide_torch()`` makes torch and torchvision look uninstalled to this process, as in a torch-free
deployment; the processors then take their PIL/numpy paths. Only for processes that need no torch
(``python -m export.run``, the measurement children); a library user keeps the normal import.
"""

from __future__ import annotations

import importlib.machinery
import sys

HIDDEN = ("torch", "torchvision", "torchaudio")


class _NoTorch(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)


def hide_torch() -> bool:
    """Hide torch from later imports; False (and nothing changed) when torch is already imported."""
    if any(name.split(".")[0] in HIDDEN for name in sys.modules):
        return False
    sys.meta_path[:] = [_NoTorch if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
    return True
