"""Entropy-hallucination analysis: does diffuse visual attention go with fewer false "yes"?

Why: SCR's mechanism claim is a Pearson r of about -0.65 between attention entropy and POPE
hallucination rate (docs/method.md §2, Table 6). Its p-values only fit ~30 points per model, so the
reproduction (docs/method.md §2, "Recommended reproduction") is: keep the ground-truth-"no"
questions of a vanilla POPE-Adversarial run, sort them by entropy into 30 equal-count bins,
compute HR = FP / (FP + TN) per bin, and take Pearson r over the 30 (mean entropy, HR) pairs;
report the per-sample point-biserial r (entropy vs hallucinated yes/no) beside it for
transparency.

A sample is "hallucinated" when its parsed answer is "yes"; an unreadable answer ("unknown")
is not (it stays in the bin's denominator, as in ``binary.py``). Ties in entropy keep input
order; bin sizes differ by at most one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .parsing import NO, UNKNOWN, YES


@dataclass(frozen=True)
class EntropyBin:
    """One equal-count bin of ground-truth-"no" samples."""

    index: int
    n: int
    entropy_min: float
    entropy_max: float
    entropy_mean: float
    n_hallucinated: int

    @property
    def hr(self) -> float:
        """Hallucination rate in this bin, FP / (FP + TN) (unknown answers count in the denominator)."""
        return self.n_hallucinated / self.n


@dataclass(frozen=True)
class EntropyAnalysis:
    """Binned HR and both correlations; r/p are NaN when undefined (e.g. HR constant across bins)."""

    bins: tuple[EntropyBin, ...]
    pearson_r: float
    pearson_p: float
    pointbiserial_r: float
    pointbiserial_p: float
    n_samples: int
    n_excluded: int

    @property
    def bin_entropy(self) -> np.ndarray:
        return np.array([b.entropy_mean for b in self.bins])

    @property
    def bin_hr(self) -> np.ndarray:
        return np.array([b.hr for b in self.bins])

    def to_dict(self) -> dict[str, float]:
        return {
            "pearson_r": self.pearson_r,
            "pearson_p": self.pearson_p,
            "pointbiserial_r": self.pointbiserial_r,
            "pointbiserial_p": self.pointbiserial_p,
            "n_samples": self.n_samples,
            "n_bins": len(self.bins),
        }


def _safe(fn, x, y) -> tuple[float, float]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    res = fn(x, y)
    return float(res[0]), float(res[1])


def entropy_hallucination_analysis(
    entropies: Sequence[float],
    labels: Sequence[str],
    predictions: Sequence[str],
    n_bins: int = 30,
) -> EntropyAnalysis:
    """Bin the ground-truth-"no" samples by entropy and correlate entropy with hallucination.

    ``labels`` are ground truths ("yes"/"no"), ``predictions`` parsed answers
    ("yes"/"no"/"unknown"); "yes" questions are excluded (``n_excluded``). Needs at least
    ``n_bins`` "no" samples; non-finite entropies are an error.
    """
    if not (len(entropies) == len(labels) == len(predictions)):
        raise ValueError(
            f"lengths differ: {len(entropies)} entropies, {len(labels)} labels, {len(predictions)} predictions"
        )
    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")
    ent, hal = [], []
    for i, (e, gt, p) in enumerate(zip(entropies, labels, predictions)):
        if gt not in (YES, NO) or p not in (YES, NO, UNKNOWN):
            raise ValueError(f"sample {i}: label {gt!r} / prediction {p!r} must be parsed yes/no(/unknown)")
        if gt != NO:
            continue
        if not math.isfinite(float(e)):
            raise ValueError(f"sample {i}: entropy {e!r} is not a finite number")
        ent.append(float(e))
        hal.append(p == YES)
    if len(ent) < n_bins:
        raise ValueError(f"only {len(ent)} ground-truth-'no' samples for {n_bins} bins")
    ent_a = np.array(ent)
    hal_a = np.array(hal, dtype=bool)
    order = np.argsort(ent_a, kind="stable")
    bins = []
    for k, idx in enumerate(np.array_split(order, n_bins)):
        chunk = ent_a[idx]
        bins.append(EntropyBin(k, len(idx), float(chunk.min()), float(chunk.max()), float(chunk.mean()),
                               int(hal_a[idx].sum())))
    from scipy import stats  # the eval extra

    r, p_value = _safe(stats.pearsonr, [b.entropy_mean for b in bins], [b.hr for b in bins])
    rpb, ppb = _safe(lambda x, y: stats.pointbiserialr(y, x), ent_a, hal_a.astype(float))
    return EntropyAnalysis(tuple(bins), r, p_value, rpb, ppb, len(ent), len(labels) - len(ent))


def plot_entropy_hallucination(
    analysis: EntropyAnalysis,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Scatter of bin HR (%) against bin mean entropy with a least-squares line, saved as PNG.

    Uses matplotlib's Agg canvas directly, so it works headless and never changes the global
    backend of the calling program.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x, y = analysis.bin_entropy, analysis.bin_hr * 100.0
    fig = Figure(figsize=(5.0, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(x, y, s=18, color="tab:blue", label=f"{len(x)} equal-count bins")
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 2)
        ax.plot(xs, slope * xs + intercept, color="tab:red", lw=1.2)
    ax.set_xlabel("attention entropy (nats, bin mean)")
    ax.set_ylabel("hallucination rate FP/(FP+TN) (%)")
    ax.set_title(title or "Entropy vs hallucination")
    text = f"Pearson r = {analysis.pearson_r:.2f} (p = {analysis.pearson_p:.1e})\n" \
           f"point-biserial r = {analysis.pointbiserial_r:.2f}, n = {analysis.n_samples}"
    ax.text(0.98, 0.97, text, transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
