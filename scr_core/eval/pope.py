"""POPE: read the official question files, score yes/no answers, compare two methods.

Why: SCR's headline number is POPE's hallucination rate HR = FP / (FP + TN), the share of
absent objects the model claims to see (docs/method.md §4.1); accuracy, precision, recall, F1 and
yes-ratio are POPE's own metrics (docs/benchmarks.md, the POPE row).

On disk (RUCAIBox/POPE ``output/coco``)::

    questions/coco_pope_random.json        one JSON object per line:
    questions/coco_pope_popular.json         {"question_id": 1, "image": "COCO_val2014_000000310196.jpg",
    questions/coco_pope_adversarial.json      "text": "Is there a snowboard in the image?", "label": "yes"}
    val2014/COCO_val2014_000000310196.jpg  the 500 COCO val2014 images (the same for all splits)

The split comes from the file name (``{dataset}_pope_{split}.json``); LLaVA's merged
``llava_pope_test.jsonl`` carries it per line in ``"category"`` instead, which is used when present.
A JSON array instead of JSON lines is accepted too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scr_core.errors import DataError

from .answers import align_answers
from .binary import BinaryMetrics, binary_metrics
from .files import check_image, field as get_field, load_json_records, require_dir, require_file
from .parsing import NO, UNKNOWN, YES, normalize_label, parse_many

POPE_SPLITS = ("random", "popular", "adversarial")
_SPLIT_RE = re.compile(r"(?:^|[_\-.])(random|popular|adversarial)(?:[_\-.]|$)")


@dataclass(frozen=True)
class PopeSample:
    """One POPE question; ``label`` is "yes"/"no", ``split`` random/popular/adversarial."""

    question_id: int
    image_path: Path
    question: str
    label: str
    split: str


def split_from_filename(path: str | Path) -> str:
    """``"random"``/``"popular"``/``"adversarial"`` from a name like ``coco_pope_random.json``."""
    found = _SPLIT_RE.findall(Path(path).stem.lower())
    if len(set(found)) != 1:
        raise DataError(
            f"cannot tell the POPE split from the file name {Path(path).name!r}; expected one of "
            f"{', '.join(POPE_SPLITS)} in it (e.g. coco_pope_random.json) or pass split=..."
        )
    return found[0]


def read_pope(
    question_file: str | Path,
    image_dir: str | Path,
    split: str | None = None,
    check_images: bool = True,
) -> list[PopeSample]:
    """All questions of one POPE question file, in file order.

    ``split`` overrides the split taken from the file name or the per-line ``"category"``.
    With ``check_images`` every referenced image must exist under ``image_dir``.
    """
    question_file = require_file(question_file, "POPE question file")
    image_dir = require_dir(image_dir, "POPE image folder") if check_images else Path(image_dir)
    records = load_json_records(question_file, "POPE question file")
    default_split = split
    samples: list[PopeSample] = []
    seen: set[tuple[str, int]] = set()
    for i, rec in enumerate(records):
        qid = get_field(rec, "question_id", question_file, i)
        image = get_field(rec, "image", question_file, i)
        text = get_field(rec, "text", question_file, i)
        try:
            label = normalize_label(get_field(rec, "label", question_file, i), str(question_file))
        except ValueError as err:
            raise DataError(f"{question_file} record {i + 1}: {err}") from None
        rec_split = split or rec.get("category") or default_split
        if rec_split is None:
            rec_split = default_split = split_from_filename(question_file)
        rec_split = str(rec_split).lower()
        if rec_split not in POPE_SPLITS:
            raise DataError(f"{question_file} record {i + 1}: split {rec_split!r} is not one of {POPE_SPLITS}")
        try:
            qid = int(qid)
        except (TypeError, ValueError):
            raise DataError(f"{question_file} record {i + 1}: question_id {qid!r} is not an integer") from None
        if (rec_split, qid) in seen:
            raise DataError(f"{question_file}: question_id {qid} appears twice in split {rec_split}")
        seen.add((rec_split, qid))
        image_path = image_dir / str(image)
        if check_images:
            check_image(image_path, question_file)
        samples.append(PopeSample(qid, image_path, str(text), label, rec_split))
    return samples


def read_pope_splits(
    question_dir: str | Path,
    image_dir: str | Path,
    dataset: str = "coco",
    splits: Sequence[str] = POPE_SPLITS,
    check_images: bool = True,
) -> dict[str, list[PopeSample]]:
    """``{split: samples}`` from ``{question_dir}/{dataset}_pope_{split}.json`` for each split."""
    question_dir = require_dir(question_dir, "POPE question folder")
    out = {}
    for split in splits:
        if split not in POPE_SPLITS:
            raise ValueError(f"unknown POPE split {split!r}; choose from {POPE_SPLITS}")
        out[split] = read_pope(question_dir / f"{dataset}_pope_{split}.json", image_dir, split, check_images)
    return out


def _sample_keys(samples: Sequence[PopeSample]) -> list[tuple]:
    return [((s.split, s.question_id), s.question_id) for s in samples]


@dataclass(frozen=True)
class PopeReport:
    """POPE scores: ``overall`` over all given samples and one entry per split present.

    ``predictions`` holds the parsed answer per sample, in sample order; ``rule`` the parser used.
    HR is ``metrics.false_positive_rate``; ``to_dict`` names it ``hr``.
    """

    overall: BinaryMetrics
    by_split: dict[str, BinaryMetrics]
    predictions: list[str]
    rule: str

    def to_dict(self, percent: bool = True) -> dict[str, dict[str, float | None | str]]:
        """``{"overall"|split: {accuracy, precision, recall, f1, yes_ratio, hr, ...}}``."""
        def one(m: BinaryMetrics) -> dict[str, float | None | str]:
            d = m.to_dict(percent)
            d["hr"] = d.pop("fpr")
            return d

        out = {"overall": one(self.overall)}
        out.update({k: one(v) for k, v in self.by_split.items()})
        return out


def pope_metrics(labels: Sequence[str], predictions: Sequence[str]) -> BinaryMetrics:
    """POPE's metrics (positive class "yes") for parsed predictions."""
    return binary_metrics(labels, predictions, positive=YES)


