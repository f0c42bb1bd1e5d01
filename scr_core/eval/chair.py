"""CHAIR: object hallucination in captions (Rohrbach et al., EMNLP 2018).

Why: SCR's second headline result is CHAIR-s / CHAIR-i on COCO captions (docs/method.md §4.3).
This follows the reference ``chair.py`` (LisaAnne/Hallucination, and Maxlinn's standalone
version used by OPERA, PAI, SID, CRoPS and lmms-eval, which adds Recall and Len):

1. lower-case, tokenise, lemmatise every word (``text.py``: NLTK's WordNet lemmatiser by default);
2. merge two-word objects and apply the hard-coded COCO rules: "hot dog", "teddy bear",
   "motor bike", "traffic light", ... stay one object; "baby/adult <animal>" counts as the
   animal (not a person); "passenger jet/train" as jet/train; "bow tie" as tie; "toilet seat" as
   toilet; "seat" is dropped when "toilet" is mentioned; "home plate" and "train track" (Maxlinn)
   are consumed so "plate"/"train" do not fire;
3. keep the words in the synonym vocabulary and map each to its class ("node word");
4. ground truth per image = COCO instance classes + classes named in its reference captions;
5. CHAIR-s = captions with >= 1 hallucinated object / captions; CHAIR-i = hallucinated mentions /
   all mentions (repeats counted); Recall = distinct ground-truth classes mentioned / ground-truth
   classes, summed over captions; ``len`` = Maxlinn's "Len" (NLTK tokens per caption,
   punctuation included, after the two-word merge; his script prints it as 0.01 * that * 100);
   ``mean_words`` = words per caption (punctuation excluded).

Remaining differences from the reference (each small; docs/benchmarks.md lists them with reasons):

* every token is lemmatised as a noun (Maxlinn POS-tags first with NLTK's perceptron tagger,
  whose data no package registry ships; LisaAnne's original singularises with ``pattern`` 3.6,
  which no registry offers for current Python: on the fixtures it differs from the default only
  at "men" and "vases", see GOLDEN.md); with ``lemmatizer="lemminflect"`` see ``text.py``;
* ``len`` splits sentences at ". ", "! ", "? " before NLTK's Treebank tokeniser (NLTK's punkt
  model is not installable either);
* with the lemminflect fallback, phrases of any length and every multi-word synonym are merged,
  so "stove top oven" counts once (the reference, and the WordNet default here, only merge the
  listed pairs); ``ChairVocabulary.coco(reference=False)`` also matches " motor bike",
  " cheesecake" and "iPhone", which the reference's ", " split never matches;
* an image id without ground truth is an error (the reference treats it as having no objects).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from scr_core.errors import DataError

from .cider import cider_score
from .coco import coco_captions, coco_image_categories
from .files import field as get_field, load_json_records, read_text
from .text import Lemmatizer, get_lemmatizer, merge_phrases, nltk_tokens, tokenize, wordnet_pos

DATA_DIR = Path(__file__).parent / "data"
COCO_SYNONYMS_FILE = DATA_DIR / "coco_synonyms.txt"

# LisaAnne/Hallucination utils/chair.py, plus "train track" from Maxlinn's version.
COCO_DOUBLE_WORDS = (
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
    "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball",
    "baseball bat", "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone",
    "mobile phone", "teddy bear", "hair drier", "potted plant", "bow tie", "laptop computer",
    "stove top oven", "home plate", "train track",
)
COCO_ANIMAL_WORDS = (
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub",
)
COCO_VEHICLE_WORDS = ("jet", "train")


def coco_phrase_rules() -> dict[str, str]:
    """The reference's hard-coded two-word rules: phrase -> what it counts as."""
    rules = {w: w for w in COCO_DOUBLE_WORDS}
    for animal in COCO_ANIMAL_WORDS:
        rules[f"baby {animal}"] = animal
        rules[f"adult {animal}"] = animal
    for vehicle in COCO_VEHICLE_WORDS:
        rules[f"passenger {vehicle}"] = vehicle
    rules["bow tie"] = "tie"
    rules["toilet seat"] = "toilet"
    return rules


COCO_DROP_RULES = (("seat", "toilet"),)  # drop "seat" when "toilet" is mentioned


@dataclass(frozen=True)
class Mention:
    """One object word found in a caption and the class (node word) it maps to."""

    word: str
    node: str


