"""Yes/no questions for ``calibrate`` and their deterministic tuning / held-out split.

Three inputs, each read by the same code as ``eval``: a POPE folder (``eval pope``'s layout), an
AMBER folder (its discriminative queries), or a JSON-lines file of one's own::

    {"image": "photos/0001.jpg", "question": "Is there a dog in the image?", "label": "no"}

(``image`` relative to the file's folder or absolute; an optional ``"id"``, else the line number).
Every question gets the short-answer instruction that ``eval`` sends and 10 new tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from ..errors import ConfigError, DataError
from ..eval.files import check_image, field, load_json_records
from ..eval.parsing import normalize_label
from ..eval.suites import SHORT_ANSWER, Amber, Pope, subset

FORMATS = ("auto", "pope", "amber", "jsonl")


@dataclass(frozen=True)
class Question:
    """One yes/no question: ``prompt`` is what the model is sent, ``label`` "yes" or "no"."""

    id: str
    image: Path
    prompt: str
    label: str


def detect_format(data: Path) -> str:
    """pope, amber or jsonl from what ``data`` holds (``DataError`` when it is none of them)."""
    data = Path(data)
    if data.is_file():
        return "jsonl"
    if not data.is_dir():
        raise DataError(f"question data {data} not found (a POPE or AMBER folder, or a .jsonl file)")
    if (data / "data" / "annotations.json").is_file() or (data / "annotations.json").is_file():
        return "amber"
    if (data / "questions").is_dir() or any(data.glob("*_pope_*.json")):
        return "pope"
    raise DataError(f"{data} is neither a POPE folder (questions/coco_pope_*.json), an AMBER folder "
                    "(data/annotations.json) nor a .jsonl question file")


def load_questions(data: str | Path, fmt: str = "auto", limit: int | None = None, seed: int = 0) -> list[Question]:
    """Every question of ``data`` (a seeded subset of ``limit``: per split for POPE, as ``eval``)."""
    data = Path(data)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown question format {fmt!r}; choose from {', '.join(FORMATS)}")
    fmt = detect_format(data) if fmt == "auto" else fmt
    if fmt == "pope":
        suite = Pope(data, limit, seed)
        labels = suite.labels()
        questions = [Question(t.id, cast(Path, t.image), t.prompt, labels[t.id])  # POPE: one image each
                     for t in suite.tasks()]
    elif fmt == "amber":
        samples = [s for s in Amber(data).samples if s.task != "generative"]
        questions = [Question(str(s.id), s.image_path, s.query.strip() + SHORT_ANSWER, s.label)
                     for s in subset(samples, limit, seed)]
    else:
        questions = subset(read_question_file(data), limit, seed)
    if not questions:
        raise DataError(f"{data} holds no yes/no questions")
    return questions


def read_question_file(path: Path) -> list[Question]:
    """Questions of a JSON-lines (or JSON array) file in the format of the module docstring."""
    records = load_json_records(path, "question file")
    out, seen = [], set()
    for i, record in enumerate(records):
        image = Path(str(field(record, "image", path, i))).expanduser()
        image = image if image.is_absolute() else path.parent / image
        check_image(image, path)
        try:
            label = normalize_label(field(record, "label", path, i), str(path))
        except ValueError as err:
            raise DataError(f"{path} record {i + 1}: {err}") from None
        qid = str(record.get("id", i + 1))
        if qid in seen:
            raise DataError(f"{path}: id {qid} appears twice")
        seen.add(qid)
        out.append(Question(qid, image, str(field(record, "question", path, i)).strip() + SHORT_ANSWER, label))
    return out


def split_holdout(questions: Sequence[Question], fraction: float = 0.5,
                  seed: int = 0) -> tuple[list[int], list[int]]:
    """(tuning, held-out) question indices, disjoint by *image* and fixed by ``seed``.

    Images (sorted by path, then shuffled by numpy's seeded generator) go to the held-out split
    until it holds ``fraction`` of the images: questions about one image never sit on both sides,
    so a setting is not judged on pictures it was picked on. Each side keeps the input order.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"the held-out fraction (--holdout) must be between 0 and 1 (got {fraction!r})")
    images = sorted({str(q.image) for q in questions})
    if len(images) < 2:
        raise DataError(f"calibration needs questions about at least 2 images to hold some out (got {len(images)})")
    order = np.random.default_rng(seed).permutation(len(images))
    n_held = min(len(images) - 1, max(1, round(fraction * len(images))))
    held_images = {images[i] for i in order[:n_held]}
    held = [i for i, q in enumerate(questions) if str(q.image) in held_images]
    tune = [i for i, q in enumerate(questions) if str(q.image) not in held_images]
    return tune, held
