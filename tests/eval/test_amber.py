"""AMBER: readers on the official formats, hand-computed generative and discriminative scores."""

from __future__ import annotations

import json

import pytest

from scr_core.errors import DataError
from scr_core.eval.amber import (
    AmberAnnotation,
    AmberResources,
    amber_score,
    read_amber,
    read_amber_annotations,
    read_amber_responses,
    score_amber_discriminative,
    score_amber_generative,
)


@pytest.fixture
def resources(amber_dir):
    return AmberResources.from_dir(amber_dir / "data")


@pytest.fixture
def responses(amber_dir):
    return read_amber_responses(amber_dir / "data" / "responses.json")


def test_read_queries_joined_with_annotations(amber_dir):
    samples = read_amber(amber_dir / "data" / "query" / "query_all.json", amber_dir / "data" / "annotations.json",
                         amber_dir / "image")
    assert len(samples) == 12
    first = samples[0]
    assert (first.id, first.task, first.type, first.label, first.query) == (1, "generative", "generative", None,
                                                                            "Describe this image.")
    assert first.image_path == amber_dir / "image" / "AMBER_1.jpg"
    assert [(s.id, s.task, s.label) for s in samples[3:5]] == [(1005, "discriminative", "no"),
                                                               (1006, "discriminative", "yes")]


def test_resources(resources):
    assert resources.safe_words == {"orange", "light", "sign"}
    assert resources.relation["person"] == ("people", "man", "woman")
    assert {"bill", "vehicle", "boat", "puppy"} <= resources.vocabulary
    assert resources.annotations[2].truth == ("ship", "ship", "sea")


def test_generative_hand_computed(resources, responses):
    gen = {i: responses[i] for i in (1, 2, 3)}
    res = score_amber_generative(gen, resources)
    # Matching is case-sensitive as in inference.py (WordNet's index is lower-case, so a capitalised
    # word is not lemmatised and never equals a vocabulary word).
    # id 1 "A man walks his dog on the grass under a blue sky. A bird flies near a tree. The light is bright."
    #   vocabulary nouns: man, dog, grass, sky, bird, tree, light (7)
    #   man -> association of person (covers person); dog, grass, sky -> truth; light -> safe word (skipped)
    #   bird -> a "hallu" object (Cog) and not ground truth -> hallucinated; tree -> hallucinated
    #   truth covered 4/4, hallu covered 1/3 (bird), hallucinated 2
    # id 2 "Two boats sail on the water. Cars are parked nearby."  nouns: boat, water (2; "Cars" is capitalised)
    #   boat -> association of the first "ship" only (reference's first-match rule); water -> association of sea
    #   truth covered 2/3 (ship, sea; the second ship never), hallu 0/2, hallucinated 0
    # id 3 "Clouds in the sky."  nouns: sky (1; "Clouds" is capitalised) -> truth; hallu covered 0/1
    d1, d2, d3 = res.details
    assert d1.nouns == ("man", "dog", "grass", "sky", "bird", "tree", "light")
    assert d1.hallucinated == ("bird", "tree")
    assert (d1.covered_truth, d1.n_truth, d1.covered_hallu, d1.n_hallu) == (4, 4, 1, 3)
    assert d2.nouns == ("boat", "water") and d2.hallucinated == ()
    assert (d2.covered_truth, d2.n_truth, d2.covered_hallu, d2.n_hallu) == (2, 3, 0, 2)
    assert d3.nouns == ("sky",) and d3.hallucinated == () and (d3.covered_truth, d3.covered_hallu) == (1, 0)
    assert res.chair == pytest.approx(2 / 10)      # (2 + 0 + 0) hallucinated / (7 + 2 + 1) nouns
    assert res.cover == pytest.approx(7 / 9)       # (4 + 2 + 1) / (4 + 3 + 2)
    assert res.hal == pytest.approx(1 / 3)         # only response 1 hallucinates
    assert res.cog == pytest.approx(1 / 6)         # (1 + 0 + 0) / (3 + 2 + 1)
    assert res.to_dict()["chair"] == pytest.approx(20.0)
    assert res.to_dict()["lemmatizer"] == "wordnet-3.0"


def test_generative_upper_case_vocabulary_word_is_found(resources):
    # relation.json lists "TV" (the only upper-case AMBER word); lower-casing responses lost it
    relation = dict(resources.relation, television=("TV",))
    annotations = dict(resources.annotations)
    annotations[4] = AmberAnnotation(4, "generative", truth=("television",), hallu=("dog",))
    res_with_tv = AmberResources(annotations, relation, resources.safe_words)
    for lemmatizer in ("wordnet", "lemminflect"):
        res = score_amber_generative({4: "A TV on the wall."}, res_with_tv, lemmatizer=lemmatizer)
        assert res.details[0].nouns == ("TV",) and res.details[0].covered_truth == 1
        assert res.hal == 0.0


def test_generative_optional_similarity(resources):
    text = {1: "A man and his puppy on the grass under the sky."}  # "puppy" is an AMBER word, not ground truth
    plain = score_amber_generative(text, resources)
    assert plain.details[0].hallucinated == ("puppy",)
    assert plain.details[0].covered_truth == 3  # person, grass, sky; dog is not covered

    def sim(a, b):
        return 0.9 if {a, b} == {"puppy", "dog"} else 0.0

    near = score_amber_generative(text, resources, similarity=sim)
    assert near.details[0].hallucinated == ()
    assert near.details[0].covered_truth == 4  # puppy ~ dog covers dog
    assert score_amber_generative(text, resources, similarity=sim, threshold=0.95).details[0].hallucinated == ("puppy",)


