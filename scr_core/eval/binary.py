"""Confusion counts and rates for yes/no benchmarks with a choosable positive class.

Why: POPE counts "yes" as positive and AMBER counts "no" as positive; one tested implementation
serves both, and it says exactly what happens to answers the parser could not read.

Unknown answers (``"unknown"`` from a non-official parser) are wrong for accuracy, are neither
positive nor negative predictions for precision, count as misses for recall, and stay in the
denominator of the false-positive rate: FPR = FP / (all ground-truth negatives). With a parser
that never returns unknown (POPE's official rule) these are the textbook formulas, and
FPR = FP / (FP + TN). A rate whose denominator is zero is reported as 0.0, as the reference
scripts do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from .parsing import NO, UNKNOWN, YES


def _rate(num: int, den: int) -> float:
    return num / den if den else 0.0


@dataclass(frozen=True)
class BinaryMetrics:
    """Counts and rates of one set of yes/no predictions; rates are fractions in [0, 1]."""

    positive: str
    n: int
    tp: int
    fp: int
    tn: int
    fn: int
    unknown_pos: int
    unknown_neg: int
    n_pred_yes: int

    @property
    def n_pos(self) -> int:
        """Ground-truth positives."""
        return self.tp + self.fn + self.unknown_pos

    @property
    def n_neg(self) -> int:
        """Ground-truth negatives."""
        return self.fp + self.tn + self.unknown_neg

    @property
    def unknown(self) -> int:
        return self.unknown_pos + self.unknown_neg

    @property
    def accuracy(self) -> float:
        return _rate(self.tp + self.tn, self.n)

    @property
    def precision(self) -> float:
        return _rate(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _rate(self.tp, self.n_pos)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def yes_ratio(self) -> float:
        """Share of all answers parsed as "yes" (POPE's Yes%)."""
        return _rate(self.n_pred_yes, self.n)

    @property
    def false_positive_rate(self) -> float:
        """FP / ground-truth negatives; for POPE this is SCR's hallucination rate HR."""
        return _rate(self.fp, self.n_neg)

    @property
    def unknown_ratio(self) -> float:
        return _rate(self.unknown, self.n)

    def counts(self) -> dict[str, int]:
        """The raw counts as a plain dict."""
        return asdict(self)

    def to_dict(self, percent: bool = True) -> dict[str, float]:
        """Rates (in percent by default) plus the counts, ready for a report or JSON."""
        scale = 100.0 if percent else 1.0
        rates = {
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "yes_ratio": self.yes_ratio,
            "fpr": self.false_positive_rate,
            "unknown_ratio": self.unknown_ratio,
        }
        out: dict[str, float] = {k: v * scale for k, v in rates.items()}
        out.update({k: v for k, v in self.counts().items() if k != "positive"})
        return out


def binary_metrics(labels: Sequence[str], predictions: Sequence[str], positive: str = YES) -> BinaryMetrics:
    """Confusion counts of parsed predictions (``yes``/``no``/``unknown``) against ``yes``/``no`` labels."""
    if positive not in (YES, NO):
        raise ValueError(f"positive class must be 'yes' or 'no', got {positive!r}")
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    tp = fp = tn = fn = unk_pos = unk_neg = n_yes = 0
    for i, (gt, pred) in enumerate(zip(labels, predictions)):
        if gt not in (YES, NO):
            raise ValueError(f"label {i} is {gt!r}, expected 'yes' or 'no'")
        if pred not in (YES, NO, UNKNOWN):
            raise ValueError(f"prediction {i} is {pred!r}, expected 'yes', 'no' or 'unknown' (parse it first)")
        n_yes += pred == YES
        if gt == positive:
            if pred == UNKNOWN:
                unk_pos += 1
            elif pred == positive:
                tp += 1
            else:
                fn += 1
        else:
            if pred == UNKNOWN:
                unk_neg += 1
            elif pred == positive:
                fp += 1
            else:
                tn += 1
    return BinaryMetrics(positive, len(labels), tp, fp, tn, fn, unk_pos, unk_neg, n_yes)
