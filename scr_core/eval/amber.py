"""AMBER (Wang et al., 2023): generative CHAIR/Cover/Hal/Cog and discriminative yes/no scores.

Why: SCR v2 reports AMBER; this reimplements junyangwang0410/AMBER ``inference.py`` offline
(docs/benchmarks.md, the AMBER row).

On disk (the AMBER repository plus its image zip)::

    AMBER/data/annotations.json            [{"id": 1, "type": "generative", "truth": [...], "hallu": [...]},
                                            {"id": 1005, "type": "discriminative-attribute-state", "truth": "yes"}, ...]
    AMBER/data/relation.json               {"grass": ["ground"], "person": ["people", "man", ...], ...}
    AMBER/data/safe_words.txt              one word per line
    AMBER/data/query/query_all.json        [{"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."}, ...]
                                           (also query_generative.json, query_discriminative*.json)
    AMBER/image/AMBER_1.jpg ...

Generative scoring, as in ``inference.py``: the response's nouns that are in AMBER's vocabulary
(every key and value of ``relation.json``) are checked in order. A safe word (``safe_words.txt``)
is skipped but still counted; a noun equal to a ground-truth object or to an object associated
with one (``relation.json``) covers that object; a noun equal to a listed commonly-hallucinated
object (``hallu``) or to one of its associations covers that entry (Cog); any noun that did not
cover a ground-truth object is a hallucination.
CHAIR = hallucinated nouns / vocabulary nouns; Cover = covered ``truth`` entries / ``truth``
entries; Hal = share of responses with >= 1 hallucinated noun; Cog = covered ``hallu`` entries /
``hallu`` entries. The reference's first-match bookkeeping is kept: a noun marks the *first*
list entry it matches, so a repeated ground-truth object (``"ship", "ship"``) is covered once,
and a ground-truth noun that is also an association of an earlier ground-truth object marks that
earlier object.

Differences from ``inference.py`` (commit 534babf; docs/benchmarks.md lists them all under "Remaining
differences from the official scripts"):

* without NLTK's punkt and perceptron-tagger data (no package registry ships them), tokens are
  runs of letters/digits and every token is lemmatised as a noun and counted when it is an AMBER
  word (the reference keeps only tokens tagged NN*, so e.g. "orange" as a colour or "watch" as a
  verb counts here but not there); with that data installed, NLTK tokens and NN* tags are used as
  in the reference (the lemmatiser is then named ``wordnet-3.0+nltk-pos``);
* lemmatising is NLTK's ``WordNetLemmatizer`` on WordNet 3.0 as in the reference (``text.py``;
  lemminflect only when the WordNet data is missing, named in the result); matching is
  case-sensitive as in the reference, so "TV" is found and a capitalised "Cars" is not;
* the spaCy similarity step (a noun "near" an object with similarity > 0.8 counts as that object)
  is skipped unless a ``similarity(word_a, word_b) -> float`` function is passed (e.g. built from
  ``en_core_web_lg`` when you have it); identical words always match, so without it only exact
  synonyms from ``relation.json`` count.

Discriminative scoring: accuracy, and precision/recall/F1 with **"no" as the positive class**,
overall and per dimension (existence = ``discriminative-hallucination``; attribute = state +
number + action; relation = ``discriminative-relation`` and ``relation``). By default a response
counts only if it is exactly "Yes" or "No", the reference's string comparison (rule
``amber_exact``); ``rule="first_word"`` is the lenient option and the result names its rule.

Reported numbers (``to_dict``) use the reference's arithmetic, so they equal its printout: every
denominator starts at 0.001 (``data/metrics.txt``; an empty one gives 0, never an error), rates
are rounded to 0.1 point, and F1 comes from the rounded precision and recall with 1e-4 (1e-3 for
existence) added to its denominator. The exact fractions stay on the result objects (``chair``,
``cover``, ...; ``BinaryMetrics`` for the yes/no questions, with ``None`` for an undefined rate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scr_core.errors import DataError

from .answers import align_answers
from .binary import BinaryMetrics, binary_metrics
from .files import check_image, field as get_field, load_json, load_json_records, read_text, require_dir
from .parsing import NO, normalize_label, parse_many
from .text import Lemmatizer, get_lemmatizer, nltk_tokens, tokenize

GENERATIVE = "generative"
EXISTENCE_TYPES = ("discriminative-hallucination",)
ATTRIBUTE_TYPES = (
    "discriminative-attribute-state",
    "discriminative-attribute-number",
    "discriminative-attribute-action",
)
RELATION_TYPES = ("discriminative-relation", "relation")
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "existence": EXISTENCE_TYPES,
    "attribute": ATTRIBUTE_TYPES,
    "state": ("discriminative-attribute-state",),
    "number": ("discriminative-attribute-number",),
    "action": ("discriminative-attribute-action",),
    "relation": RELATION_TYPES,
}


@dataclass(frozen=True)
class AmberAnnotation:
    """One entry of ``annotations.json``: generative (``truth``/``hallu`` object lists) or yes/no."""

    id: int
    type: str
    truth: tuple[str, ...] = ()
    hallu: tuple[str, ...] = ()
    label: str | None = None

    @property
    def is_generative(self) -> bool:
        return self.type == GENERATIVE


@dataclass(frozen=True)
class AmberSample:
    """One AMBER query: ``task`` is "generative" or "discriminative", ``label`` yes/no or None."""

    id: int
    image_path: Path
    query: str
    task: str
    type: str
    label: str | None


@dataclass(frozen=True)
class AmberResources:
    """Everything the scorers need from ``AMBER/data``."""

    annotations: dict[int, AmberAnnotation]
    relation: dict[str, tuple[str, ...]]
    safe_words: frozenset[str]

    @classmethod
    def from_dir(cls, data_dir: str | Path) -> AmberResources:
        """Load ``annotations.json``, ``relation.json`` and ``safe_words.txt`` from ``AMBER/data``."""
        data_dir = require_dir(data_dir, "AMBER data folder")
        return cls(
            read_amber_annotations(data_dir / "annotations.json"),
            read_amber_relation(data_dir / "relation.json"),
            read_amber_safe_words(data_dir / "safe_words.txt"),
        )

    @property
    def vocabulary(self) -> frozenset[str]:
        """AMBER's object words: every key and every associated word of ``relation.json``."""
        words = set(self.relation)
        for assoc in self.relation.values():
            words.update(assoc)
        return frozenset(words)