def test_discriminative_hand_computed(resources, responses):
    disc = {i: r for i, r in responses.items() if i >= 1005}
    res = score_amber_discriminative(disc, resources, rule="first_word")
    assert res.to_dict()["rule"] == "first_word"
    # positive class "no" (first_word parse, the lenient option):
    # 1005 gt no  "No, there is no cat." -> no  TP      1006 gt yes "Yes."  -> yes TN
    # 1007 gt no  "Yes"                  -> yes FN      1008 gt yes "yes"   -> yes TN
    # 1009 gt no  "no"                   -> no  TP      1010 gt yes "No."   -> no  FP
    # 1011 gt no  "I cannot tell."       -> unknown     1012 gt yes "Yes, it is." -> TN
    # 1013 gt no  "no"                   -> no  TP
    m = res.overall
    assert (m.tp, m.fp, m.tn, m.fn, m.unknown_pos) == (3, 1, 3, 1, 1)
    assert m.accuracy == pytest.approx(6 / 9)
    assert m.precision == pytest.approx(3 / 4)     # 3 / (3 + 1)
    assert m.recall == pytest.approx(3 / 5)        # 3 / (3 + 1 + 1 unknown)
    assert m.f1 == pytest.approx(2 / 3)            # 2 * .75 * .6 / 1.35
    dims = res.by_dimension
    assert set(dims) == {"existence", "attribute", "state", "number", "action", "relation"}
    assert dims["existence"].accuracy == 1.0 and dims["existence"].f1 == 1.0
    # attribute = 1007 FN, 1008 TN, 1009 TP, 1010 FP, 1011 unknown
    assert dims["attribute"].accuracy == pytest.approx(2 / 5)
    assert dims["attribute"].precision == pytest.approx(1 / 2)
    assert dims["attribute"].recall == pytest.approx(1 / 3)
    assert dims["attribute"].f1 == pytest.approx(0.4)
    # state (1007 FN, 1008 TN): nothing predicted "no" -> precision and F1 undefined; inference.py's
    # denominators start at 0.001, so it prints 0 for both, and so does the summary
    assert dims["state"].precision is None and dims["state"].f1 is None and dims["state"].recall == 0.0
    assert (res.to_dict()["state"]["precision"], res.to_dict()["state"]["f1"]) == (0.0, 0.0)
    assert dims["number"].f1 == pytest.approx(2 / 3)  # p = 1/2, r = 1
    assert dims["action"].accuracy == 0.0
    assert dims["relation"].accuracy == 1.0         # both relation types are pooled
    assert res.predictions[1011] == "unknown"


def test_discriminative_default_is_the_reference_string_match(resources, responses):
    disc = {i: r for i, r in responses.items() if i >= 1005}
    res = score_amber_discriminative(disc, resources)
    assert res.rule == "amber_exact"
    # only the exact strings "Yes"/"No" count: 1007 "Yes" (gt no, FN); everything else is unknown
    assert (res.overall.tp, res.overall.fn, res.overall.unknown) == (0, 1, 8)
    assert res.overall.accuracy == 0.0


def test_amber_score():
    assert amber_score(0.25, 2 / 3) == pytest.approx((1 - 0.25 + 2 / 3) / 2)


def test_wrong_task_and_unknown_ids(resources, responses):
    with pytest.raises(ValueError, match="generative"):
        score_amber_discriminative({1: "Yes"}, resources)
    with pytest.raises(ValueError, match="not a generative one"):
        score_amber_generative({1005: "A dog."}, resources)
    with pytest.raises(DataError, match="id 77"):
        score_amber_generative({77: "A dog."}, resources)


def test_query_without_annotation_names_files(amber_dir, tmp_path):
    q = tmp_path / "query_extra.json"
    q.write_text(json.dumps([{"id": 4242, "image": "AMBER_1.jpg", "query": "Describe this image."}]))
    with pytest.raises(DataError, match="query_extra.json: id 4242"):
        read_amber(q, amber_dir / "data" / "annotations.json", amber_dir / "image")


def test_corrupt_and_missing_files(amber_dir):
    (amber_dir / "data" / "relation.json").write_text('{"sky": [}')
    with pytest.raises(DataError, match="relation.json is not valid JSON"):
        AmberResources.from_dir(amber_dir / "data")
    (amber_dir / "data" / "safe_words.txt").unlink()
    (amber_dir / "data" / "relation.json").write_text("{}")
    with pytest.raises(DataError, match="safe_words.txt"):
        AmberResources.from_dir(amber_dir / "data")
    bad = amber_dir / "data" / "annotations.json"
    bad.write_text(json.dumps([{"id": 1005, "type": "discriminative-hallucination", "truth": "perhaps"}]))
    with pytest.raises(DataError, match="annotations.json id 1005"):
        read_amber_annotations(bad)


def test_missing_image_names_it(amber_dir):
    (amber_dir / "image" / "AMBER_2.jpg").unlink()
    with pytest.raises(DataError, match="AMBER_2.jpg"):
        read_amber(amber_dir / "data" / "query" / "query_all.json", amber_dir / "data" / "annotations.json",
                   amber_dir / "image")


def test_spacy_model_by_path_needs_spacy(tmp_path):
    from scr_core.eval.amber import spacy_similarity

    try:
        import spacy  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="needs spaCy"):
            spacy_similarity(tmp_path / "en_core_web_lg")
    else:
        with pytest.raises(DataError, match="cannot load the spaCy model"):
            spacy_similarity(tmp_path / "missing")