class ChairVocabulary:
    """Object classes, their synonyms and phrase rules: which caption words name which object.

    ``synonyms`` maps every surface form (single or multi-word) to its class name; ``phrases``
    maps extra multi-word phrases to what they count as (a surface form, or any word to just
    consume the phrase); ``drop_rules`` lists ``(word, trigger)``: drop ``word`` when ``trigger``
    is also mentioned. Every multi-word synonym is also merged as a phrase automatically.
    """

    def __init__(
        self,
        synonyms: Mapping[str, str],
        phrases: Mapping[str, str] | None = None,
        drop_rules: Iterable[tuple[str, str]] = (),
        categories: Sequence[str] | None = None,
        source: str = "<in memory>",
        reference: bool = False,
    ):
        self.source = source
        self.reference = reference  # read as the reference reads synonyms.txt (see phrases())
        self.synonyms = {self._clean(k): self._clean(v) for k, v in synonyms.items()}
        if not self.synonyms:
            raise DataError(f"object vocabulary from {source} is empty")
        self.categories = tuple(categories) if categories is not None else tuple(dict.fromkeys(self.synonyms.values()))
        self.words = frozenset(w for w in self.synonyms if " " not in w)
        self.explicit_phrases = {self._clean(k): self._clean(v) for k, v in (phrases or {}).items()}
        self.raw_phrases = {k: k for k in self.synonyms if " " in k}
        self.raw_phrases.update(self.explicit_phrases)
        self.drop_rules = tuple((self._clean(a), self._clean(b)) for a, b in drop_rules)
        self._phrases: dict[str, dict[tuple[str, ...], str]] = {}

    @staticmethod
    def _clean(s: str) -> str:
        return " ".join(str(s).lower().split())

    def phrases(self, lemmatizer: Lemmatizer) -> dict[tuple[str, ...], str]:
        """Phrase table as matched against ``lemmatizer``'s output. With WordNet, phrases as written
        (the reference compares them with lemmatised caption words), and for a vocabulary read
        as the reference reads it (``coco()``) only the given two-word phrases, as its pairwise
        merge does; with lemminflect, the given phrases and every multi-word synonym, of any
        length, lemmatised the same way as captions."""
        if lemmatizer.name not in self._phrases:
            if lemmatizer.reference and self.reference:
                table = {tuple(k.split()): v for k, v in self.explicit_phrases.items() if len(k.split()) == 2}
            elif lemmatizer.reference:
                table = {tuple(k.split()): v for k, v in self.raw_phrases.items()}
            else:
                table = {tuple(lemmatizer.normalize(t, self.words) for t in tokenize(k)): v
                         for k, v in self.raw_phrases.items()}
            self._phrases[lemmatizer.name] = table
        return self._phrases[lemmatizer.name]

    @classmethod
    def from_synonym_lines(
        cls,
        lines: Iterable[str],
        source: str = "<lines>",
        phrases: Mapping[str, str] | None = None,
        drop_rules: Iterable[tuple[str, str]] = (),
        reference: bool = False,
    ) -> ChairVocabulary:
        """Vocabulary from lines in CHAIR's ``synonyms.txt`` format (first entry = class name).

        Blank lines and lines starting with ``#`` are skipped. A word listed under two classes is
        an error. ``reference=True`` splits on ", " as the reference does and drops the entries
        that it can then never match (" motor bike" after a double space, "iPhone" against
        lower-cased captions); otherwise entries are stripped and lower-cased.
        """
        synonyms: dict[str, str] = {}
        categories: list[str] = []
        for lineno, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if reference:
                entries = [e for e in line.strip("\r\n").split(", ") if e and e == cls._clean(e)]
            else:
                entries = [cls._clean(e) for e in line.split(",")]
            entries = [e for e in entries if e]
            if not entries:
                raise DataError(f"synonyms file {source} line {lineno} has no class name")
            node = entries[0]
            if node in categories:
                raise DataError(f"synonyms file {source} line {lineno}: class {node!r} is listed twice")
            categories.append(node)
            for e in entries:
                if synonyms.get(e, node) != node:
                    raise DataError(
                        f"synonyms file {source} line {lineno}: {e!r} is already a synonym of {synonyms[e]!r}"
                    )
                synonyms[e] = node
        if not synonyms:
            raise DataError(f"synonyms file {source} lists no classes")
        return cls(synonyms, phrases, drop_rules, categories, source, reference)

    @classmethod
    def from_synonyms_file(
        cls,
        path: str | Path,
        phrases: Mapping[str, str] | None = None,
        drop_rules: Iterable[tuple[str, str]] = (),
        coco_rules: bool = False,
        reference: bool = False,
    ) -> ChairVocabulary:
        """Vocabulary from a ``synonyms.txt``-style file, for COCO or any custom object set.

        ``coco_rules`` adds the reference's COCO phrase and drop rules (see module docstring);
        ``reference`` reads the file as the reference does (``from_synonym_lines``).
        """
        text = read_text(path, "synonyms file")
        all_phrases = dict(coco_phrase_rules()) if coco_rules else {}
        all_phrases.update(phrases or {})
        rules = list(COCO_DROP_RULES if coco_rules else ()) + list(drop_rules)
        return cls.from_synonym_lines(text.splitlines(), str(path), all_phrases, rules, reference)

    @classmethod
    def coco(cls, reference: bool = True) -> ChairVocabulary:
        """The reference CHAIR vocabulary: 80 COCO classes, original synonyms and COCO rules, read
        as the reference reads them (``reference=False``: also " motor bike", " cheesecake", "iPhone")."""
        return cls.from_synonyms_file(COCO_SYNONYMS_FILE, coco_rules=True, reference=reference)

    def node(self, word: str) -> str | None:
        """Class of a surface form (``"puppy"`` -> ``"dog"``), or ``None`` if it names no object."""
        return self.synonyms.get(self._clean(word))

    def words_of(self, caption: str, lemmatizer: Lemmatizer | None = None) -> list[str]:
        """Lemmatised, phrase-merged words of a caption (before vocabulary filtering);
        ``lemmatizer`` defaults to ``get_lemmatizer()`` (WordNet when installed)."""
        lem = lemmatizer or get_lemmatizer()
        if lem.tagger is not None:  # as Maxlinn's chair.py: NLTK tokens, each lemmatised as its POS
            assert lem.pos_lemma is not None  # a tagger comes with it (Lemmatizer.with_tagger)
            tokens = nltk_tokens(caption.lower())
            words = [lem.pos_lemma(t, wordnet_pos(tag)) for t, tag in zip(tokens, lem.tagger(tokens))]
        else:
            words = [lem.normalize(t, self.words) for t in tokenize(caption)]
        words = merge_phrases(words, self.phrases(lem))
        present = set(words)
        for word, trigger in self.drop_rules:
            if word in present and trigger in present:
                words = [w for w in words if w != word]
        return words

    def mentions(self, caption: str, lemmatizer: Lemmatizer | None = None) -> list[Mention]:
        """Every object mention in a caption, in order, repeats included."""
        return [Mention(w, self.synonyms[w]) for w in self.words_of(caption, lemmatizer) if w in self.synonyms]

    def nodes(self, caption: str, lemmatizer: Lemmatizer | None = None) -> set[str]:
        """The set of classes a caption mentions."""
        return {m.node for m in self.mentions(caption, lemmatizer)}

    def reference_length(self, caption: str, lemmatizer: Lemmatizer | None = None) -> int:
        """Maxlinn's per-caption "Len": NLTK Treebank tokens of the lower-cased caption,
        punctuation included, after merging two-word phrases pairwise as his script does."""
        lem = lemmatizer or get_lemmatizer()
        tokens = nltk_tokens(caption.lower())
        if lem.tagger is not None:
            assert lem.pos_lemma is not None  # a tagger comes with it (Lemmatizer.with_tagger)
            tokens = [lem.pos_lemma(t, wordnet_pos(tag)) for t, tag in zip(tokens, lem.tagger(tokens))]
        else:
            tokens = [lem.normalize(t, self.words) for t in tokens]
        pairs = {k: v for k, v in self.phrases(lem).items() if len(k) == 2}
        n = i = 0
        while i < len(tokens):
            i += 2 if tuple(tokens[i:i + 2]) in pairs else 1
            n += 1
        return n

    def __len__(self) -> int:
        return len(self.categories)

    def __repr__(self) -> str:
        return f"ChairVocabulary({len(self.categories)} classes from {self.source})"


