"""Statistics for ``calibrate``: Holm's step-down correction and a paired bootstrap CI.

Why here: scipy.stats has the exact McNemar test (``binomtest``, used through
``eval.pope.mcnemar_exact``) and the bootstrap, but no Holm correction; the few lines below are
checked against a hand-computed case in the tests instead of adding statsmodels for them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (family-wise error over all ``p_values``), in the given order.

    Sorted ascending, the i-th smallest (0-based) is multiplied by m - i, then made monotone
    (each at least the one before it) and capped at 1 (Holm 1979).
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must be numbers in [0, 1] (got {list(p_values)!r})")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def bootstrap_mean_ci(values: Sequence[float], rng: np.random.Generator, n_resamples: int = 2000,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement).

    For calibrate the values are per-question differences (SCR minus vanilla) of "answered yes to
    an absent object", whose mean is the HR change; percentile rather than BCa because those
    differences are often all zero, where BCa is undefined. (nan, nan) for no values.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
