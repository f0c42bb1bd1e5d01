"""``SCRConfig``: every knob of the method, validated on construction.

Defaults follow the paper (docs/method.md §1): K=32 sources, λ=1.10, diagnostic layers 8..16
(inclusive), hook layers from the model adapter (0..11 for LLaVA-1.5, 0..15 otherwise).
``None`` for a layer range means "the paper's default for this model", resolved by
:func:`resolve_layers` once the decoder depth is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from .errors import ConfigError

Query = Literal["post_image", "last"]
Selection = Literal["attention", "uniform"]

#: λ = 1 leaves every hidden state as it is: SCR moves credit only above it (calibrate's grid, the ComfyUI
#: widget's minimum). A λ in (0, 1) passes ``check_lam_value`` (an ablation: credit flows back to the sources).
IDENTITY_LAM = 1.0

PAPER_DIAG_LAYERS = tuple(range(8, 17))
PAPER_DEPTH = 32  # the depth the paper's layer ranges were written for (7B models)
MIN_PAPER_DEPTH = 28  # shallowest decoder in the paper (Qwen2-VL-7B); below it ranges are scaled


@dataclass(frozen=True)
class SCRConfig:
    """Spatial Credit Redistribution settings.

    k: number of source patches per image grid (an upper bound: see ``selection``).
    lam: λ; sources are scaled by 1/λ and each neighbour gains (λ-1)·h_source.
    diag_layers: decoder layers whose attention forms the diagnostic map (None → 8..16).
    hook_layers: decoder layers whose outputs are edited (None → the adapter's default).
    query: "post_image" averages every prompt token after the image; "last" uses the last one.
    exclude_border: sources are never taken from the outer ring of the grid.
    selection: "attention" (SCR) or "uniform" (the Uniform-Smooth ablation, random sources).
    seed: seeds the Uniform-Smooth permutation.
    slice_k: sources per temporal slice of a video clip; ``None`` (default) scales ``k`` by the slice's size
        (``selection.slice_budget``: k·h·w/576, the paper's 32 on a 24x24 grid, at least 1, at most what the
        slice holds); a number is taken as is, and refused if a slice cannot hold it.
    """

    k: int = 32
    lam: float = 1.10
    diag_layers: tuple[int, ...] | None = None
    hook_layers: tuple[int, ...] | None = None
    query: Query = "post_image"
    exclude_border: bool = True
    selection: Selection = "attention"
    seed: int = 0
    slice_k: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k <= 0:
            raise ConfigError(f"k must be a positive integer (got {self.k!r})")
        check_lam(check_lam_value(self.lam), "float32")
        for name in ("diag_layers", "hook_layers"):
            value = getattr(self, name)
            if value is None:
                continue
            layers = tuple(value)
            if not layers or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layers):
                raise ConfigError(f"{name} must be a non-empty sequence of layer indices >= 0 (got {value!r})")
            object.__setattr__(self, name, tuple(sorted(set(layers))))
        if self.query not in ("post_image", "last"):
            raise ConfigError(f"query must be 'post_image' or 'last' (got {self.query!r})")
        if self.selection not in ("attention", "uniform"):
            raise ConfigError(f"selection must be 'attention' or 'uniform' (got {self.selection!r})")
        if self.slice_k is not None and (isinstance(self.slice_k, bool) or not isinstance(self.slice_k, int)
                                         or self.slice_k <= 0):
            raise ConfigError(f"slice_k must be a positive integer or None (got {self.slice_k!r})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer (got {self.seed!r})")

    def with_(self, **changes) -> SCRConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def check_lam_value(lam, name: str = "lam") -> float:
    """The one lower bound of any λ (a config's, a plan's, an export's): a finite number > 0, since the
    sources are scaled by 1/λ. ``ConfigError`` naming ``name`` (a field or a flag) otherwise."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0:
        raise ConfigError(f"{name} must be a finite number > 0 (got {lam!r}); the paper uses 1.10")
    return float(lam)


def check_redistributes(lam: float) -> None:
    """Refuse a λ that moves no credit (λ <= ``IDENTITY_LAM``): what a grid of SCR settings to compare
    against vanilla must not hold."""
    if lam <= IDENTITY_LAM:
        raise ConfigError(f"λ={lam:g} does not redistribute (λ must be > {IDENTITY_LAM:g} for SCR)")


# numpy stand-ins for the types hooks compute in; bfloat16 has float32's exponent range
_RANGE_OF = {"float16": "float16", "bfloat16": "float32", "float64": "float64"}


def check_lam(lam: float, dtype: str = "float32") -> None:
    """Refuse a λ whose 1/λ or λ-1 is not a finite number (or 1/λ is 0) in ``dtype``, the type the
    hooks compute in: such a λ turns hidden states into inf/NaN and the caption silently comes out
    empty (fp16 ends at 65504)."""
    import numpy as np

    name = str(dtype).removeprefix("torch.")
    as_type = np.dtype(_RANGE_OF.get(name, "float32")).type
    with np.errstate(all="ignore"):
        value = as_type(lam)
        inverse, gain = as_type(1) / value, value - as_type(1)
    if not (np.isfinite(value) and np.isfinite(inverse) and np.isfinite(gain) and inverse != 0 and value > 0):
        raise ConfigError(f"lam={lam!r} does not fit the model's {name} numbers (1/λ or λ-1 overflows); "
                          "use a λ near 1 (the paper uses 1.10)")


def scaled_range(start: int, stop: int, depth: int) -> tuple[int, ...]:
    """Map the paper's inclusive range [start, stop] on a 32-layer decoder onto ``depth`` layers."""
    lo = min(depth - 1, round(start * depth / PAPER_DEPTH))
    hi = min(depth - 1, max(lo, round((stop + 1) * depth / PAPER_DEPTH) - 1))
    return tuple(range(lo, hi + 1))


def paper_range(start: int, stop: int, depth: int) -> tuple[int, ...]:
    """The paper's inclusive layer range on a decoder of ``depth`` layers.

    Real checkpoints (>= 28 layers) use the paper's absolute indices, clipped to the depth.
    Shallower decoders (tiny test models, the testbed) get the same fractions of their depth.
    """
    if depth >= MIN_PAPER_DEPTH:
        return tuple(range(start, min(stop, depth - 1) + 1))
    return scaled_range(start, stop, depth)


def check_depth(name: str, layers: tuple[int, ...] | None, depth: int | None, hint: str = "") -> None:
    """The one depth check: explicit ``layers`` must exist in a decoder of ``depth`` layers (``None``: not
    known yet, or the default); ``name`` as the caller's user knows it (a field or a flag)."""
    if depth is not None and layers is not None and max(layers) >= depth:
        raise ConfigError(f"{name} reaches layer {max(layers)}, but the model has only {depth} decoder layers "
                          f"(0..{depth - 1}){hint}")


def resolve_layers(cfg: SCRConfig, depth: int, default_hooks: tuple[int, ...]) -> SCRConfig:
    """Fill ``None`` layer ranges for a decoder of ``depth`` layers and check explicit ones.

    The paper's diagnostic layers 8..16 are the same absolute indices for every real model;
    see :func:`paper_range` for shallow decoders.
    """
    diag = cfg.diag_layers
    if diag is None:
        diag = paper_range(PAPER_DIAG_LAYERS[0], PAPER_DIAG_LAYERS[-1], depth)
    hooks = cfg.hook_layers if cfg.hook_layers is not None else default_hooks
    for name, layers in (("diag_layers", diag), ("hook_layers", hooks)):
        check_depth(f"{name}={list(layers)}", layers, depth,
                    f"; pass smaller indices or leave {name}=None for the paper's default")
    return replace(cfg, diag_layers=tuple(diag), hook_layers=tuple(hooks))


def parse_layer_ranges(text: str | None) -> tuple[int, ...] | None:
    """"0-11", "0,2,4", "0-3,8" -> layer indices (inclusive ranges); blank or None -> None (the default).

    One parser for the CLI flags and the ComfyUI widgets; a reversed or malformed range is a
    ``ConfigError`` that names it.
    """
    if text is None or not str(text).strip():
        return None
    layers: list[int] = []
    for part in str(text).split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ConfigError(f"bad layer list {text!r}; use e.g. 0-11 or 0,2,4") from None
        if first < 0:
            raise ConfigError(f"layer {first} in {text!r} is negative")
        if last < first:
            raise ConfigError(f"layer range {part.strip()!r} is reversed; write it {last}-{first}")
        layers.extend(range(first, last + 1))
    return tuple(layers)
