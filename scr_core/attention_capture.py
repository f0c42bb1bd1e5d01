"""Attention probabilities for a few query rows, without switching the model to eager attention.

SDPA and flash attention never materialise the attention matrix. Instead of loading the
model with ``attn_implementation="eager"``, we register a wrapper in transformers'
``AttentionInterface`` registry: it delegates the real computation to the model's own
implementation (sdpa, flash, ...) and, for the layers being captured, also computes
softmax(q·kᵀ·scale + mask) for the requested query rows only. The decoder's config is
switched to the wrapper for the duration of a ``with capture_attention(...)`` block.

With ``stop_after_last``, the wrapper raises ``CaptureComplete`` as soon as the last captured
layer's rows are recorded: nothing after that point is needed (not that layer's attention
output, projection or MLP, nor any later layer), so the diagnostic pass ends there.

Only the registries' public API is used (``in``, indexing, ``AttentionInterface.register``):
tested with transformers 5.0 and 5.24 (the floor is ``versions.MIN_TRANSFORMERS``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface

from .errors import SCRError


def head_mean_probabilities(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None, scaling: float,
                            row_start: int = 0) -> torch.Tensor:
    """softmax(q·kᵀ·scale + mask) averaged over heads, for the query rows ``[row_start:]``: (B, R, K) in float32.

    The one definition of the diagnostic's attention probabilities: the PyTorch pipeline records them with
    ``AttentionCapture``, the ONNX exporter traces the same code into its graphs. ``mask``: transformers'
    4-D mask (bool: attend, or additive float) or ``None`` when causality is implicit (sdpa's ``is_causal``,
    flash: the bottom-right triangle)."""
    q = query[:, :, row_start:, :].float()
    k = repeat_kv(key, query.shape[1] // key.shape[1]).float()
    scores = torch.matmul(q, k.transpose(-1, -2)) * scaling  # (B, H, R, K)
    if mask is None:
        q_pos = torch.arange(row_start, query.shape[2], device=q.device) + (key.shape[2] - query.shape[2])
        allowed = torch.arange(key.shape[2], device=q.device)[None, :] <= q_pos[:, None]
        scores = scores.masked_fill(~allowed, float("-inf"))
    elif mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask[:, :, row_start:, : key.shape[2]], float("-inf"))
    else:
        scores = scores + mask[:, :, row_start:, : key.shape[2]].float()
    return torch.softmax(scores, dim=-1).mean(dim=1)  # mean over heads


class CaptureComplete(Exception):
    """Raised inside the last captured layer's attention once its rows are recorded (``stop_after_last``)."""


@dataclass
class AttentionCapture:
    """Accumulates head-averaged attention rows ``[row_start:]`` over the captured layers."""

    layers: frozenset[int]
    row_start: int
    stop_after_last: bool = False  # raise CaptureComplete once every captured layer is recorded
    total: torch.Tensor | None = None  # (batch, rows, keys), float32, sum over layers of head means
    seen: list[int] = field(default_factory=list)

    def record(self, layer_idx: int, query: torch.Tensor, key: torch.Tensor,
               mask: torch.Tensor | None, scaling: float) -> None:
        probs = head_mean_probabilities(query, key, mask, scaling, self.row_start)  # (B, R, K)
        self.total = probs if self.total is None else self.total + probs
        self.seen.append(layer_idx)

    def mean(self) -> torch.Tensor:
        if self.total is None:
            raise SCRError("no attention was captured: the diagnostic layers never ran")
        return self.total / len(self.seen)


_ACTIVE: ContextVar[AttentionCapture | None] = ContextVar("scr_attention_capture", default=None)
_PREFIX = "scr_capture+"


def capturing(base_fn):
    """``base_fn`` (an attention implementation) that also records into the active capture (``recording``)
    at its layers; registered under a name of its own in transformers' ``AttentionInterface``."""

    def capture_then_attend(module, query, key, value, attention_mask, scaling=None, **kwargs):
        capture = _ACTIVE.get()
        layer_idx = getattr(module, "layer_idx", None)
        if capture is not None and layer_idx in capture.layers:
            scale = scaling if scaling is not None else query.shape[-1] ** -0.5
            with torch.no_grad():
                capture.record(layer_idx, query, key, attention_mask, scale)
            if capture.stop_after_last and capture.layers.issubset(capture.seen):
                raise CaptureComplete
        return base_fn(module, query, key, value, attention_mask, scaling=scaling, **kwargs)

    return capture_then_attend


def capture_name(base: str) -> str:
    """Register (once) and return the capturing twin of attention implementation ``base``."""
    name = _PREFIX + base
    attention, masks = AttentionInterface(), AttentionMaskInterface()
    if name not in attention:
        if base == "eager":
            # eager is the per-model fallback, not a registry entry; SDPA with eager's additive
            # float mask computes the same output.
            base_fn = sdpa_attention_forward
        elif base in attention:
            base_fn = attention[base]
        else:
            raise SCRError(f"attention implementation {base!r} is not supported by the SCR diagnostic pass")
        AttentionInterface.register(name, capturing(base_fn))
        if base in masks:
            AttentionMaskInterface.register(name, masks[base])
    return name


@contextmanager
def recording(capture: AttentionCapture) -> Iterator[AttentionCapture]:
    """Inside the block, attention implementations made by ``capturing`` record into ``capture``."""
    token = _ACTIVE.set(capture)
    try:
        yield capture
    finally:
        _ACTIVE.reset(token)


@contextmanager
def capture_attention(decoder_config, capture: AttentionCapture) -> Iterator[AttentionCapture]:
    """Route ``decoder_config``'s attention through the capturing wrapper inside the block."""
    base = decoder_config._attn_implementation or "eager"
    if base.startswith(_PREFIX):
        raise SCRError("capture_attention blocks cannot be nested")
    decoder_config._attn_implementation = capture_name(base)
    try:
        with recording(capture):
            yield capture
    finally:
        decoder_config._attn_implementation = base
