"""ComfyUI nodes of the SCR pack.

Not built yet: the node pack (load VLM, diagnose with heatmap, apply SCR, caption) is the
next round's work, as a thin layer over ``scr_core``. Until then the pack registers no nodes.
"""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
