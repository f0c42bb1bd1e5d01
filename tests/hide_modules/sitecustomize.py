"""Put this folder on PYTHONPATH to make the modules named in ``SCR_HIDE_MODULES`` (comma-separated
top-level names) look uninstalled to the process, as in an environment without them: the path finder
skips them, so ``import`` raises ModuleNotFoundError and ``find_spec`` returns None (the pattern of
export/notorch.py). Used by tests/test_extras.py for the processes that must run without the extras."""

import importlib.machinery
import os
import sys

HIDDEN = frozenset(filter(None, os.environ.get("SCR_HIDE_MODULES", "").split(",")))


class _Hiding(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)


if HIDDEN:
    sys.meta_path[:] = [_Hiding if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