def score_pope(samples: Sequence[PopeSample], answers, rule: str = "pope") -> PopeReport:
    """Score raw model answers.

    ``answers``: a list in sample order, or a dict keyed by ``(split, question_id)`` or, when the
    samples come from one split, by ``question_id``. ``rule`` is a ``parsing`` rule name; the
    default is POPE's official parser.
    """
    if not samples:
        raise ValueError("no POPE samples to score")
    raw = align_answers(_sample_keys(samples), answers, "POPE answers")
    preds = parse_many(raw, rule)
    labels = [s.label for s in samples]
    by_split = {}
    for split in POPE_SPLITS:
        idx = [i for i, s in enumerate(samples) if s.split == split]
        if idx:
            by_split[split] = pope_metrics([labels[i] for i in idx], [preds[i] for i in idx])
    return PopeReport(pope_metrics(labels, preds), by_split, preds, rule)


@dataclass(frozen=True)
class PairedComparison:
    """Two methods' parsed answers on the same questions (A = baseline, B = new method).

    ``a_only_correct``/``b_only_correct`` are McNemar's discordant cells; ``p_value`` is the exact
    two-sided binomial test on them (1.0 when there are none). ``flips`` counts how answers
    changed from A to B, e.g. ``flips["yes->no"]``.
    """

    n: int
    both_correct: int
    a_only_correct: int
    b_only_correct: int
    both_wrong: int
    p_value: float
    flips: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        """Questions whose parsed answer differs between A and B."""
        return sum(self.flips.values())

    @property
    def corrections(self) -> int:
        """Wrong under A, right under B."""
        return self.b_only_correct

    @property
    def new_errors(self) -> int:
        """Right under A, wrong under B."""
        return self.a_only_correct


def mcnemar_exact(labels: Sequence[str], preds_a: Sequence[str], preds_b: Sequence[str]) -> PairedComparison:
    """Exact McNemar test and flip counts for two methods' parsed answers to the same questions."""
    if not (len(labels) == len(preds_a) == len(preds_b)):
        raise ValueError(f"lengths differ: {len(labels)} labels, {len(preds_a)} and {len(preds_b)} predictions")
    both = a_only = b_only = neither = 0
    flips: dict[str, int] = {}
    for gt, a, b in zip(labels, preds_a, preds_b):
        for pred in (a, b):
            if pred not in (YES, NO, UNKNOWN):
                raise ValueError(f"prediction {pred!r} is not yes/no/unknown (parse answers first)")
        ca, cb = a == gt, b == gt
        both += ca and cb
        a_only += ca and not cb
        b_only += cb and not ca
        neither += not ca and not cb
        if a != b:
            key = f"{a}->{b}"
            flips[key] = flips.get(key, 0) + 1
    discordant = a_only + b_only
    from scipy.stats import binomtest  # the eval extra

    p = binomtest(a_only, discordant, 0.5, alternative="two-sided").pvalue if discordant else 1.0
    return PairedComparison(len(labels), both, a_only, b_only, neither, float(p), flips)


def compare_pope(
    samples: Sequence[PopeSample],
    answers_a,
    answers_b,
    rule: str = "pope",
) -> PairedComparison:
    """``mcnemar_exact`` on raw answers of two methods (parsed with ``rule``)."""
    keys = _sample_keys(samples)
    a = parse_many(align_answers(keys, answers_a, "answers of method A"), rule)
    b = parse_many(align_answers(keys, answers_b, "answers of method B"), rule)
    return mcnemar_exact([s.label for s in samples], a, b)


def split_counts(samples: Sequence[PopeSample]) -> Mapping[str, int]:
    """Questions per split, a quick check that a file was read whole (3,000 per COCO split)."""
    out: dict[str, int] = {}
    for s in samples:
        out[s.split] = out.get(s.split, 0) + 1
    return out
