"""torch modules that the exporter traces: the embedding merge and the two decoder parts.

The decoder is split at the last diagnostic layer (docs/architecture.md, export/): the *head* runs
layers 0 … last diagnostic layer and returns the hidden state there, its KV and the diagnostic
map; the *tail* runs the remaining layers, the final norm and the LM head. Every weight lives in
exactly one graph, so two sessions hold one copy of the model on the device.

Both parts reuse the model's own decoder ``forward`` on a shallow copy whose ``layers`` is the
part's slice (mask building, rotary embedding and the cache stay transformers' code); tail layers
are renumbered from 0 while tracing so that the cache built inside the wrapper lines up.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import nn
from transformers import AttentionInterface, DynamicCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface

from scr_core.attention_capture import AttentionCapture, capturing, recording

from . import torch_ops  # noqa: F401  (registers torch.ops.scr.redistribute)

FUSED_ATTENTION_OPSET = 23  # ONNX's Attention op (past/present, GQA, masks) exists from opset 23
# The two attention implementations registered for tracing: sdpa's decomposition, or ONNX's Attention op.
ATTENTION_NAMES = {False: "scr_export_sdpa", True: "scr_export_attention_op"}


def _key_mask(query, key, mask) -> torch.Tensor:
    """The mask over the keys (bool: attend, or additive float), made explicit when causality is implicit
    (sdpa's ``is_causal``: the bottom-right triangle)."""
    s, t = query.shape[2], key.shape[2]
    if mask is None:
        positions = torch.arange(t, device=query.device)
        return (positions[None, :] <= (torch.arange(s, device=query.device) + (t - s))[:, None])[None, None]
    return mask[..., :t]


def _fused_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """``torch.onnx.ops.attention``, exported as one ONNX ``Attention`` node (opset 23); sdpa's signature.

    Why: the sdpa decomposition materialises the score matrix through a dozen nodes and
    transposes every cached key at every decode step; onnxruntime's Attention kernel does the
    products itself. The mask is made additive (0 / the dtype's lowest value) so a fully
    masked row (a left-padding position) averages instead of turning into NaN, as in
    transformers' eager attention; grouped KV heads are the op's own (no repeat).
    """
    mask = _key_mask(query, key, attention_mask)
    if mask.dtype == torch.bool:
        low = torch.finfo(query.dtype).min
        mask = torch.where(mask, torch.zeros((), dtype=query.dtype), torch.full((), low, dtype=query.dtype))
    out, _, _, _ = torch.onnx.ops.attention(query, key, value, mask.to(query.dtype), scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def use_export_attention(decoder_config, fused: bool = False) -> None:
    """Route the decoder's attention through the capturing wrapper of sdpa, or of ONNX's Attention op."""
    name = ATTENTION_NAMES[fused]
    if name not in AttentionInterface():
        # the pipeline's capturing wrapper around sdpa or the Attention op: the diagnostic's probabilities
        # are traced from the very code the PyTorch diagnostic runs (scr_core.attention_capture)
        AttentionInterface.register(name, capturing(_fused_attention if fused else sdpa_attention_forward))
        AttentionMaskInterface.register(name, AttentionMaskInterface()["sdpa"])
    decoder_config._attn_implementation = name


class Embedding(nn.Module):
    """input_ids[B,S] + image_features[N,D] → inputs_embeds[B,S,D]: row i of the features goes to the
    i-th image token in row-major order (``masked_scatter``), written with static-shape ops."""

    def __init__(self, embed_tokens: nn.Module, image_token_id: int) -> None:
        super().__init__()
        self.embed_tokens = embed_tokens
        self.image_token_id = int(image_token_id)

    def forward(self, input_ids: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        embeds = self.embed_tokens(input_ids)
        flat = (input_ids == self.image_token_id).reshape(-1)
        index = torch.cumsum(flat.to(torch.int64), 0) - 1
        # only placeholders that have a feature row: a decode step that *generates* the image token
        # (no features) keeps the token's own embedding, as the PyTorch model does
        flat = flat & (index < image_features.shape[0])
        padded = torch.cat([image_features.to(embeds.dtype), embeds.new_zeros(1, embeds.shape[-1])], 0)
        index = torch.where(flat, index, torch.full_like(index, image_features.shape[0]))
        gathered = padded[index].reshape(embeds.shape)
        return torch.where(flat.reshape(input_ids.shape)[..., None], gathered, embeds)


@contextmanager
def renumbered(layers: Iterable[nn.Module]):
    """Number the attention modules of ``layers`` 0, 1, … for the duration (the part's own cache)."""
    saved: list[tuple[Any, int]] = []
    for local, layer in enumerate(layers):
        for module in layer.modules():
            if getattr(module, "layer_idx", None) is not None:
                attention: Any = module  # transformers' attention module: its layer_idx an int
                saved.append((attention, attention.layer_idx))
                attention.layer_idx = local
    try:
        yield
    finally:
        for module, index in saved:
            module.layer_idx = index


class DecoderPart(nn.Module):
    """Layers ``first … last`` of the decoder with SCR at ``hook_layers`` and, in the head, the map.

    head: returns (hidden_state, scr_scores[B,Nv], present...) — hidden before the final norm;
    tail: returns (logits, present...).
    """

    def __init__(self, language_model: nn.Module, first: int, last: int, *, lm_head: nn.Module | None,
                 hook_layers: Sequence[int], lam: float, diag_layers: Sequence[int] = (),
                 suppressed_tokens: Sequence[int] = ()) -> None:
        super().__init__()
        part = copy.copy(language_model)
        part._modules = dict(language_model._modules)
        part.layers = nn.ModuleList(list(cast(nn.ModuleList, language_model.layers))[first:last + 1])
        if lm_head is None:
            part.norm = nn.Identity()
        self.part = part
        self.lm_head = lm_head
        # tokens the model's own forward forbids (Chameleon's image codes in text mode): logits at the dtype's min
        self.register_buffer("suppressed", torch.tensor(sorted(suppressed_tokens), dtype=torch.long), persistent=False)
        self.first = first
        self.hook_layers = tuple(i - first for i in hook_layers if first <= i <= last)
        self.lam = float(lam)
        # diagnostic layers are in the head, which starts at 0: local index == global index
        self.diag_layers = frozenset(i for i in diag_layers if first <= i <= last)

    @property
    def has_hooks(self) -> bool:
        return bool(self.hook_layers)

    def forward(self, inputs_embeds, attention_mask, position_ids, past, visual_positions=None, scr_map=None,
                query_start=None):
        cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)])
        handles = [self.part.layers[i].register_forward_hook(self._edit(visual_positions, scr_map))
                   for i in self.hook_layers]
        capture = AttentionCapture(self.diag_layers, row_start=0)
        try:
            with recording(capture):
                out = self.part(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                                cache=cache, use_cache=True)
        finally:
            for handle in handles:
                handle.remove()
        presents = [t for layer in cache.layers for t in (layer.keys, layer.values)]
        hidden = out.last_hidden_state
        if self.lm_head is not None:
            logits = self.lm_head(hidden)
            if self.suppressed.numel():
                logits = logits.index_fill(-1, self.suppressed, torch.finfo(logits.dtype).min)
            return (logits, *presents)
        return (hidden, self._scores(capture, visual_positions, query_start, inputs_embeds.shape[1]), *presents)

    def _edit(self, visual_positions, scr_map):
        lam = self.lam

        def hook(module, args, output):
            if isinstance(output, tuple):
                return (torch.ops.scr.redistribute(output[0], visual_positions, scr_map, lam), *output[1:])
            return torch.ops.scr.redistribute(output, visual_positions, scr_map, lam)

        return hook

    def _scores(self, capture, visual_positions, query_start, seq_len):
        """Mean over diagnostic layers, heads and each prompt's post-image query rows, at its visual tokens."""
        mean = capture.mean()  # (B, S, T)
        past_len = mean.shape[2] - seq_len
        rows = (torch.arange(seq_len, device=mean.device)[None, :] + past_len) >= query_start[:, None]  # (B, S)
        summed = torch.where(rows[..., None], mean, torch.zeros_like(mean)).sum(dim=1)
        per_key = summed / rows.sum(dim=1, keepdim=True).clamp(min=1).to(summed.dtype)  # (B, T)
        index = visual_positions.clamp(min=0)
        return torch.where(visual_positions >= 0, torch.gather(per_key, 1, index), torch.zeros_like(index,
                                                                                                  dtype=per_key.dtype))