def reference_rate(score: float, num: float) -> float:
    """A rate in percent as AMBER's ``inference.py`` prints it: denominators start at 0.001."""
    return round(score / (num + 0.001) * 100, 1)


def reference_f1(precision: float, recall: float, eps: float = 0.0001) -> float:
    """F1 as ``inference.py`` prints it, from the printed precision/recall (percent)."""
    return round(2 * (precision / 100) * (recall / 100) / ((precision / 100) + (recall / 100) + eps) * 100, 1)


def reference_binary(m: BinaryMetrics, f1_eps: float = 0.0001) -> dict[str, float]:
    """Accuracy, precision, recall and F1 ("no" positive) exactly as ``inference.py`` prints them."""
    precision = reference_rate(m.tp, m.tp + m.fp)
    recall = reference_rate(m.tp, m.n_pos)
    return {"accuracy": reference_rate(m.tp + m.tn, m.n), "precision": precision, "recall": recall,
            "f1": reference_f1(precision, recall, f1_eps)}


def _int_id(value, path, index: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{path} record {index + 1}: id {value!r} is not an integer") from None


def read_amber_annotations(path: str | Path) -> dict[int, AmberAnnotation]:
    """``{id: AmberAnnotation}`` from ``annotations.json``."""
    data = load_json(path, "AMBER annotation file")
    if not isinstance(data, list):
        raise DataError(f"AMBER annotation file {path} must hold a JSON array, found {type(data).__name__}")
    out: dict[int, AmberAnnotation] = {}
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise DataError(f"AMBER annotation file {path} record {i + 1} is not an object")
        ann_id = _int_id(get_field(rec, "id", path, i), path, i)
        kind = str(get_field(rec, "type", path, i))
        truth = get_field(rec, "truth", path, i)
        if ann_id in out:
            raise DataError(f"AMBER annotation file {path}: id {ann_id} appears twice")
        if kind == GENERATIVE:
            hallu = get_field(rec, "hallu", path, i)
            if not isinstance(truth, list) or not isinstance(hallu, list):
                raise DataError(f"AMBER annotation file {path} id {ann_id}: generative truth/hallu must be lists")
            out[ann_id] = AmberAnnotation(ann_id, kind, tuple(map(str, truth)), tuple(map(str, hallu)))
        else:
            try:
                label = normalize_label(truth, str(path))
            except ValueError as err:
                raise DataError(f"AMBER annotation file {path} id {ann_id}: {err}") from None
            out[ann_id] = AmberAnnotation(ann_id, kind, label=label)
    return out


def read_amber_relation(path: str | Path) -> dict[str, tuple[str, ...]]:
    """``{object: (associated words, ...)}`` from ``relation.json``."""
    data = load_json(path, "AMBER relation file")
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DataError(f"AMBER relation file {path} must map each object to a list of words")
    return {str(k): tuple(map(str, v)) for k, v in data.items()}


def read_amber_safe_words(path: str | Path) -> frozenset[str]:
    """The words of ``safe_words.txt`` (one per line)."""
    return frozenset(line.strip() for line in read_text(path, "AMBER safe-words file").splitlines() if line.strip())


def read_amber(
    query_file: str | Path,
    annotations: Mapping[int, AmberAnnotation] | str | Path,
    image_dir: str | Path,
    check_images: bool = True,
) -> list[AmberSample]:
    """The queries of one ``query_*.json`` file joined with their annotations, in file order."""
    if not isinstance(annotations, Mapping):
        annotations = read_amber_annotations(annotations)
    records = load_json_records(query_file, "AMBER query file")
    image_dir = require_dir(image_dir, "AMBER image folder") if check_images else Path(image_dir)
    out = []
    for i, rec in enumerate(records):
        qid = _int_id(get_field(rec, "id", query_file, i), query_file, i)
        ann = annotations.get(qid)
        if ann is None:
            raise DataError(f"AMBER query file {query_file}: id {qid} has no entry in the annotation file")
        image_path = image_dir / str(get_field(rec, "image", query_file, i))
        if check_images:
            check_image(image_path, query_file)
        task = GENERATIVE if ann.is_generative else "discriminative"
        out.append(AmberSample(qid, image_path, str(get_field(rec, "query", query_file, i)), task, ann.type, ann.label))
    return out


def read_amber_responses(path: str | Path) -> dict[int, str]:
    """``{id: response}`` from a response file in AMBER's format (``[{"id": 1, "response": "..."}]``)."""
    records = load_json_records(path, "AMBER response file")
    return {_int_id(get_field(r, "id", path, i), path, i): str(get_field(r, "response", path, i))
            for i, r in enumerate(records)}


@dataclass(frozen=True)
class AmberResponseDetail:
    """How one generative response was scored."""

    id: int
    nouns: tuple[str, ...]
    hallucinated: tuple[str, ...]
    covered_truth: int
    n_truth: int
    covered_hallu: int
    n_hallu: int


@dataclass(frozen=True)
class AmberGenerativeResult:
    """AMBER generative metrics as fractions in [0, 1] (lower is better except Cover)."""

    chair: float
    cover: float
    hal: float
    cog: float
    n_responses: int
    n_nouns: int
    n_hallucinated_nouns: int
    details: tuple[AmberResponseDetail, ...] = field(repr=False, default=())
    lemmatizer: str = ""
    similarity: str = "exact words only"

    def to_dict(self) -> dict[str, float | str]:
        """The four metrics in percent as ``inference.py`` prints them (``reference_rate``), the
        counts, and the lemmatiser that found the nouns."""
        d = self.details
        n_hal_resp = sum(bool(x.hallucinated) for x in d)
        return {
            "lemmatizer": self.lemmatizer,
            "similarity": self.similarity,
            "chair": reference_rate(self.n_hallucinated_nouns, self.n_nouns),
            "cover": reference_rate(sum(x.covered_truth for x in d), sum(x.n_truth for x in d)),
            "hal": round(100 - (self.n_responses - n_hal_resp) / (self.n_responses + 0.001) * 100, 1),
            "cog": reference_rate(sum(x.covered_hallu for x in d), sum(x.n_hallu for x in d)),
            "n_responses": self.n_responses,
            "n_nouns": self.n_nouns,
            "n_hallucinated_nouns": self.n_hallucinated_nouns,
        }


def _mark(words: list[str], owners: list[int], flags: list[int], n_direct: int, noun: str) -> None:
    # AMBER's bookkeeping: ``words`` = associations of each object (owners[j] = object index)
    # followed by the objects themselves; the first match marks its object.
    j = words.index(noun)
    n_assoc = len(words) - n_direct
    flags[owners[j] if j < n_assoc else j - n_assoc] = 1


def spacy_similarity(model: str | Path) -> Callable[[str, str], float]:
    """``inference.py``'s near-synonym check: ``nlp(a).similarity(nlp(b))`` with a spaCy model given
    by name or folder (the reference uses ``en_core_web_lg``, which no package registry here ships)."""
    try:
        import spacy
    except ImportError:
        raise DataError("the AMBER similarity check needs spaCy (pip install spacy) and a model such as "
                        "en_core_web_lg, given by name or folder") from None
    try:
        nlp = spacy.load(str(model))
    except (OSError, ValueError) as err:
        raise DataError(f"cannot load the spaCy model {model}: {err}") from None
    docs: dict[str, Any] = {}  # spaCy documents

    def similarity(a: str, b: str) -> float:
        for w in (a, b):
            if w not in docs:
                docs[w] = nlp(w)
        return float(docs[a].similarity(docs[b]))

    return similarity


def score_amber_generative(
    responses: Mapping[int, str],
    resources: AmberResources,
    similarity: Callable[[str, str], float] | None = None,
    threshold: float = 0.8,
    lemmatizer: str | Lemmatizer = "auto",
    similarity_name: str = "",
) -> AmberGenerativeResult:
    """AMBER's generative metrics for ``{id: response}`` of generative queries (ids 1-1004).

    ``similarity`` optionally restores the reference's spaCy near-synonym step (``spacy_similarity``;
    ``similarity_name`` is recorded); ``lemmatizer`` is a ``text.get_lemmatizer`` name or a ``Lemmatizer``.
    """
    if not responses:
        raise ValueError("no AMBER responses to score")
    lem = get_lemmatizer(lemmatizer) if isinstance(lemmatizer, str) else lemmatizer
    vocab = resources.vocabulary
    n_nouns = n_hal = covered_truth = n_truth = covered_hallu = n_hallu = n_hal_resp = 0
    details = []
    for rid, response in responses.items():
        ann = resources.annotations.get(rid)
        if ann is None:
            raise DataError(f"AMBER response id {rid} has no annotation")
        if not ann.is_generative:
            raise ValueError(f"AMBER id {rid} is a {ann.type} question, not a generative one")
        if lem.tagger is not None:  # as inference.py: NLTK tokens, keep NN* tags, lemmatise as nouns
            assert lem.pos_lemma is not None  # a tagger comes with it (Lemmatizer.with_tagger)
            tokens = nltk_tokens(response)
            found = [lem.pos_lemma(t, "n") for t, tag in zip(tokens, lem.tagger(tokens)) if tag.startswith("NN")]
        else:
            found = [lem.normalize(t, vocab) for t in tokenize(response, lower=False)]
        nouns = [w for w in found if w in vocab]
        safe_words: list[str] = []
        safe_owner: list[int] = []
        for idx, obj in enumerate(ann.truth):
            assoc = resources.relation.get(obj, ())
            safe_words += assoc
            safe_owner += [idx] * len(assoc)
        safe_words += ann.truth
        ha_words: list[str] = []
        ha_owner: list[int] = []
        for idx, obj in enumerate(ann.hallu):
            assoc = resources.relation.get(obj, ())
            ha_words += assoc
            ha_owner += [idx] * len(assoc)
        ha_words += ann.hallu
        truth_flags = [0] * len(ann.truth)
        hallu_flags = [0] * len(ann.hallu)
        hallucinated = []
        for noun in nouns:
            if noun in resources.safe_words:
                continue
            if noun in safe_words:
                _mark(safe_words, safe_owner, truth_flags, len(ann.truth), noun)
                continue
            if noun in ha_words:
                _mark(ha_words, ha_owner, hallu_flags, len(ann.hallu), noun)
            if similarity is not None:
                near_h = next((w for w in ha_words if similarity(noun, w) > threshold), None)
                if near_h is not None:
                    _mark(ha_words, ha_owner, hallu_flags, len(ann.hallu), near_h)
                near_s = next((w for w in safe_words if similarity(noun, w) > threshold), None)
                if near_s is not None:
                    _mark(safe_words, safe_owner, truth_flags, len(ann.truth), near_s)
                    continue
            hallucinated.append(noun)
        n_nouns += len(nouns)
        n_hal += len(hallucinated)
        n_hal_resp += bool(hallucinated)
        covered_truth += sum(truth_flags)
        n_truth += len(truth_flags)
        covered_hallu += sum(hallu_flags)
        n_hallu += len(hallu_flags)
        details.append(
            AmberResponseDetail(rid, tuple(nouns), tuple(hallucinated), sum(truth_flags), len(truth_flags),
                                sum(hallu_flags), len(hallu_flags))
        )
    n = len(responses)
    return AmberGenerativeResult(
        chair=n_hal / n_nouns if n_nouns else 0.0,
        cover=covered_truth / n_truth if n_truth else 0.0,
        hal=n_hal_resp / n,
        cog=covered_hallu / n_hallu if n_hallu else 0.0,
        n_responses=n,
        n_nouns=n_nouns,
        n_hallucinated_nouns=n_hal,
        details=tuple(details),
        lemmatizer=lem.name,
        similarity="exact words only" if similarity is None else f"> {threshold} ({similarity_name or 'custom'})",
    )


@dataclass(frozen=True)
class AmberDiscriminativeResult:
    """Overall and per-dimension metrics (positive class "no"); ``predictions`` in input order."""

    overall: BinaryMetrics
    by_dimension: dict[str, BinaryMetrics]
    predictions: dict[int, str]
    rule: str

    def to_dict(self) -> dict:
        """Per dimension: accuracy/precision/recall/F1 as ``inference.py`` prints them
        (``reference_binary``), then the counts; plus the parsing ``rule``."""
        def one(name: str, m: BinaryMetrics) -> dict:
            counts = {k: v for k, v in m.to_dict().items()
                      if k not in ("accuracy", "precision", "recall", "f1", "note")}
            return {**reference_binary(m, 0.001 if name == "existence" else 0.0001), **counts}

        out: dict = {"rule": self.rule, "overall": one("overall", self.overall)}
        out.update({k: one(k, v) for k, v in self.by_dimension.items()})
        return out


def score_amber_discriminative(
    responses: Mapping[int, str] | Sequence[str],
    resources: AmberResources | Mapping[int, AmberAnnotation],
    ids: Sequence[int] | None = None,
    rule: str = "amber_exact",
) -> AmberDiscriminativeResult:
    """AMBER's discriminative metrics with "no" as the positive class; the default ``rule`` is
    the reference's exact "Yes"/"No" comparison (``first_word`` is the lenient option).

    ``responses``: ``{id: response}``, or a list aligned with ``ids``. Every id must be a
    discriminative annotation.
    """
    annotations = resources.annotations if isinstance(resources, AmberResources) else resources
    if isinstance(responses, Mapping):
        ids = list(responses) if ids is None else list(ids)
    elif ids is None:
        raise ValueError("pass ids= when responses is a list")
    raw = align_answers([(i,) for i in ids], responses, "AMBER responses")
    if not ids:
        raise ValueError("no AMBER responses to score")
    preds = parse_many(raw, rule)
    labels: list[str] = []
    types = []
    for i in ids:
        ann = annotations.get(i)
        if ann is None:
            raise DataError(f"AMBER response id {i} has no annotation")
        if ann.is_generative:
            raise ValueError(f"AMBER id {i} is a generative query; score it with score_amber_generative")
        assert ann.label is not None  # a discriminative annotation has its yes/no label
        labels.append(ann.label)
        types.append(ann.type)
    overall = binary_metrics(labels, preds, positive=NO)
    by_dim = {}
    for dim, members in DIMENSIONS.items():
        idx = [k for k, t in enumerate(types) if t in members]
        if idx:
            by_dim[dim] = binary_metrics([labels[k] for k in idx], [preds[k] for k in idx], positive=NO)
    return AmberDiscriminativeResult(overall, by_dim, dict(zip(ids, preds)), rule)


def amber_score(chair: float, f1: float) -> float:
    """AMBER Score = (1 - CHAIR + F1) / 2, both as fractions (the AMBER paper's definition)."""
    return (1.0 - chair + f1) / 2.0
