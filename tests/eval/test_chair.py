"""CHAIR: vocabulary rules, hand-computed scores, COCO ground truth, custom vocabularies, errors."""

from __future__ import annotations

import json

import pytest

from scr_core.errors import DataError
from scr_core.eval.chair import (
    COCO_SYNONYMS_FILE,
    ChairEvaluator,
    ChairVocabulary,
    read_caption_file,
    score_chair,
    write_caption_file,
)
from scr_core.eval.cider import cider_score, cider_unavailable_reason
from scr_core.eval.coco import coco_captions, coco_image_categories, sample_coco_images
from scr_core.eval.text import get_lemmatizer


@pytest.fixture(scope="module")
def coco_vocab():
    return ChairVocabulary.coco()


def nodes(vocab, caption, lemmatizer="wordnet"):
    return [(m.word, m.node) for m in vocab.mentions(caption, get_lemmatizer(lemmatizer))]


def test_bundled_synonym_list_is_the_original(coco_vocab):
    lines = COCO_SYNONYMS_FILE.read_text().splitlines()
    assert len(lines) == 80
    assert lines[0].startswith("person, girl, boy, man, woman, kid, child, chef")
    # the original double space is kept
    assert lines[3] == "motorcycle, scooter,  motor bike, motor cycle, motorbike, scooter, moped"
    assert len(coco_vocab.categories) == 80
    assert coco_vocab.categories[:3] == ("person", "bicycle", "car")
    assert coco_vocab.node("puppy") == "dog"
    # read as the reference reads it: " motor bike" (double space) and "iPhone" can never match there
    assert coco_vocab.node("motor bike") is None and coco_vocab.node("iphone") is None
    cleaned = ChairVocabulary.coco(reference=False)
    assert cleaned.node("motor bike") == "motorcycle" and cleaned.node("iPhone") == "cell phone"
    assert coco_vocab.node("unicorn") is None


@pytest.mark.parametrize(
    "caption,expected",
    [
        ("Two hot dogs and a teddy bear.", [("hot dog", "hot dog"), ("teddy bear", "teddy bear")]),
        ("A man on a motor bike.", [("man", "person")]),  # the reference never matches " motor bike"
        # "baby"/"adult" + animal is the animal, not a person
        ("A baby elephant next to an adult giraffe.", [("elephant", "elephant"), ("giraffe", "giraffe")]),
        ("A baby in a crib.", [("baby", "person")]),
        # passenger jet/train -> jet/train, not person
        ("A passenger jet over a passenger train.", [("jet", "airplane"), ("train", "train")]),
        # bow tie -> tie; toilet seat -> toilet; "seat" dropped when a toilet is mentioned
        ("A man in a bow tie.", [("man", "person"), ("tie", "tie")]),
        ("A toilet seat.", [("toilet", "toilet")]),
        ("The toilet has a seat.", [("toilet", "toilet")]),
        ("A seat on a bench.", [("seat", "chair"), ("bench", "bench")]),
        # train track / home plate consume their second word
        ("A train on the train tracks.", [("train", "train")]),
        # WordNet lemmas as in OPERA's chair.py: "sports" -> "sport", so "sports balls" is the synonym "ball"
        ("Wine glasses and sports balls.", [("wine glass", "wine glass"), ("ball", "sports ball")]),
        ("People with children near buses.", [("people", "person"), ("child", "person"), ("bus", "bus")]),
        # "dining table" is not one of the reference's merged pairs: "table" is the synonym that counts
        ("Skis and knives on dining tables.", [("ski", "skis"), ("knife", "knife"), ("table", "dining table")]),
        # only pairs are merged, as in the reference: "stove top oven" is two mentions of oven
        ("A stove top oven.", [("stove", "oven"), ("oven", "oven")]),
        # the reference's WordNet quirks: "men" is its own lemma and "vases" -> "vas", so neither counts
        ("Two men and women with sunglasses, vases and mice.", [("woman", "person"), ("mouse", "mouse")]),
        ("", []),
    ],
)
def test_coco_rules(coco_vocab, caption, expected):
    assert nodes(coco_vocab, caption) == expected


@pytest.mark.parametrize(
    "caption,expected",
    [
        ("Wine glasses and sports balls.", [("wine glass", "wine glass"), ("sports ball", "sports ball")]),
        ("People with children near buses.", [("people", "person"), ("children", "person"), ("bus", "bus")]),
        ("Skis and knives on dining tables.", [("skis", "skis"), ("knife", "knife"), ("dining table", "dining table")]),
        ("A stove top oven.", [("stove top oven", "oven")]),
        ("Two men and women with sunglasses, vases and mice.",
         [("man", "person"), ("woman", "person"), ("vase", "vase"), ("mouse", "mouse")]),
    ],
)
def test_coco_rules_lemminflect_fallback(coco_vocab, caption, expected):
    # the fallback keeps vocabulary words whole and merges phrases of any length (text.py)
    assert nodes(coco_vocab, caption, "lemminflect") == expected


