"""The five benchmarks as runnable suites: which prompts to ask, and how to score the answers.

Each suite reads its data folder in the official layout, turns it into ``Task``s (one image,
one prompt, one answer style) and scores ``{task id: generated text}``. Protocol (docs/method.md §5,
docs/benchmarks.md): greedy decoding; yes/no questions get LLaVA's short-answer instruction and 10
new tokens; captions use the one-sentence caption prompt and 64 tokens; AMBER's generative
query ("Describe this image.") gets 128.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..prompts import CAPTION_PROMPT, SHORT_ANSWER_PROMPT
from .amber import AmberResources, read_amber, score_amber_discriminative, score_amber_generative, spacy_similarity
from .chair import ChairEvaluator, ChairVocabulary
from .coco import sample_coco_images
from .hallusionbench import read_hallusionbench, score_hallusionbench
from .mme import read_mme, score_mme
from .parsing import get_rule
from .pope import read_pope_splits, score_pope
from .text import get_lemmatizer

SHORT_ANSWER = " " + SHORT_ANSWER_PROMPT


@dataclass(frozen=True)
class Task:
    id: str
    image: Path | None  # None: asked without an image (HallusionBench), answered by greedy decoding
    prompt: str
    max_new_tokens: int
    free_form: bool = False  # captions and descriptions (DoLa's repetition penalty applies)


def _first_existing(root: Path, *names: str) -> Path:
    for name in names:
        if (root / name).exists():
            return root / name
    raise DataError(f"{root}: expected one of {', '.join(names)}")


def subset(items: list, limit: int | None, seed: int) -> list:
    """A seeded subset of ``limit`` items in their original order (the seed redraws the subset)."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


class Pope:
    """POPE: ``questions/coco_pope_{random,popular,adversarial}.json`` (or the files at the top) +
    ``val2014/`` (or ``images/``). ``limit`` draws that many questions per split (seeded)."""

    name = "pope"

    def __init__(self, data: Path, limit: int | None = None, seed: int = 0, rule: str = "pope") -> None:
        get_rule(rule)  # an unknown parser name fails before any answer is generated
        root = Path(data)
        questions = root / "questions" if (root / "questions").is_dir() else root
        images = _first_existing(root, "val2014", "images")
        splits = read_pope_splits(questions, images)
        self.samples = [s for split in splits.values() for s in subset(split, limit, seed)]
        self.rule = rule

    def tasks(self) -> list[Task]:
        return [Task(f"{s.split}/{s.question_id}", s.image_path, s.question.strip() + SHORT_ANSWER, 10)
                for s in self.samples]

    def labels(self) -> dict[str, str]:
        return {f"{s.split}/{s.question_id}": s.label for s in self.samples}

    def score(self, answers: Mapping[str, str]) -> dict:
        report = score_pope(self.samples, [answers[f"{s.split}/{s.question_id}"] for s in self.samples], self.rule)
        return {"rule": self.rule, **report.to_dict()}


class Chair:
    """CHAIR: ``annotations/instances_val2014.json`` + ``annotations/captions_val2014.json`` +
    ``val2014/`` (or ``images/``); a ``synonyms.txt`` beside them replaces COCO's vocabulary."""

    name = "chair"

    def __init__(self, data: Path, limit: int | None = None, seed: int = 0, lemmatizer: str = "auto") -> None:
        root = Path(data)
        annotations = root / "annotations"
        instances, captions = annotations / "instances_val2014.json", annotations / "captions_val2014.json"
        self.images = sample_coco_images(instances, _first_existing(root, "val2014", "images"), limit, seed)
        synonyms = root / "synonyms.txt"
        vocabulary = ChairVocabulary.from_synonyms_file(synonyms) if synonyms.is_file() else None
        self.evaluator = ChairEvaluator.from_coco(instances, captions, vocabulary,
                                                  [im.image_id for im in self.images], lemmatizer=lemmatizer)

    def tasks(self) -> list[Task]:
        return [Task(str(im.image_id), im.image_path, CAPTION_PROMPT, 64, free_form=True) for im in self.images]

    def score(self, answers: Mapping[str, str]) -> dict:
        result = self.evaluator.score({im.image_id: answers[str(im.image_id)] for im in self.images})
        return result.to_dict()


