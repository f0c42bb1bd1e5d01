"""Markdown comparison tables: one row per method, one column per metric, deltas vs. a baseline.

Why: every results table of ``compare`` and the paper comparison has the same shape as SCR's
Table 1 (docs/method.md §4.1): methods in rows, metrics in columns, and each method's change
against vanilla decoding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# Metrics where a smaller number is better; used for the arrows in the header.
LOWER_IS_BETTER = frozenset({
    "hr", "fpr", "chair_s", "chair_i", "chair", "hal", "cog", "latency_ms", "overhead_ms", "unknown_ratio",
})
HIGHER_IS_BETTER = frozenset({
    "accuracy", "precision", "recall", "f1", "cider", "cover", "aAcc", "fAcc", "qAcc", "perception", "cognition",
})


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _delta(v: float | None, b: float | None) -> float | None:
    """``v - b``, or None when either is missing."""
    return None if v is None or b is None or _is_missing(v) or _is_missing(b) else v - b


def _fmt(v, digits: int) -> str:
    return "–" if _is_missing(v) else f"{v:.{digits}f}"


def comparison_table(
    results: Mapping[str, Mapping[str, float | None]],
    metrics: Sequence[str] | None = None,
    baseline: str | Sequence[str] | None = "vanilla",
    digits: int = 1,
    labels: Mapping[str, str] | None = None,
    against: Mapping[str, str] | None = None,
    formats: Mapping[str, str] | None = None,
) -> str:
    """A GitHub-markdown table of ``results[method][metric]``.

    Rows follow ``results``' order with the baseline first; columns follow ``metrics`` (default:
    every metric of the first method, in its order). Cells of other methods read
    ``value (+delta)`` against the baseline; a missing value shows "–". Headers get ↑/↓ for
    metrics in ``HIGHER_IS_BETTER``/``LOWER_IS_BETTER``; ``labels`` renames metric columns.
    ``baseline=None`` gives a table without deltas. Several baseline rows (e.g. one vanilla run
    per model) may be given as a list: they all come first, without deltas, and ``against`` maps
    each other row to the baseline row its deltas use (default: the first). ``formats`` gives a
    metric its own format spec (e.g. ``{"p_mcnemar": ".3g"}``) and no delta (a p-value is not a
    score to subtract). Raises ``ValueError`` if a baseline is not among the methods.
    """
    formats = formats or {}
    if not results:
        raise ValueError("no results to tabulate")
    bases = [] if baseline is None else [baseline] if isinstance(baseline, str) else list(baseline)
    against = dict(against or {})
    for name in (*bases, *(against[m] for m in results if m not in bases and m in against)):
        if name not in results:
            raise ValueError(f"baseline {name!r} not among methods {list(results)}")
    methods = bases + [m for m in results if m not in bases]
    if metrics is None:
        metrics = list(results[methods[0]])
    labels = labels or {}

    def header(m: str) -> str:
        last = m.rsplit(".", 1)[-1]  # "adversarial.hr" -> "hr"
        arrow = " ↓" if last in LOWER_IS_BETTER else " ↑" if last in HIGHER_IS_BETTER else ""
        return labels.get(m, m) + arrow

    lines = [
        "| method | " + " | ".join(header(m) for m in metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for method in methods:
        base = results[against.get(method, bases[0])] if bases and method not in bases else {}
        cells = []
        for m in metrics:
            v = results[method].get(m)
            if m in formats:
                cells.append("–" if _is_missing(v) else format(v, formats[m]))
                continue
            cell = _fmt(v, digits)
            delta = _delta(v, base.get(m))
            if base and delta is not None:
                cell += f" ({delta:+.{digits}f})"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def deltas(
    results: Mapping[str, Mapping[str, float | None]],
    baseline: str = "vanilla",
) -> dict[str, dict[str, float | None]]:
    """``{method: {metric: value - baseline value}}`` for every non-baseline method (None if missing)."""
    if baseline not in results:
        raise ValueError(f"baseline {baseline!r} not among methods {list(results)}")
    base = results[baseline]
    out = {}
    for method, vals in results.items():
        if method == baseline:
            continue
        out[method] = {
            m: _delta(v, base.get(m))
            for m, v in vals.items()
        }
    return out