def test_scores_name_the_lemmatizer(coco_vocab):
    assert score_chair({1: "A dog."}, {1: {"dog"}}, coco_vocab, "lemminflect").to_dict()["lemmatizer"] == "lemminflect"
    assert score_chair({1: "A dog."}, {1: {"dog"}}, coco_vocab).to_dict()["lemmatizer"] == "wordnet-3.0"


# Ground truth for the three fixture images (instances + reference-caption objects):
#   1: person, dog (instances) + person, dog, frisbee (captions "A man walking his dog..." / "...puppy and a frisbee.")
#   2: dining table, cup (instances; "A table with a cup of coffee." adds nothing new)
#   3: car
GT = {1: {"person", "dog", "frisbee"}, 2: {"dining table", "cup"}, 3: {"car"}}
CAPTIONS = {
    1: "A woman and her puppy play with a frisbee near a cat.",  # woman, puppy, frisbee, cat*: 4 mentions, 1 hal.
    2: "A wine glass sits on a dining table.",                   # wine glass*, dining table:    2 mentions, 1 hal.
    3: "A car parked next to a car.",                           # car, car:                     2 mentions, 0 hal.
}


def check_hand_computed(result):
    assert result.chair_s == pytest.approx(2 / 3)        # captions 1 and 2 hallucinate
    assert result.chair_i == pytest.approx(2 / 8)        # 2 hallucinated of 4 + 2 + 2 mentions
    assert result.recall == pytest.approx(5 / 6)         # covered 3/3, 1/2 (no cup), 1/1 -> (3+1+1)/(3+2+1)
    assert result.mean_words == pytest.approx(27 / 3)    # 12 + 8 + 7 words
    # Maxlinn's Len: NLTK tokens, so "." counts, and a merged pair ("wine glass") is one: 13 + 8 + 8
    assert result.len == pytest.approx(29 / 3)
    assert (result.n_captions, result.n_hallucinated_captions) == (3, 2)
    assert (result.n_mentions, result.n_hallucinated_mentions) == (8, 2)
    first = result.captions[0]
    assert [m.node for m in first.hallucinated] == ["cat"]
    assert first.covered == {"person", "dog", "frisbee"}


def test_score_chair_hand_computed(coco_vocab):
    check_hand_computed(score_chair(CAPTIONS, GT, coco_vocab))


def test_ground_truth_from_coco_files(fixtures_dir):
    coco = fixtures_dir / "coco"
    evaluator = ChairEvaluator.from_coco(coco / "instances_val2014.json", coco / "captions_val2014.json")
    assert {k: set(v) for k, v in evaluator.ground_truth.items()} == GT
    captions = read_caption_file(coco / "captions_opera_format.jsonl")
    result = evaluator.score(captions)
    check_hand_computed(result)
    d = result.to_dict()
    assert d["chair_s"] == pytest.approx(200 / 3) and d["chair_i"] == pytest.approx(25.0)
    assert d["cider"] is None


def test_from_coco_restricted_to_image_ids(fixtures_dir):
    coco = fixtures_dir / "coco"
    evaluator = ChairEvaluator.from_coco(coco / "instances_val2014.json", coco / "captions_val2014.json", image_ids=[2])
    assert set(evaluator.ground_truth) == {2}
    with pytest.raises(DataError, match="image id 1"):
        evaluator.score({1: "A dog."})
    with pytest.raises(DataError, match=r"\[99\]"):
        ChairEvaluator.from_coco(coco / "instances_val2014.json", coco / "captions_val2014.json", image_ids=[2, 99])


def test_coco_readers(fixtures_dir, tmp_path, make_image):
    coco = fixtures_dir / "coco"
    assert coco_image_categories(coco / "instances_val2014.json") == {
        1: {"person", "dog"}, 2: {"dining table", "cup"}, 3: {"car"}
    }
    assert coco_captions(coco / "captions_val2014.json", [3]) == {3: ["A red car parked on the street."]}
    for i in (1, 2, 3):
        make_image(tmp_path / "val2014" / f"COCO_val2014_{i:012d}.jpg")
    all_images = sample_coco_images(coco / "instances_val2014.json", tmp_path / "val2014")
    assert [im.image_id for im in all_images] == [1, 2, 3]
    two = sample_coco_images(coco / "instances_val2014.json", tmp_path / "val2014", n=2, seed=0)
    again = sample_coco_images(coco / "instances_val2014.json", tmp_path / "val2014", n=2, seed=0)
    assert len(two) == 2 and two == again
    assert two[0].image_path.name.startswith("COCO_val2014_")


