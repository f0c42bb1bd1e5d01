"""ComfyUI entry point of the SCR node pack.

ComfyUI imports this folder as a package. Our folder is appended (not prepended) to
``sys.path`` so that ``scr_core`` is importable without shadowing ComfyUI's own modules.
Nodes are imported relatively; see ``nodes/``.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
