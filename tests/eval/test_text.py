"""Golden tests pinning the offline singulariser (lemminflect) and tokenizer used by CHAIR and AMBER."""

from __future__ import annotations

import pytest

from scr_core.eval.text import merge_phrases, normalize_token, singularize, tokenize

GOLDEN = {
    # regular plurals
    "dogs": "dog", "cups": "cup", "buses": "bus", "benches": "bench", "boxes": "box", "dishes": "dish",
    "skies": "sky", "ties": "tie", "skis": "ski", "potatoes": "potato", "giraffes": "giraffe",
    "umbrellas": "umbrella", "doughnuts": "doughnut", "tvs": "tv", "remotes": "remote",
    # irregular plurals
    "men": "man", "women": "woman", "children": "child", "mice": "mouse", "knives": "knife",
    "geese": "goose", "teeth": "tooth", "feet": "foot", "wolves": "wolf", "shelves": "shelf",
    "calves": "calf", "cacti": "cactus", "policemen": "policeman",
    # must not change
    "glass": "glass", "bus": "bus", "grass": "grass", "sheep": "sheep", "fish": "fish", "deer": "deer",
    "bison": "bison", "cattle": "cattle", "scissors": "scissors", "species": "species", "dog": "dog",
    # WordNet also keeps "people"; pattern.singularize gives "person" (both are COCO "person")
    "people": "people",
    # function words stay as they are (they are never object words)
    "is": "is", "was": "was", "has": "has", "this": "this",
}


@pytest.mark.parametrize("plural,singular", sorted(GOLDEN.items()))
def test_singularize_golden(plural, singular):
    assert singularize(plural) == singular


def test_vocabulary_aware_normalisation():
    # A token that is itself a vocabulary word is kept (CHAIR lists "children", "skis", "oxen").
    assert normalize_token("children", {"children"}) == "children"
    assert normalize_token("oxen", {"oxen"}) == "oxen"
    # Several noun lemmas: the one in the vocabulary wins.
    assert normalize_token("leaves", {"leaf"}) == "leaf"
    assert normalize_token("leaves", {"leave"}) == "leave"
    assert normalize_token("glasses", set()) == "glass"
    assert normalize_token("sunglasses", {"sunglasses"}) == "sunglasses"


def test_tokenize():
    assert tokenize("A man's hot-dog, two Teddy Bears & 3 TVs.") == [
        "a", "man", "s", "hot-dog", "two", "teddy", "bears", "3", "tvs"
    ]
    assert tokenize("") == []


def test_merge_phrases_longest_first():
    phrases = {("hot", "dog"): "hot dog", ("stove", "top", "oven"): "oven", ("stove", "top"): "stovetop"}
    assert merge_phrases(["a", "hot", "dog", "on", "a", "stove", "top", "oven"], phrases) == [
        "a", "hot dog", "on", "a", "oven"
    ]
    assert merge_phrases(["stove", "top"], phrases) == ["stovetop"]
    assert merge_phrases(["hot"], phrases) == ["hot"]