class Amber:
    """AMBER: ``data/{annotations.json, relation.json, safe_words.txt, query/query_*.json}`` + ``image/``.

    Reads ``query_generative.json`` and ``query_discriminative.json``, or ``query_all.json``."""

    name = "amber"

    def __init__(self, data: Path, limit: int | None = None, seed: int = 0, rule: str = "amber_exact",
                 lemmatizer: str = "auto", similarity_model: str | None = None) -> None:
        get_rule(rule)
        self.rule, self.lemmatizer = rule, get_lemmatizer(lemmatizer)
        self.similarity_model = similarity_model
        self.similarity = spacy_similarity(similarity_model) if similarity_model else None
        root = Path(data)
        data_dir = root / "data" if (root / "data").is_dir() else root
        self.resources = AmberResources.from_dir(data_dir)
        images = _first_existing(root, "image", "images")
        queries = [data_dir / "query" / f"query_{kind}.json" for kind in ("generative", "discriminative")]
        queries = [q for q in queries if q.is_file()] or [data_dir / "query" / "query_all.json"]
        self.samples = []
        for query in queries:  # query_all.json is read (and reported missing) when the others are absent
            self.samples += subset(read_amber(query, self.resources.annotations, images), limit, seed)

    def tasks(self) -> list[Task]:
        return [Task(str(s.id), s.image_path, s.query if s.task == "generative" else s.query.strip() + SHORT_ANSWER,
                     128 if s.task == "generative" else 10, free_form=s.task == "generative")
                for s in self.samples]

    def score(self, answers: Mapping[str, str]) -> dict:
        gen = {s.id: answers[str(s.id)] for s in self.samples if s.task == "generative"}
        dis = {s.id: answers[str(s.id)] for s in self.samples if s.task != "generative"}
        out = {}
        if gen:
            out["generative"] = score_amber_generative(gen, self.resources, self.similarity, lemmatizer=self.lemmatizer,
                                                       similarity_name=str(self.similarity_model)).to_dict()
        if dis:
            out["discriminative"] = score_amber_discriminative(dis, self.resources, ids=list(dis),
                                                               rule=self.rule).to_dict()
        return out


class Mme:
    """MME: the release folder (per-subtask folders with images and yes/no question files)."""

    name = "mme"

    def __init__(self, data: Path, limit: int | None = None, seed: int = 0, rule: str = "mme") -> None:
        get_rule(rule)
        self.rule = rule
        self.samples = subset(read_mme(data), limit, seed)

    def tasks(self) -> list[Task]:
        return [Task(s.question_id, s.image_path, s.question, 10) for s in self.samples]

    def score(self, answers: Mapping[str, str]) -> dict:
        result = score_mme(self.samples, {s.question_id: answers[s.question_id] for s in self.samples}, self.rule)
        return {"rule": self.rule, **result.to_dict()}


class HallusionBench:
    """HallusionBench: ``HallusionBench.json`` + its image folder. ``scope="all"`` (default, the
    official set) asks the 178 visual-supplement questions that have no figure without an image
    (``textonly.py``: every method answers them alike); ``scope="visual"`` keeps only the questions
    with an image, whose aAcc/qAcc are then not comparable with the leaderboard's."""

    name = "hallusionbench"

    def __init__(self, data: Path, limit: int | None = None, seed: int = 0, scope: str = "all") -> None:
        if scope not in ("all", "visual"):
            raise ValueError(f"unknown HallusionBench scope {scope!r}; choose all or visual")
        self.scope = scope
        root = Path(data)
        self.samples = subset(read_hallusionbench(root / "HallusionBench.json", root,
                                                   include_text_only=scope == "all"), limit, seed)

    def tasks(self) -> list[Task]:
        return [Task(s.question_id, s.image_path, s.question.strip() + " Please answer yes or no.", 10)
                for s in self.samples]

    def score(self, answers: Mapping[str, str]) -> dict:
        result = score_hallusionbench(self.samples, {s.question_id: answers[s.question_id] for s in self.samples})
        return {"rule": result.rule, "scope": self.scope, **result.to_dict()}


SUITES = {cls.name: cls for cls in (Pope, Chair, Amber, Mme, HallusionBench)}


# Scoring options each suite takes (``eval --parser/--lemmatizer/--scope``); the defaults reproduce
# the official scripts, and every score names the option it used.
OPTIONS = {"pope": ("rule",), "chair": ("lemmatizer",), "amber": ("rule", "lemmatizer", "similarity_model"),
           "mme": ("rule",), "hallusionbench": ("scope",)}


def load_suite(name: str, data: Path, limit: int | None = None, seed: int = 0, **options):
    """The suite ``name`` on ``data``; ``options`` left as ``None`` keep the suite's official default,
    and one the suite does not take is an error."""
    given = check_options(name, options)
    try:
        return SUITES[name](Path(data), limit=limit, seed=seed, **given)
    except ValueError as err:  # an unknown parser, lemmatizer or scope
        raise DataError(str(err)) from None


def check_options(name: str, options: Mapping) -> dict:
    """The options that are set (not ``None``), after checking that benchmark ``name`` takes them
    and that parser names are known: cheap, so ``eval`` runs it before loading a model."""
    if name not in SUITES:
        raise DataError(f"unknown benchmark {name!r}; choose from {', '.join(SUITES)}")
    given = {k: v for k, v in options.items() if v is not None}
    extra = sorted(set(given) - set(OPTIONS[name]))
    if extra:
        taken = ", ".join(OPTIONS[name]) or "none"
        raise DataError(f"{name} takes no {', '.join(extra)} option (it takes: {taken})")
    if "rule" in given:
        try:
            get_rule(given["rule"])
        except ValueError as err:
            raise DataError(str(err)) from None
    return given