@dataclass(frozen=True)
class CaptionChair:
    """CHAIR details of one caption."""

    image_id: int
    caption: str
    mentions: tuple[Mention, ...]
    hallucinated: tuple[Mention, ...]
    gt_objects: frozenset[str]
    n_words: int
    n_tokens: int = 0  # Maxlinn's per-caption Len (ChairVocabulary.reference_length)

    @property
    def is_hallucinated(self) -> bool:
        return bool(self.hallucinated)

    @property
    def covered(self) -> frozenset[str]:
        """Ground-truth classes this caption mentions."""
        return frozenset(m.node for m in self.mentions) & self.gt_objects


@dataclass(frozen=True)
class ChairResult:
    """Corpus-level CHAIR; rates are fractions in [0, 1], ``cider`` is ``None`` unless computed."""

    chair_s: float
    chair_i: float
    recall: float
    mean_words: float
    n_captions: int
    n_hallucinated_captions: int
    n_mentions: int
    n_hallucinated_mentions: int
    captions: tuple[CaptionChair, ...] = field(repr=False)
    cider: float | None = None
    len: float = 0.0  # Maxlinn's "Len": mean NLTK tokens per caption (see the module docstring)
    lemmatizer: str = ""

    def to_dict(self, percent: bool = True) -> dict[str, float | str | None]:
        """``chair_s``, ``chair_i``, ``recall`` (percent by default), ``len`` (Maxlinn's Len),
        ``mean_words``, counts, ``cider`` and the ``lemmatizer`` that scored them."""
        s = 100.0 if percent else 1.0
        return {
            "lemmatizer": self.lemmatizer,
            "chair_s": self.chair_s * s,
            "chair_i": self.chair_i * s,
            "recall": self.recall * s,
            "len": self.len,
            "mean_words": self.mean_words,
            "cider": None if self.cider is None else self.cider * s,
            "n_captions": self.n_captions,
            "n_hallucinated_captions": self.n_hallucinated_captions,
            "n_mentions": self.n_mentions,
            "n_hallucinated_mentions": self.n_hallucinated_mentions,
        }


