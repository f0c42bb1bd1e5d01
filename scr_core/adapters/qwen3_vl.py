"""Qwen3-VL (``Qwen3VLForConditionalGeneration``, and the MoE variant): Qwen2-VL's dynamic grid plus DeepStack.

Layout (transformers 5.24): as Qwen2-VL (``qwen2_vl.py``), with 16 px patches merged 2x2
(``vision_config.patch_size``, ``spatial_merge_size``): each image is a grid of
``(H/16/2) x (W/16/2)`` ``<|image_pad|>`` tokens between ``<|vision_start|>`` and
``<|vision_end|>``, read from ``image_grid_thw``; each image keeps its own K.

DeepStack. The vision tower also returns features of its blocks
``vision_config.deepstack_visual_indexes`` (three for the real models). The text model adds
the i-th of them to the hidden states at the visual positions right *after* decoder layer
i has run (``Qwen3VLTextModel.forward``: ``hidden = layer(hidden)``, then
``hidden = _deepstack_process(hidden, visual_pos_masks, deepstack[i])``), for i = 0, 1, 2.

Where SCR's edit sits: it is a forward hook on the decoder layer, so at layers 0..2 it edits
the layer's own output *before* the DeepStack injection, once per hooked layer, and the next
layer reads edited + injected states. Why before: SCR redistributes the credit the decoder
has built up; the DeepStack features are fresh vision-tower evidence that enters every
visual position unchanged, so a source does not lose 1 − 1/λ of its injected feature and
its neighbours do not receive a copy of it. (Editing after would need a hook inside the
text model's loop rather than on the layer.) ``tests/test_families_modern.py`` checks that
the state the next layer receives is exactly edit(layer output) + DeepStack feature.

Hooked layers: the paper's Qwen rule as a fraction, the first 16/28 of the decoder
(``shared.QWEN_FRACTION``: 0..20 of the 36 layers of Qwen3-VL-4B and -8B).
The MoE variant (``Qwen3VLMoeForConditionalGeneration``, ``qwen3_vl_moe``) has the same
text-model loop, layout and DeepStack; only its MLPs are sparse.

Clips: as Qwen2-VL (``qwen2_vl.py``), each temporal slice after its timestamp text
(``<t seconds>``); the video processor's own rate (2 fps) and frame bounds are the defaults.
DeepStack adds the clip's features at the video positions too, after the hooked layer's edit.
"""

from __future__ import annotations

from .qwen2_vl import Qwen2VLAdapter
from .shared import QWEN_FRACTION


class Qwen3VLAdapter(Qwen2VLAdapter):
    model_types = ("qwen3_vl", "qwen3_vl_moe")
    hook_fraction = QWEN_FRACTION

    def deepstack_layers(self) -> tuple[int, ...]:
        """Decoder layers after which DeepStack adds vision features (one per deepstack block)."""
        return tuple(range(len(getattr(self.model.config.vision_config, "deepstack_visual_indexes", ()) or ())))