def test_custom_vocabulary_from_synonyms_file(fixtures_dir):
    vocab = ChairVocabulary.from_synonyms_file(fixtures_dir / "coco" / "shapes_synonyms.txt")
    assert vocab.categories == ("circle", "square", "triangle", "star", "red cross")
    gt = {0: {"circle", "box"}, 1: {"star"}}  # ground truth may use synonyms ("box" = square)
    result = score_chair(
        {
            # ring->circle, box->square, plus sign->red cross*: 3 mentions, 1 hallucinated
            0: "Two rings and a box next to a plus sign.",
            1: "A star and more stars.",                    # star, star: 2, 0 hallucinated
        },
        gt,
        vocab,
    )
    assert result.chair_s == pytest.approx(1 / 2)
    assert result.chair_i == pytest.approx(1 / 5)
    assert result.recall == pytest.approx((2 + 1) / (2 + 1))
    # COCO's rules are off for a custom vocabulary: "baby star" stays two words, "star" counts
    assert [m.node for m in vocab.mentions("a baby star")] == ["star"]


def test_caption_file_round_trip(tmp_path):
    path = write_caption_file(tmp_path / "caps.jsonl", {5: "A dog.", 6: "A cat."})
    assert read_caption_file(path) == [(5, "A dog."), (6, "A cat.")]
    arr = tmp_path / "caps.json"
    arr.write_text(json.dumps([{"image": "7", "text": "A cup."}]))
    assert read_caption_file(arr, image_id_key="image", caption_key="text") == [(7, "A cup.")]


def test_cider_is_optional(fixtures_dir):
    refs = {1: ["a man walking his dog", "a person with a puppy"], 2: ["a table with a cup of coffee"]}
    cands = {1: "a man walking his dog", 2: "a table with a cup"}
    if cider_unavailable_reason() is None:
        assert cider_score(cands, refs) > 0
    else:
        assert cider_score(cands, refs) is None
        coco = fixtures_dir / "coco"
        evaluator = ChairEvaluator.from_coco(coco / "instances_val2014.json", coco / "captions_val2014.json")
        assert evaluator.score({1: "A man and a dog.", 2: "A cup."}, cider=True).cider is None


def test_cider_reports_none_without_java(monkeypatch):
    import scr_core.eval.cider as cider_mod

    monkeypatch.setattr(cider_mod.shutil, "which", lambda name: None)
    monkeypatch.setattr(cider_mod.importlib.util, "find_spec", lambda name: object())
    assert "java" in cider_mod.cider_unavailable_reason()
    assert cider_mod.cider_score({1: "a dog"}, {1: ["a dog"]}) is None


# --- errors -----------------------------------------------------------------------------------

def test_corrupt_coco_file_names_the_file(tmp_path, fixtures_dir):
    bad = tmp_path / "instances_val2014.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataError, match="instances_val2014.json is not valid JSON"):
        ChairEvaluator.from_coco(bad, fixtures_dir / "coco" / "captions_val2014.json")
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="instances_val2014.json is not in COCO format"):
        coco_image_categories(bad)


def test_missing_coco_file_names_the_file(tmp_path, fixtures_dir):
    with pytest.raises(DataError, match="captions_train2014.json"):
        ChairEvaluator.from_coco(fixtures_dir / "coco" / "instances_val2014.json", tmp_path / "captions_train2014.json")


def test_category_outside_vocabulary(fixtures_dir):
    vocab = ChairVocabulary.from_synonyms_file(fixtures_dir / "coco" / "shapes_synonyms.txt")
    coco = fixtures_dir / "coco"
    with pytest.raises(DataError, match="COCO category '(person|dog|dining table|cup|car)'.*instances_val2014.json"):
        ChairEvaluator.from_coco(coco / "instances_val2014.json", coco / "captions_val2014.json", vocabulary=vocab)


def test_bad_synonyms_files(tmp_path):
    with pytest.raises(DataError, match="nope.txt"):
        ChairVocabulary.from_synonyms_file(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty.txt lists no classes"):
        ChairVocabulary.from_synonyms_file(empty)
    clash = tmp_path / "clash.txt"
    clash.write_text("dog, puppy\ncat, puppy\n")
    with pytest.raises(DataError, match="clash.txt line 2: 'puppy' is already a synonym of 'dog'"):
        ChairVocabulary.from_synonyms_file(clash)


def test_ground_truth_object_outside_vocabulary(coco_vocab):
    with pytest.raises(ValueError, match="unicorn"):
        score_chair({1: "A dog."}, {1: {"unicorn"}}, coco_vocab)
