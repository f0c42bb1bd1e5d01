"""Source selection: greedy top-K over interior patches with exclusive neighbour claiming.

Resolution of the paper's wording (docs/method.md §1.3): candidates are visited in descending
attention (ties: lower row-major index first); a candidate already claimed as a neighbour is
skipped; a new source claims every free 8-neighbour. Sources and neighbours are disjoint,
each neighbour has exactly one owner, and any two sources are >= 2 apart (Chebyshev).
K is an upper bound: on small grids the claimed patches can exhaust the interior first;
``GridPlan.num_sources`` then reports fewer than K (and a warning is logged).
"""

from __future__ import annotations

import warnings

import numpy as np

from .config import SCRConfig
from .errors import ConfigError
from .grid import interior_mask, neighbours8
from .plan import GridPlan


def greedy_claim(order: np.ndarray, height: int, width: int, k: int) -> GridPlan:
    """Walk ``order`` (candidate flat indices, best first) and place up to ``k`` sources."""
    sources: list[int] = []
    owner: dict[int, int] = {}
    taken = set()
    for p in order.tolist():
        if len(sources) == k:
            break
        if p in taken:
            continue
        sources.append(p)
        taken.add(p)
        for q in neighbours8(p, height, width):
            if q not in taken:
                owner[q] = p
                taken.add(q)
    warn_if_short(len(sources), k, height, width, stacklevel=3)
    return GridPlan(height, width, tuple(sources), tuple(owner.keys()), tuple(owner.values()))


def warn_if_short(placed: int, k: int, height: int, width: int, stacklevel: int = 2) -> None:
    """The warning when fewer than K sources fit (the plan then reports fewer): any runtime that selects."""
    if placed < k:
        # warnings.warn shows each distinct message once, not once per image of a benchmark.
        warnings.warn(f"only {placed} of k={k} sources fit on the {height}x{width} grid "
                      "(neighbour claims exhausted the candidates)", stacklevel=stacklevel)


def check_k_fits(k: int, height: int, width: int, exclude_border: bool) -> None:
    """``ConfigError`` if K exceeds the candidate patches of a grid (before anything is selected)."""
    allowed = max(height - 2, 0) * max(width - 2, 0) if exclude_border else height * width
    if k > allowed:
        where = "interior (border excluded)" if exclude_border else "grid"
        raise ConfigError(f"k={k} exceeds the {allowed} patches of the {height}x{width} {where}; "
                          f"lower k" + (" or set exclude_border=False" if exclude_border else ""))


def candidate_indices(height: int, width: int, cfg: SCRConfig) -> np.ndarray:
    """Flat indices allowed as sources; raises if K cannot possibly fit."""
    check_k_fits(cfg.k, height, width, cfg.exclude_border)
    return np.flatnonzero(interior_mask(height, width, cfg.exclude_border))


def select_sources(attention: np.ndarray, cfg: SCRConfig) -> GridPlan:
    """SCR source selection on one (H, W) attention map."""
    attention = np.asarray(attention, dtype=np.float64)
    if attention.ndim != 2:
        raise ConfigError(f"attention map must be 2-D (H, W), got shape {attention.shape}")
    height, width = attention.shape
    allowed = candidate_indices(height, width, cfg)
    scores = attention.reshape(-1)[allowed]
    order = allowed[np.argsort(-scores, kind="stable")]
    return greedy_claim(order, height, width, cfg.k)


def select_uniform(height: int, width: int, cfg: SCRConfig, rng: np.random.Generator) -> GridPlan:
    """Uniform-Smooth ablation: the same greedy loop over a random order of the candidates."""
    allowed = candidate_indices(height, width, cfg)
    return greedy_claim(rng.permutation(allowed), height, width, cfg.k)


def source_capacity(height: int, width: int, exclude_border: bool = True) -> int:
    """Most sources one grid can hold: sources are >= 2 apart (Chebyshev), so at most one per
    2x2 block of the allowed area, ⌈rows/2⌉·⌈cols/2⌉ (the greedy walk may place fewer)."""
    rows, cols = (height - 2, width - 2) if exclude_border else (height, width)
    return max(0, -(-rows // 2)) * max(0, -(-cols // 2))


#: The grid the paper's K = 32 was chosen for (LLaVA-1.5's 24x24): a clip's slice gets K in proportion.
PAPER_GRID_PATCHES = 24 * 24


def slice_budget(height: int, width: int, cfg: SCRConfig) -> int:
    """Sources of one temporal slice of a clip (docs/method.md "Video clips").

    ``cfg.slice_k`` when given (a ``ConfigError`` if the slice cannot hold it); else K scaled by the slice's
    patches, round(k·h·w/576), at least 1 and at most ``source_capacity``, so the default always fits.
    """
    capacity = source_capacity(height, width, cfg.exclude_border)
    if cfg.slice_k is not None:
        if cfg.slice_k > capacity:
            raise ConfigError(f"slice_k={cfg.slice_k} does not fit a {height}x{width} slice of this clip (at most "
                              f"{capacity} sources{' off the border' if cfg.exclude_border else ''}); lower slice_k "
                              "or leave it unset (K scaled by the slice's size)")
        return cfg.slice_k
    return min(capacity, max(1, round(cfg.k * height * width / PAPER_GRID_PATCHES)))


def proportional_budgets(k: int, masses, caps) -> list[int]:
    """Split ``k`` sources over grids in proportion to ``masses``, each capped by ``caps``.

    Largest-remainder (Hamilton) rounding of k·mass_i/Σmass: every grid gets the floor of its
    quota and the leftover units go to the largest fractional parts (ties: the earlier grid).
    A grid whose share exceeds its cap is fixed at the cap and the rest of ``k`` is split again
    over the uncapped grids, so the budgets sum to min(k, Σcaps). Non-positive or non-finite
    total mass falls back to equal masses.
    """
    masses = np.asarray(masses, dtype=np.float64).ravel()
    caps = [int(c) for c in caps]
    if masses.size != len(caps):
        raise ConfigError(f"got {masses.size} masses for {len(caps)} caps")
    masses = np.where(np.isfinite(masses) & (masses > 0), masses, 0.0)
    budgets = [0] * len(caps)
    free = [i for i, cap in enumerate(caps) if cap > 0]
    remaining = int(k)
    while free and remaining > 0:
        weights = masses[free]
        if weights.sum() <= 0:
            weights = np.ones(len(free))
        quotas = remaining * weights / weights.sum()
        shares = np.floor(quotas).astype(int)
        leftover = remaining - int(shares.sum())
        order = sorted(range(len(free)), key=lambda j: (-(quotas[j] - shares[j]), j))
        for j in order[:leftover]:
            shares[j] += 1
        over = [j for j, i in enumerate(free) if shares[j] > caps[i]]
        if not over:
            for j, i in enumerate(free):
                budgets[i] = int(shares[j])
            break
        for j in over:
            budgets[free[j]] = caps[free[j]]
            remaining -= caps[free[j]]
        free = [i for j, i in enumerate(free) if j not in over]
    return budgets
