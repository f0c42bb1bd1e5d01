"""Chameleon (``ChameleonForConditionalGeneration``): early fusion, images as VQ-GAN codes.

The processor writes each image as ``<racm3:break>`` + ``image_seq_length`` copies of the
``<image>`` placeholder + ``<eoss>``: 1024 = 32x32 for the real models (512 px, the VQ encoder
downsamples by 16), row-major. Inside the model the VQ encoder turns the pixels into codes,
maps them to the ``IMGIMG…`` vocabulary and embeds them; those embeddings are scattered into
the placeholder positions, but ``input_ids`` keep the placeholders. The layout therefore comes
from the placeholder mask of the processor's ``input_ids`` (docs/method.md §6 #17), never from the
VQ codes. The grid side is ``resolution / 2**(len(channel_multiplier) - 1)`` of the VQ config.

Vision features: ``ChameleonModel.get_image_features`` returns the embedded VQ codes, so the
shared features (``Adapter.shared_vision``) run the VQ encoder once per caption, as for the
other families.

Hooked layers. The paper hooks 0–15 on Chameleon-7B (32 decoder layers: 16 layers, 1/2 of
the depth) and 0–20 on Chameleon-30B (48 layers: 21 layers, ≈0.44 of the depth). The rule
used here goes through both points, so both checkpoints get exactly the paper's ranges:

    hooked layers = 0 .. n-1,   n = round(depth / 2)                 for depth <= 32
                                n = round(16 + 5 · (depth − 32) / 16)  for depth > 32

i.e. the first half of a 32-layer decoder, and five more layers per 16 extra layers (the
fraction falls from 1/2 at 32 to 21/48 ≈ 0.44 at 48). Shallow test decoders (< 32 layers)
get their first half, like the scaled ranges of the other families.

Chat template: ``ChameleonProcessor`` in 5.24 does not accept a ``chat_template`` argument,
so ``AutoProcessor.from_pretrained`` drops the saved template. The adapter falls back to the
tokenizer's template and then to Chameleon's own format (``USER: <image>\\n{prompt} ASSISTANT:``).
The processor appends its separator token (chat mode) as usual.
"""

from __future__ import annotations

from torch import nn

from .base import Adapter

CHAMELEON_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}{{ item['text'] + ' ' }}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def chameleon_hook_count(depth: int) -> int:
    """Number of hooked layers (from layer 0) for a decoder of ``depth`` layers (see the module doc)."""
    if depth <= 32:
        return max(1, round(depth / 2))
    return min(depth, round(16 + 5 * (depth - 32) / 16))


class ChameleonAdapter(Adapter):
    model_types = ("chameleon",)
    unquantized_modules = ("model.vqmodel", "lm_head")  # the VQ image tokenizer; no projector
    paper_hook_layers = (0, 15)  # Chameleon-7B; see default_hook_layers for other depths

    def language_model(self) -> nn.Module:
        return self.model.model

    def default_hook_layers(self, depth: int) -> tuple[int, ...]:
        return tuple(range(chameleon_hook_count(depth)))

    def grid_size(self) -> tuple[int, int]:
        vq = self.model.config.vq_config
        side = int(vq.resolution) // 2 ** (len(vq.channel_multiplier) - 1)
        return side, side

    def image_token_id(self) -> int:
        return int(self.model.model.vocabulary_mapping.image_token_id)

    def chat_template(self) -> str:
        return (getattr(self.processor, "chat_template", None)
                or getattr(self.processor.tokenizer, "chat_template", None)
                or CHAMELEON_CHAT_TEMPLATE)

    def layout_rule(self) -> dict:
        return {"kind": "token_runs", "image_token_id": self.image_token_id(), "grid": list(self.grid_size())}
