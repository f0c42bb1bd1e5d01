"""Offline tokenising and noun singularising for CHAIR and AMBER.

Why: the reference scripts need NLTK data (punkt, the perceptron tagger, WordNet) or
``pattern``, none of which can be installed offline (peers.md §0.5). ``lemminflect`` ships its
own lemma tables and is on PyPI, so it replaces them here.

Differences from the references, and why they rarely matter for object words:

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

import re
from functools import lru_cache
from typing import AbstractSet, Iterable

import lemminflect

_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (letters/digits, hyphenated words kept whole)."""
    return _TOKEN.findall(text.lower())


@lru_cache(maxsize=65536)
def noun_lemmas(word: str) -> tuple[str, ...]:
    """Candidate singular forms of ``word`` as a noun, most likely first (never empty)."""
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


def normalize_text(text: str, vocabulary: AbstractSet[str] = frozenset()) -> list[str]:
    """``tokenize`` then ``normalize_token`` each token."""
    return [normalize_token(t, vocabulary) for t in tokenize(text)]


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
