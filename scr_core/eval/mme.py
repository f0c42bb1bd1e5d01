"""MME (Fu et al.): per-subtask acc and acc+, perception and cognition totals.

Why: SCR v2 reports MME; this follows MME's ``eval_tool/calculation.py`` (docs/benchmarks.md): each
image has two yes/no questions (one "yes", one "no"); a subtask's score is
100 * acc + 100 * acc+ (acc over questions, acc+ over images with all their questions right;
at most 200); Perception sums the 10 perception subtasks (max 2000), Cognition the 4 cognition
subtasks (max 800). Answers are parsed with the ``mme`` rule by default (``calculation.py``'s
own; ``mme_lenient`` is lmms-eval's); an unreadable answer is
wrong. acc+ groups questions by image (as VLMEvalKit does) rather than by consecutive line pairs.

On disk, either the official release folder::

    MME_Benchmark_release_version/            (or its MME_Benchmark/ sub-folder)
        existence/000000006040.jpg            image and question file side by side
        existence/000000006040.txt            "question<TAB>Yes" and "question<TAB>No" lines
        ...                                   (count, position, color, OCR, the 4 cognition tasks)
        artwork/images/10002.jpg              or images/ + questions_answers_YN/ sub-folders
        artwork/questions_answers_YN/10002.txt   (artwork, celebrity, landmark, posters, scene)

or VLMEvalKit's ``MME.tsv`` (columns ``index, image, question, answer, category`` and usually
``image_path``; ``image`` is base64, or the index of an earlier row holding the same image);
``read_mme_tsv`` writes those images to a folder so every sample has a file.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scr_core.errors import DataError

from .answers import align_answers
from .files import read_text, require_dir, require_file
from .parsing import normalize_label, parse_many

MME_PERCEPTION = (
    "existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR",
)
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
MME_SUBTASKS = MME_PERCEPTION + MME_COGNITION
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".JPG", ".JPEG", ".PNG")


@dataclass(frozen=True)
class MmeSample:
    """One MME question; ``question_id`` is ``"{subtask}/{image_id}/{k}"``, ``label`` yes/no."""

    question_id: str
    subtask: str
    image_id: str
    image_path: Path
    question: str
    label: str


def _find_root(root: Path) -> Path:
    if any((root / t).is_dir() for t in MME_SUBTASKS):
        return root
    nested = root / "MME_Benchmark"
    if nested.is_dir() and any((nested / t).is_dir() for t in MME_SUBTASKS):
        return nested
    raise DataError(f"no MME subtask folders ({', '.join(MME_SUBTASKS[:3])}, ...) found in {root}")


def _image_for(txt: Path, image_dir: Path) -> Path:
    for suffix in _IMAGE_SUFFIXES:
        candidate = image_dir / f"{txt.stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise DataError(f"no image for MME question file {txt} (looked for {txt.stem}.jpg/.png in {image_dir})")


def _parse_qa_file(txt: Path) -> list[tuple[str, str]]:
    pairs = []
    for lineno, line in enumerate(read_text(txt, "MME question file").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) < 2:
            raise DataError(f"MME question file {txt} line {lineno} is not 'question<TAB>answer'")
        try:
            label = normalize_label(parts[-1], str(txt))
        except ValueError as err:
            raise DataError(f"MME question file {txt} line {lineno}: {err}") from None
        pairs.append(("\t".join(parts[:-1]).strip(), label))
    if not pairs:
        raise DataError(f"MME question file {txt} has no questions")
    return pairs


def read_mme(root: str | Path, subtasks: Sequence[str] | None = None, check_images: bool = True) -> list[MmeSample]:
    """All questions of the MME release folder, subtask by subtask, images in name order.

    ``subtasks=None`` reads every subtask folder present (at least one must be); naming a
    subtask whose folder is missing is an error. With ``check_images=False`` a missing image is
    tolerated (``image_path`` then points at ``<name>.jpg``).
    """
    root = _find_root(require_dir(root, "MME folder"))
    wanted = list(subtasks) if subtasks is not None else [t for t in MME_SUBTASKS if (root / t).is_dir()]
    samples: list[MmeSample] = []
    for task in wanted:
        if task not in MME_SUBTASKS:
            raise ValueError(f"unknown MME subtask {task!r}; choose from {MME_SUBTASKS}")
        task_dir = require_dir(root / task, f"MME subtask folder for {task}")
        if (task_dir / "questions_answers_YN").is_dir() and (task_dir / "images").is_dir():
            qa_dir, image_dir = task_dir / "questions_answers_YN", task_dir / "images"
        else:
            qa_dir = image_dir = task_dir
        txts = sorted(qa_dir.glob("*.txt"))
        if not txts:
            raise DataError(f"MME subtask folder {qa_dir} has no question .txt files")
        for txt in txts:
            if check_images:
                image_path = _image_for(txt, image_dir)
            else:
                image_path = next((image_dir / f"{txt.stem}{s}" for s in _IMAGE_SUFFIXES
                                   if (image_dir / f"{txt.stem}{s}").is_file()), image_dir / f"{txt.stem}.jpg")
            for k, (question, label) in enumerate(_parse_qa_file(txt)):
                samples.append(MmeSample(f"{task}/{txt.stem}/{k}", task, txt.stem, image_path, question, label))
    return samples


def _image_suffix(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data[:4] == b"GIF8":
        return ".gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data[:2] == b"BM":
        return ".bmp"
    return ".img"


def read_mme_tsv(tsv_file: str | Path, image_dir: str | Path) -> list[MmeSample]:
    """Questions of VLMEvalKit's ``MME.tsv``; images are decoded into ``image_dir`` (created).

    Rows sharing an image (same ``image_path``, or an ``image`` cell that is another row's index)
    form one group for acc+.
    """
    tsv_file = require_file(tsv_file, "MME tsv file")
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    text = read_text(tsv_file, "MME tsv file")
    rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter="\t"))
    if not rows:
        raise DataError(f"MME tsv file {tsv_file} has no rows")
    need = {"index", "image", "question", "answer", "category"}
    missing = need - set(rows[0])
    if missing:
        raise DataError(f"MME tsv file {tsv_file} lacks columns {sorted(missing)} (has {list(rows[0])})")
    by_index = {r["index"]: r for r in rows}
    written: dict[str, Path] = {}
    samples = []
    for i, row in enumerate(rows):
        src = row["index"]
        cell = row["image"] or ""
        if len(cell) <= 64:  # a reference to the row that holds the image
            if cell not in by_index or len(by_index[cell]["image"] or "") <= 64:
                raise DataError(
                    f"MME tsv file {tsv_file} row {i + 2}: image {cell!r} is neither base64 nor a row index"
                )
            src = cell
        if src not in written:
            try:
                data = base64.b64decode(by_index[src]["image"], validate=False)
            except (binascii.Error, ValueError) as err:
                raise DataError(f"MME tsv file {tsv_file} row index {src}: image is not base64 ({err})") from None
            path = image_dir / f"{src}{_image_suffix(data)}"
            path.write_bytes(data)
            written[src] = path
        task = row["category"]
        if task not in MME_SUBTASKS:
            raise DataError(f"MME tsv file {tsv_file} row {i + 2}: unknown category {task!r}")
        group = (row.get("image_path") or "").strip() or f"img{src}"
        group = Path(group).stem if row.get("image_path") else group
        try:
            label = normalize_label(row["answer"], str(tsv_file))
        except ValueError as err:
            raise DataError(f"MME tsv file {tsv_file} row {i + 2}: {err}") from None
        samples.append(MmeSample(f"{task}/{group}/{row['index']}", task, group, written[src], row["question"], label))
    return samples


@dataclass(frozen=True)
class MmeSubtaskScore:
    """acc and acc+ as fractions; ``score`` = 100 * (acc + acc+), MME's per-subtask number."""

    subtask: str
    acc: float
    acc_plus: float
    n_questions: int
    n_images: int

    @property
    def score(self) -> float:
        return 100.0 * (self.acc + self.acc_plus)


@dataclass(frozen=True)
class MmeResult:
    """Per-subtask scores and the two totals (sums over the subtasks present)."""

    by_subtask: dict[str, MmeSubtaskScore]
    predictions: list[str]
    rule: str

    @property
    def perception(self) -> float:
        return sum(s.score for t, s in self.by_subtask.items() if t in MME_PERCEPTION)

    @property
    def cognition(self) -> float:
        return sum(s.score for t, s in self.by_subtask.items() if t in MME_COGNITION)

    @property
    def missing_subtasks(self) -> tuple[str, ...]:
        """Subtasks absent from the scored samples (totals are then not comparable to papers)."""
        return tuple(t for t in MME_SUBTASKS if t not in self.by_subtask)

    def to_dict(self) -> dict[str, float]:
        """``perception``, ``cognition`` and one score per subtask (MME points, not percent)."""
        out = {"perception": self.perception, "cognition": self.cognition}
        out.update({t: s.score for t, s in self.by_subtask.items()})
        return out


def score_mme(samples: Sequence[MmeSample], answers, rule: str = "mme") -> MmeResult:
    """Score raw answers (a list in sample order or a dict keyed by ``question_id``)."""
    if not samples:
        raise ValueError("no MME samples to score")
    preds = parse_many(align_answers([(s.question_id,) for s in samples], answers, "MME answers"), rule)
    per_task: dict[str, dict[str, list[bool]]] = {}
    for s, p in zip(samples, preds):
        per_task.setdefault(s.subtask, {}).setdefault(s.image_id, []).append(p == s.label)
    by_subtask = {}
    for task in MME_SUBTASKS:
        if task not in per_task:
            continue
        images = per_task[task]
        flat = [c for cs in images.values() for c in cs]
        by_subtask[task] = MmeSubtaskScore(
            task,
            acc=sum(flat) / len(flat),
            acc_plus=sum(all(cs) for cs in images.values()) / len(images),
            n_questions=len(flat),
            n_images=len(images),
        )
    return MmeResult(by_subtask, preds, rule)
