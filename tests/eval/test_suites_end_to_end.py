"""Every benchmark suite runs from its official-format folder through the runner with a real model."""

from __future__ import annotations

import pytest

from scr_core.config import SCRConfig
from scr_core.errors import DataError
from scr_core.eval.runner import run
from scr_core.eval.suites import load_suite

from tests.eval.test_mme import QA


@pytest.fixture
def mme_dir(tmp_path, make_image):
    root = tmp_path / "MME_Benchmark_release_version"
    for task, images in QA.items():
        for name, lines in images.items():
            (root / task).mkdir(parents=True, exist_ok=True)
            (root / task / f"{name}.txt").write_text("\n".join(lines) + "\n")
            make_image(root / task / f"{name}.jpg")
    return root


def test_amber_suite(pipe, amber_dir, tmp_path):
    suite = load_suite("amber", amber_dir)
    kinds = {t.max_new_tokens for t in suite.tasks()}
    assert kinds == {128, 10}  # generative and discriminative queries
    summary = run("amber", amber_dir, pipe, "scr", tmp_path / "out", SCRConfig(k=4), batch_size=4, progress=False)
    assert summary["n"] == len(suite.tasks())
    assert {"chair", "cover", "hal", "cog"} <= set(summary["scores"]["generative"])
    assert "overall" in summary["scores"]["discriminative"]


def test_mme_suite(pipe, mme_dir, tmp_path):
    summary = run("mme", mme_dir, pipe, "vanilla", tmp_path / "out", SCRConfig(k=4), progress=False)
    assert summary["n"] == 10
    assert {"perception", "cognition"} <= set(summary["scores"])


def test_hallusionbench_suite(pipe, hallusion_dir, tmp_path):
    suite = load_suite("hallusionbench", hallusion_dir)
    # every question with a figure has its image; the one asked without its figure has none
    assert [t.id for t in suite.tasks() if t.image is None] == ["VS_chart_0_0_0"]
    assert all(t.image.is_file() for t in suite.tasks() if t.image is not None)
    summary = run("hallusionbench", hallusion_dir, pipe, "uniform", tmp_path / "out", SCRConfig(k=4),
                  progress=False)
    assert {"aAcc", "fAcc", "qAcc"} <= set(summary["scores"]["overall"])
    assert summary["n"] == 6 and summary["scores"]["overall"]["n_questions"] == 6


def test_unknown_benchmark_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="unknown benchmark"):
        load_suite("coco", tmp_path)
    with pytest.raises(DataError, match="query_all.json"):
        (tmp_path / "data").mkdir()
        for name in ("annotations.json", "relation.json"):
            (tmp_path / "data" / name).write_text("[]" if name == "annotations.json" else "{}")
        (tmp_path / "data" / "safe_words.txt").write_text("")
        (tmp_path / "image").mkdir()
        load_suite("amber", tmp_path)


def test_scoring_options_are_checked_before_any_work(tmp_path):
    with pytest.raises(DataError, match="chair takes no rule option"):
        load_suite("chair", tmp_path, rule="pope")
    with pytest.raises(DataError, match="unknown yes/no parsing rule 'lenient'; choose one of pope, "):
        load_suite("pope", tmp_path, rule="lenient")
    with pytest.raises(DataError, match="unknown lemmatizer 'porter'"):
        load_suite("amber", tmp_path, lemmatizer="porter")
    with pytest.raises(DataError, match="unknown HallusionBench scope 'text'"):
        load_suite("hallusionbench", tmp_path, scope="text")


def test_summaries_name_the_parser_and_lemmatizer(amber_dir):
    suite = load_suite("amber", amber_dir, rule="first_word", lemmatizer="lemminflect")
    scores = suite.score({t.id: "Yes" for t in suite.tasks()})
    assert scores["discriminative"]["rule"] == "first_word"
    assert scores["generative"]["lemmatizer"] == "lemminflect"
    assert scores["generative"]["similarity"] == "exact words only"
