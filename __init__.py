"""ComfyUI entry point of the SCR node pack (V3: ``comfy_entrypoint``).

ComfyUI imports this folder as a package. Our folder is appended (not prepended) to
``sys.path`` so that ``scr_core`` is importable without shadowing ComfyUI's own modules
(``nodes``, ``utils``, ...). No ``NODE_CLASS_MAPPINGS`` here: with it, ComfyUI would ignore the
entrypoint.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

WEB_DIRECTORY = "./web"  # shows captions and reports on the nodes (web/scr_text.js)

if __package__:  # ComfyUI imports the folder as a package; test runners may import this file alone
    from .nodes import comfy_entrypoint  # noqa: E402

    __all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