def _caption_pairs(captions) -> list[tuple[int, str]]:
    if isinstance(captions, Mapping):
        return [(k, str(v)) for k, v in captions.items()]
    pairs = []
    for item in captions:
        if isinstance(item, Mapping):
            pairs.append((item["image_id"], str(item["caption"])))
        else:
            image_id, caption = item
            pairs.append((image_id, str(caption)))
    return pairs


def score_chair(
    captions,
    ground_truth: Mapping[int, Iterable[str]],
    vocabulary: ChairVocabulary | None = None,
    lemmatizer: str | Lemmatizer = "auto",
) -> ChairResult:
    """CHAIR of generated captions against ground-truth object sets.

    ``captions``: ``{image_id: caption}``, or a list of ``(image_id, caption)`` pairs or of
    ``{"image_id", "caption"}`` dicts (several captions per image allowed). ``ground_truth``:
    ``{image_id: objects}``, objects given as class names or any synonym. ``vocabulary``
    defaults to COCO's; ``lemmatizer`` is a ``text.get_lemmatizer`` name or a ``Lemmatizer``.
    """
    vocab = vocabulary or ChairVocabulary.coco()
    lem = get_lemmatizer(lemmatizer) if isinstance(lemmatizer, str) else lemmatizer
    pairs = _caption_pairs(captions)
    if not pairs:
        raise ValueError("no captions to score")
    gt_nodes: dict[int, frozenset[str]] = {}
    per_caption = []
    n_hal_caps = n_mentions = n_hal = n_covered = n_gt = n_words = n_tokens = 0
    for image_id, caption in pairs:
        if image_id not in gt_nodes:
            if image_id not in ground_truth:
                raise DataError(f"image id {image_id!r} has no ground-truth objects (not in the annotations)")
            nodes = set()
            for obj in ground_truth[image_id]:
                node = vocab.node(obj)
                if node is None:
                    raise ValueError(f"ground-truth object {obj!r} of image {image_id!r} is not in {vocab!r}")
                nodes.add(node)
            gt_nodes[image_id] = frozenset(nodes)
        gt = gt_nodes[image_id]
        mentions = tuple(vocab.mentions(caption, lem))
        hallucinated = tuple(m for m in mentions if m.node not in gt)
        words = len(tokenize(caption))
        tokens = vocab.reference_length(caption, lem)
        result = CaptionChair(image_id, caption, mentions, hallucinated, gt, words, tokens)
        per_caption.append(result)
        n_hal_caps += result.is_hallucinated
        n_mentions += len(mentions)
        n_hal += len(hallucinated)
        n_covered += len(result.covered)
        n_gt += len(gt)
        n_words += words
        n_tokens += tokens
    n = len(pairs)
    return ChairResult(
        chair_s=n_hal_caps / n,
        chair_i=n_hal / n_mentions if n_mentions else 0.0,
        recall=n_covered / n_gt if n_gt else 0.0,
        mean_words=n_words / n,
        n_captions=n,
        n_hallucinated_captions=n_hal_caps,
        n_mentions=n_mentions,
        n_hallucinated_mentions=n_hal,
        captions=tuple(per_caption),
        len=n_tokens / n,
        lemmatizer=lem.name,
    )


