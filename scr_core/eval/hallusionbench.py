"""HallusionBench (Guan et al., CVPR'24): aAcc, fAcc and qAcc with rule-based yes/no parsing.

Why: SCR v2 reports HallusionBench. **The official GPT-4 judge is not used**: it needs an
OpenAI key and a network, which an offline project has neither of. Answers are parsed by rule
(``vlmevalkit`` by default, VLMEvalKit's ``YOrN_Extraction``), as docs/benchmarks.md describes; say
so next to any number produced here, since judge-based and rule-based scores differ.

Metrics (grouping keys as in the official ``utils.py``):

* aAcc - share of questions answered correctly;
* fAcc - share of figures (``category_subcategory_set_id_figure_id``) with all questions right;
  as in the official ``get_eval_fig``, visual-supplement questions without a figure
  (``category == "VS"`` and ``figure_id == "0"``) are left out of fAcc;
* qAcc - share of question groups (``category_subcategory_set_id_question_id``: the same
  question across figure variants, or with and without a figure) with all answers right.

Correctness follows the official ``assign_correctness``: for the text-only VS questions
(``figure_id == "0"``) an answer the parser cannot read counts as right (the official judge's
"uncertain", a fair answer without the figure); everywhere else it is wrong. Turn this off with
``unknown_correct_without_figure=False``.

On disk (tianyi-lab/HallusionBench plus ``hallusion_bench.zip``)::

    HallusionBench.json       [{"category": "VD", "subcategory": "illusion", "visual_input": "1",
                                "set_id": "0", "figure_id": "0", "question_id": "0", "question": "...",
                                "gt_answer": "1", "filename": "./VD/illusion/0_0.png", ...}, ...]
    hallusion_bench/VD/illusion/0_0.png ...

``filename`` is resolved against the image folder; a leading ``./`` and a leading
``hallusion_bench/`` are tolerated (HallusionBench's README and its JSON disagree on it). ``visual_input ==
"0"`` questions have no image (``image_path`` is ``None``); the suite asks them as text only
(``textonly.py``), so aAcc/qAcc cover the official set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from scr_core.errors import DataError

from .answers import align_answers
from .files import field as get_field, load_json, require_dir
from .parsing import UNKNOWN, normalize_label, parse_many

_FIELDS = ("category", "subcategory", "visual_input", "set_id", "figure_id", "question_id", "question", "gt_answer")


@dataclass(frozen=True)
class HallusionSample:
    """One HallusionBench question; ``question_id`` is the unique key
    ``category_subcategory_set_id_figure_id_question_id``; ``label`` is yes/no."""

    question_id: str
    category: str
    subcategory: str
    visual_input: str
    set_id: str
    figure_id: str
    question_index: str
    question: str
    label: str
    image_path: Path | None

    @property
    def figure_key(self) -> str:
        return "_".join((self.category, self.subcategory, self.set_id, self.figure_id))

    @property
    def question_key(self) -> str:
        return "_".join((self.category, self.subcategory, self.set_id, self.question_index))

    @property
    def has_figure(self) -> bool:
        """False for the VS questions asked without their figure."""
        return not (self.category == "VS" and self.figure_id == "0")


def _resolve(image_root: Path, filename: str) -> list[Path]:
    parts = [p for p in PurePosixPath(filename.replace("\\", "/")).parts if p not in (".", "")]
    candidates = [image_root.joinpath(*parts)]
    if parts and parts[0] == "hallusion_bench":
        candidates.append(image_root.joinpath(*parts[1:]))
    else:
        candidates.append(image_root.joinpath("hallusion_bench", *parts))
    return candidates


def read_hallusionbench(
    json_file: str | Path,
    image_root: str | Path,
    check_images: bool = True,
    include_text_only: bool = True,
) -> list[HallusionSample]:
    """Questions of ``HallusionBench.json`` in file order; ``include_text_only=False`` drops the
    ``visual_input == "0"`` questions (they also have no image)."""
    data = load_json(json_file, "HallusionBench file")
    if not isinstance(data, list):
        raise DataError(f"HallusionBench file {json_file} must hold a JSON array, found {type(data).__name__}")
    image_root = require_dir(image_root, "HallusionBench image folder") if check_images else Path(image_root)
    out = []
    seen = set()
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise DataError(f"HallusionBench file {json_file} record {i + 1} is not an object")
        vals = {k: str(get_field(rec, k, json_file, i)) for k in _FIELDS}
        if vals["visual_input"] == "0" and not include_text_only:
            continue
        try:
            label = normalize_label(vals["gt_answer"], str(json_file))
        except ValueError as err:
            raise DataError(f"HallusionBench file {json_file} record {i + 1}: {err}") from None
        filename = rec.get("filename")
        image_path = None
        if vals["visual_input"] != "0":
            if not filename:
                raise DataError(f"HallusionBench file {json_file} record {i + 1} needs an image but has no filename")
            candidates = _resolve(image_root, str(filename))
            image_path = next((c for c in candidates if c.is_file()), candidates[0])
            if check_images and not image_path.is_file():
                raise DataError(f"image {candidates[0]} (listed in {json_file}) not found")
        key = "_".join((vals["category"], vals["subcategory"], vals["set_id"], vals["figure_id"], vals["question_id"]))
        if key in seen:
            raise DataError(f"HallusionBench file {json_file}: question {key} appears twice")
        seen.add(key)
        out.append(HallusionSample(key, vals["category"], vals["subcategory"], vals["visual_input"], vals["set_id"],
                                   vals["figure_id"], vals["question_id"], vals["question"], label, image_path))
    return out


@dataclass(frozen=True)
class HallusionScores:
    """aAcc, fAcc, qAcc as fractions plus the group counts they were computed over."""

    aacc: float
    facc: float
    qacc: float
    n_questions: int
    n_figures: int
    n_question_groups: int

    def to_dict(self, percent: bool = True) -> dict[str, float]:
        s = 100.0 if percent else 1.0
        return {"aAcc": self.aacc * s, "fAcc": self.facc * s, "qAcc": self.qacc * s,
                "n_questions": self.n_questions, "n_figures": self.n_figures,
                "n_question_groups": self.n_question_groups}


@dataclass(frozen=True)
class HallusionResult:
    """Overall scores, scores per category (VD/VS), the parsed answers and the rule used."""

    overall: HallusionScores
    by_category: dict[str, HallusionScores]
    predictions: list[str]
    correct: list[bool]
    rule: str

    def to_dict(self, percent: bool = True) -> dict[str, dict[str, float]]:
        out = {"overall": self.overall.to_dict(percent)}
        out.update({k: v.to_dict(percent) for k, v in self.by_category.items()})
        return out


def _scores(samples: Sequence[HallusionSample], correct: Sequence[bool]) -> HallusionScores:
    figures: dict[str, bool] = {}
    groups: dict[str, bool] = {}
    for s, c in zip(samples, correct):
        if s.has_figure:
            figures[s.figure_key] = figures.get(s.figure_key, True) and c
        groups[s.question_key] = groups.get(s.question_key, True) and c
    n = len(samples)
    return HallusionScores(
        aacc=sum(correct) / n if n else 0.0,
        facc=sum(figures.values()) / len(figures) if figures else 0.0,
        qacc=sum(groups.values()) / len(groups) if groups else 0.0,
        n_questions=n,
        n_figures=len(figures),
        n_question_groups=len(groups),
    )


def score_hallusionbench(
    samples: Sequence[HallusionSample],
    answers,
    rule: str = "vlmevalkit",
    unknown_correct_without_figure: bool = True,
) -> HallusionResult:
    """Score raw answers (a list in sample order or a dict keyed by ``question_id``)."""
    if not samples:
        raise ValueError("no HallusionBench samples to score")
    preds = parse_many(align_answers([(s.question_id,) for s in samples], answers, "HallusionBench answers"), rule)
    correct = []
    for s, p in zip(samples, preds):
        if p == UNKNOWN and unknown_correct_without_figure and not s.has_figure:
            correct.append(True)
        else:
            correct.append(p == s.label)
    by_cat = {}
    for cat in sorted({s.category for s in samples}):
        idx = [i for i, s in enumerate(samples) if s.category == cat]
        by_cat[cat] = _scores([samples[i] for i in idx], [correct[i] for i in idx])
    return HallusionResult(_scores(samples, correct), by_cat, preds, correct, rule)
