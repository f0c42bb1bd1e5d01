"""Confusion counts and rates for yes/no benchmarks with a choosable positive class.

Why: POPE counts "yes" as positive and AMBER counts "no" as positive; one tested implementation
serves both, and it says exactly what happens to answers the parser could not read.

Unknown answers (``"unknown"`` from a non-official parser) are wrong for accuracy, are neither
positive nor negative predictions for precision, count as misses for recall, and stay in the
denominator of the false-positive rate: FPR = FP / (all ground-truth negatives). With a parser
that never returns unknown (POPE's official rule) these are the textbook formulas, and
FPR = FP / (FP + TN). A rate whose denominator is zero is undefined and reported as ``None``
(JSON ``null``) with a note saying why: POPE's ``evaluate.py`` and AMBER's ``inference.py`` stop
with ZeroDivisionError there (e.g. precision when every answer is "no"), and 0 would read as a
real score. F1 is 2TP / (2TP + FP + FN): ``None`` only when precision or recall is, and 0 when
both are 0 (where POPE's script divides by zero too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .parsing import NO, UNKNOWN, YES


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


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
    def accuracy(self) -> float | None:
        return _rate(self.tp + self.tn, self.n)

    @property
    def precision(self) -> float | None:
        """None when nothing was predicted positive."""
        return _rate(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        """None when there is no ground-truth positive."""
        return _rate(self.tp, self.n_pos)

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def yes_ratio(self) -> float | None:
        """Share of all answers parsed as "yes" (POPE's Yes%)."""
        return _rate(self.n_pred_yes, self.n)

    @property
    def false_positive_rate(self) -> float | None:
        """FP / ground-truth negatives; for POPE this is SCR's hallucination rate HR."""
        return _rate(self.fp, self.n_neg)

    @property
    def unknown_ratio(self) -> float | None:
        return _rate(self.unknown, self.n)

    def notes(self) -> list[str]:
        """Why each ``None`` rate is undefined."""
        out = []
        if self.precision is None:
            out.append(f"precision and f1 undefined: no answer parsed as {self.positive!r} (0/0)")
        if self.recall is None:
            out.append(f"recall and f1 undefined: no ground-truth {self.positive!r} question (0/0)")
        if self.false_positive_rate is None:
            out.append("false-positive rate undefined: no ground-truth negative question (0/0)")
        return out

    def counts(self) -> dict[str, int]:
        """The raw counts as a plain dict."""
        return asdict(self)

    def to_dict(self, percent: bool = True) -> dict[str, float | None | str]:
        """Rates (in percent by default; ``None`` if undefined) plus the counts, ready for a report
        or JSON; ``note`` says why a rate is undefined (only when one is)."""
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
        out: dict = {k: None if v is None else v * scale for k, v in rates.items()}
        out.update({k: v for k, v in self.counts().items() if k != "positive"})
        if self.notes():
            out["note"] = "; ".join(self.notes())
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