class ChairEvaluator:
    """Ground truth built once (COCO annotations are large), then any number of caption sets scored."""

    def __init__(
        self,
        ground_truth: Mapping[int, Iterable[str]],
        vocabulary: ChairVocabulary | None = None,
        references: Mapping[int, Sequence[str]] | None = None,
        lemmatizer: str | Lemmatizer = "auto",
    ):
        self.vocabulary = vocabulary or ChairVocabulary.coco()
        self.lemmatizer = get_lemmatizer(lemmatizer) if isinstance(lemmatizer, str) else lemmatizer
        self.ground_truth = {k: frozenset(v) for k, v in ground_truth.items()}
        self.references = dict(references) if references is not None else None

    @classmethod
    def from_coco(
        cls,
        instances_files: str | Path | Iterable[str | Path],
        captions_files: str | Path | Iterable[str | Path],
        vocabulary: ChairVocabulary | None = None,
        image_ids: Iterable[int] | None = None,
        lemmatizer: str | Lemmatizer = "auto",
    ) -> ChairEvaluator:
        """Ground truth = instance classes + classes named in the reference captions, per image.

        Pass val2014 files (plus train2014 if you caption train images); ``image_ids`` limits the
        work to the images you will score. The reference captions are read with ``lemmatizer``
        too, as the reference does.
        """
        vocab = vocabulary or ChairVocabulary.coco()
        lem = get_lemmatizer(lemmatizer) if isinstance(lemmatizer, str) else lemmatizer
        ids = None if image_ids is None else set(image_ids)
        categories = coco_image_categories(instances_files, ids)
        refs = coco_captions(captions_files, ids)
        gt: dict[int, set[str]] = {}
        for img_id, names in categories.items():
            nodes = set()
            for name in names:
                node = vocab.node(name)
                if node is None:
                    raise DataError(
                        f"COCO category {name!r} (in {_names(instances_files)}) "
                        f"is not in the object vocabulary {vocab!r}"
                    )
                nodes.add(node)
            gt[img_id] = nodes
        for img_id, caps in refs.items():
            nodes = gt.setdefault(img_id, set())
            for cap in caps:
                nodes.update(vocab.nodes(cap, lem))
        if ids is not None:
            missing = sorted(ids - set(gt))
            if missing:
                raise DataError(
                    f"image ids {missing[:5]} are in neither {_names(instances_files)} nor {_names(captions_files)}"
                )
        return cls(gt, vocab, refs, lem)

    def score(self, captions, cider: bool = False) -> ChairResult:
        """``score_chair`` against this ground truth; ``cider=True`` adds CIDEr when available.

        CIDEr needs one caption per image and the reference captions (``from_coco`` keeps them).
        """
        result = score_chair(captions, self.ground_truth, self.vocabulary, self.lemmatizer)
        if not cider:
            return result
        if self.references is None:
            raise ValueError("CIDEr needs reference captions: build the evaluator with from_coco or pass references")
        pairs = _caption_pairs(captions)
        candidates = dict(pairs)
        if len(candidates) != len(pairs):
            raise ValueError("CIDEr needs exactly one caption per image")
        return replace(result, cider=cider_score(candidates, self.references))


def _names(files) -> str:
    if isinstance(files, (str, Path)):
        return str(files)
    return ", ".join(str(f) for f in files)


def read_caption_file(
    path: str | Path,
    image_id_key: str = "image_id",
    caption_key: str = "caption",
) -> list[tuple[int, str]]:
    """``(image_id, caption)`` pairs from a JSON array or JSON-lines caption log (OPERA's format)."""
    records = load_json_records(path, "caption file")
    out = []
    for i, rec in enumerate(records):
        img = get_field(rec, image_id_key, path, i)
        cap = get_field(rec, caption_key, path, i)
        try:
            img = int(img)
        except (TypeError, ValueError):
            raise DataError(f"caption file {path} record {i + 1}: {image_id_key} {img!r} is not an integer") from None
        out.append((img, str(cap)))
    return out


def write_caption_file(path: str | Path, captions) -> Path:
    """Write ``(image_id, caption)`` pairs or a dict as JSON lines (readable by ``read_caption_file``)."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as f:
        for img, cap in _caption_pairs(captions):
            f.write(json.dumps({"image_id": img, "caption": cap}, ensure_ascii=False) + "\n")
    return path
