"""LLaVA (``LlavaForConditionalGeneration``): CLIP or SigLIP patches -> projector -> decoder.

Each ``<image>`` is expanded by the processor into one run of image tokens per image,
row-major. The grid comes from the vision config and the select strategy, never from a
fixed 24x24:

* side = ``vision_config.image_size // vision_config.patch_size`` (24 for CLIP-L/336,
  27 for SigLIP-so400m/384 as in JoyCaption and other SigLIP fine-tunes);
* the tower's extra tokens = positions - patches of its embeddings (1 CLS for CLIP, 0 for SigLIP);
* ``vision_feature_select_strategy="default"`` drops the first token, ``"full"`` keeps all.

So the run per image is side² + extra − (1 if "default"). side² tokens (CLIP + "default",
SigLIP + "full") are the grid; side² + 1 (CLIP + "full") is the CLS, never a source or a
neighbour, then the grid; anything else (SigLIP + "default" drops a real patch) is not a
grid and is refused with a ``LayoutError``. Hooks on layers 0..11 (the paper's LLaVA-1.5 rule).
"""

from __future__ import annotations

from torch import nn

from ..errors import LayoutError
from .base import Adapter


def tower_extra_tokens(vision_tower: nn.Module, vision_config) -> int:
    """Tokens the vision tower emits besides its patches (CLIP's CLS: 1; SigLIP: 0)."""
    for module in vision_tower.modules():
        patches, positions = getattr(module, "num_patches", None), getattr(module, "num_positions", None)
        if isinstance(patches, int) and isinstance(positions, int):
            return positions - patches
    return 0 if "siglip" in str(getattr(vision_config, "model_type", "")) else 1


class LlavaAdapter(Adapter):
    model_types = ("llava",)
    unquantized_modules = ("model.vision_tower", "model.multi_modal_projector", "lm_head")
    paper_hook_layers = (0, 11)

    def grid_size(self) -> tuple[int, int]:
        vision = self.model.config.vision_config
        side = vision.image_size // vision.patch_size
        return side, side

    def leading_tokens(self) -> int:
        """Tokens before the grid in each image's run (1: a CLS kept by the "full" strategy)."""
        height, width = self.grid_size()
        config = self.model.config
        extra = tower_extra_tokens(self.model.model.vision_tower, config.vision_config)
        run = height * width + extra - (1 if config.vision_feature_select_strategy == "default" else 0)
        if run not in (height * width, height * width + 1):
            raise LayoutError(
                f"this LLaVA's vision tower gives {height * width + extra} tokens per image ({height}x{width} patches "
                f"+ {extra} extra) and vision_feature_select_strategy={config.vision_feature_select_strategy!r} keeps "
                f"{run}: not a {height}x{width} grid (a tower without CLS needs the 'full' strategy)"
            )
        return run - height * width

    def layout_rule(self) -> dict:
        return {"kind": "token_runs", "image_token_id": int(self.model.config.image_token_id),
                "grid": list(self.grid_size()), "lead": self.leading_tokens()}
