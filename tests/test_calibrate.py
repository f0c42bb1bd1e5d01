"""``calibrate``: the statistics against scipy / hand-computed values, the held-out split, the
grid, and whole runs on a tiny random LLaVA and on the bundled testbed (deterministic for a seed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import binomtest

from scr_core.calibrate import (Question, bootstrap_mean_ci, build_grid, calibrate, default_hook_grid, holm,
                                load_questions, markdown, parse_hook_grid, split_holdout)
from scr_core.config import SCRConfig, parse_layer_ranges
from scr_core.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


# -- statistics ---------------------------------------------------------------------------
def test_holm_matches_a_hand_computed_case():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.2]) == pytest.approx([0.2])
    assert holm([]) == []
    with pytest.raises(ValueError):
        holm([0.1, 1.5])


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = [1.0] * 10 + [0.0] * 30 + [-1.0] * 5
    a = bootstrap_mean_ci(values, np.random.default_rng(3))
    assert a == bootstrap_mean_ci(values, np.random.default_rng(3))
    assert a[0] < np.mean(values) < a[1] and -1 <= a[0] and a[1] <= 1
    assert bootstrap_mean_ci([0.0] * 7, np.random.default_rng(0)) == (0.0, 0.0)


# -- split and grid -----------------------------------------------------------------------
def _questions(n_images: int, per_image: int = 3) -> list[Question]:
    return [Question(f"{i}/{j}", Path(f"/imgs/{i:03d}.png"), "Is there a dog?", "yes" if j % 2 else "no")
            for i in range(n_images) for j in range(per_image)]


def test_holdout_split_is_disjoint_by_image_and_deterministic():
    questions = _questions(20)
    tune, held = split_holdout(questions, 0.3, seed=5)
    assert sorted(tune + held) == list(range(len(questions))) and not set(tune) & set(held)
    assert not {questions[i].image for i in tune} & {questions[i].image for i in held}
    assert len({questions[i].image for i in held}) == 6
    assert (tune, held) == split_holdout(questions, 0.3, seed=5)
    shuffled = [questions[i] for i in np.random.default_rng(0).permutation(len(questions))]
    s_tune, s_held = split_holdout(shuffled, 0.3, seed=5)  # the images held out do not depend on the order
    assert {shuffled[i].image for i in s_held} == {questions[i].image for i in held}
    assert split_holdout(questions, 0.3, seed=6) != (tune, held)
    with pytest.raises(ConfigError):
        split_holdout(questions, 1.0)
    with pytest.raises(DataError):
        split_holdout(_questions(1), 0.5)


def test_grid_defaults_and_parsing():
    assert default_hook_grid(32) == [tuple(range(8)), tuple(range(12)), tuple(range(16))]
    assert default_hook_grid(8) == [(0, 1), (0, 1, 2), (0, 1, 2, 3)]  # the testbed's scaled ranges
    assert parse_hook_grid("0-7;0-11") == (tuple(range(8)), tuple(range(12)))
    assert parse_hook_grid("0,2;0-3") == ((0, 2), (0, 1, 2, 3))
    grid = build_grid([1.1, 1.2], [8], [(0, 1), (0, 1, 2)], depth=8)
    assert [s.label for s in grid] == ["λ=1.1 K=8 hooks 0-1", "λ=1.2 K=8 hooks 0-1",
                                       "λ=1.1 K=8 hooks 0-2", "λ=1.2 K=8 hooks 0-2"]
    with pytest.raises(ConfigError, match="reaches layer 8"):
        build_grid([1.1], [8], [(0, 8)], depth=8)
    with pytest.raises(ConfigError, match="λ must be > 1"):
        build_grid([1.0], [8], [(0, 1)], depth=8)


def test_hook_layer_sets_are_written_as_the_flag_is_everywhere_else():
    """One meaning of --hook-layers: a comma joins ranges into one set (as for caption); ';' or a
    repeated flag gives several sets; the old comma-separated grid is refused with its new spelling."""
    assert parse_hook_grid("0-3,8") == ((0, 1, 2, 3, 8),) == (parse_layer_ranges("0-3,8"),)
    assert parse_hook_grid(["0-2", "0-3,8"]) == ((0, 1, 2), (0, 1, 2, 3, 8)) == parse_hook_grid("0-2;0-3,8")
    with pytest.raises(ConfigError, match=r"overlapping ranges in one set.*\"0-7;0-11;0-15\""):
        parse_hook_grid("0-7,0-11,0-15")
    with pytest.raises(ConfigError, match="empty list"):
        parse_hook_grid(" ; ")
    from scr_core.cli import build_parser

    args = build_parser().parse_args(["calibrate", "--data", "d", "--out", "o", "--hook-layers", "0-1",
                                      "--hook-layers", "0-3,5"])
    assert parse_hook_grid(args.hook_layers) == ((0, 1), (0, 1, 2, 3, 5))


def test_question_file_format(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = tmp_path / "q.jsonl"
    path.write_text('{"image": "a.png", "question": "Is there a cat?", "label": "No"}\n'
                    '{"id": "x", "image": "a.png", "question": "Is there a dog?", "label": "yes"}\n')
    qs = load_questions(path)
    assert [(q.id, q.label, q.image) for q in qs] == [("1", "no", tmp_path / "a.png"), ("x", "yes", tmp_path / "a.png")]
    assert qs[0].prompt.startswith("Is there a cat? ") and "single word" in qs[0].prompt
    path.write_text('{"image": "a.png", "question": "Is there a cat?", "label": "maybe"}\n')
    with pytest.raises(DataError, match="record 1"):
        load_questions(path)
    path.write_text('{"image": "missing.png", "question": "Is there a cat?", "label": "no"}\n')
    with pytest.raises(DataError, match="missing.png"):
        load_questions(path)


# -- whole runs ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def question_file(tmp_path_factory, images):
    folder = tmp_path_factory.mktemp("calibrate-questions")
    rows = []
    for i, image in enumerate(images + [im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in images]):
        image.save(folder / f"{i}.png")
        for j, (obj, label) in enumerate((("dog", "yes"), ("cat", "no"))):
            rows.append({"id": f"{i}-{j}", "image": f"{i}.png", "question": f"Is there a {obj}?", "label": label})
    path = folder / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_calibrate_on_a_tiny_random_llava(pipe, question_file):
    questions = load_questions(question_file)
    kwargs = dict(lams=(1.5, 3.0), ks=(4,), hook_layers=[(0, 1), (0, 1, 2, 3)], seed=1, batch_size=4,
                  n_resamples=200)
    first = calibrate(pipe, questions, **kwargs)
    assert json.dumps(first.to_dict()) == json.dumps(calibrate(pipe, questions, **kwargs).to_dict())
    # the answers of each setting (one diagnosis per batch for the whole grid) are those of an ordinary
    # SCR run with that setting, batch by batch
    for result in first.results:
        cfg = result.setting.config(SCRConfig())
        expected = []
        for start in range(0, len(questions), 4):
            chunk = questions[start:start + 4]
            expected += [r.text for r in pipe.generate([[q.image] for q in chunk], [q.prompt for q in chunk],
                                                       scr=cfg, max_new_tokens=10)]
        assert first.answers[result.setting.label] == expected
    # held-out split: other images than the tuning split, every question once
    split = first.answers["split"]
    tune_images = {q.image for q, s in zip(questions, split) if s == "tune"}
    held_images = {q.image for q, s in zip(questions, split) if s == "heldout"}
    assert tune_images and held_images and not tune_images & held_images
    assert first.meta["tune_questions"] + first.meta["heldout_questions"] == len(questions)
    # McNemar against scipy directly, Holm over the grid, on the held-out split
    scores = [r.scores["heldout"] for r in first.results]
    for s in scores:
        discordant = s.corrections + s.new_errors
        p = binomtest(s.new_errors, discordant, 0.5).pvalue if discordant else 1.0
        assert s.p == pytest.approx(p)
    assert [s.p_holm for s in scores] == pytest.approx(holm([s.p for s in scores]))
    text = markdown(first)
    assert first.verdict in text and "Held-out split" in text and "λ=3 K=4 hooks 0-3" in text
    if first.recommended is None:
        assert first.verdict.startswith("SCR does not measurably help")


def test_calibrate_resumes_from_its_work_folder(pipe, question_file, tmp_path):
    questions = load_questions(question_file)
    kwargs = dict(lams=(3.0,), ks=(4,), hook_layers=[(0, 1, 2, 3)], seed=1, batch_size=4, n_resamples=200)
    full = calibrate(pipe, questions, work_dir=tmp_path / "w", **kwargs)
    cache = tmp_path / "w" / "answers.partial.jsonl"
    first, second, third = [json.loads(line) for line in cache.read_text().splitlines()]
    assert [first["start"], second["start"], third["start"]] == [0, 4, 8]
    # a crash: the last batch lost, the one before cut mid-line; a marker shows the first batch is reused
    first["texts"]["vanilla"][0] = "marker"
    cache.write_text(json.dumps(first) + "\n" + json.dumps(second)[:20])
    resumed = calibrate(pipe, questions, work_dir=tmp_path / "w", **kwargs)
    assert resumed.answers["vanilla"][0] == "marker"  # not recomputed
    assert resumed.answers["vanilla"][1:] == full.answers["vanilla"][1:]
    assert resumed.answers["λ=3 K=4 hooks 0-3"] == full.answers["λ=3 K=4 hooks 0-3"]
    with pytest.raises(ConfigError, match="other settings"):
        calibrate(pipe, questions, work_dir=tmp_path / "w", **{**kwargs, "lams": (2.0,)})


def test_calibrate_command_on_the_testbed(tmp_path, capsys):
    """The CLI on the embedded default (the testbed) and a small testbed POPE set: files, no overwrite
    unless asked, one error line for bad input, and the same result from the library in this process."""
    from scr_core.testbed.report import write_test_set

    data = write_test_set(tmp_path / "tb", 3001, 6) / "pope"
    args = ["--data", data, "--lam", "1.1,3", "--k", "8", "--hook-layers", "0-2", "--batch-size", "12",
            "--bootstrap", "200"]

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "scr_core", "calibrate", *map(str, args), *map(str, extra)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)

    out = run("--out", tmp_path / "a")
    assert out.returncode == 0, out.stderr
    assert "report:" in out.stdout
    for name in ("report.md", "calibration.json", "calibration.png", "answers.json"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    report = json.loads((tmp_path / "a" / "calibration.json").read_text())
    assert report["meta"]["questions"] == 36 and report["meta"]["diag_layers"] == [2, 3]
    assert [s["label"] for s in report["settings"]] == ["λ=1.1 K=8 hooks 0-2", "λ=3 K=8 hooks 0-2"]
    assert report["verdict"] in (tmp_path / "a" / "report.md").read_text()

    # the same numbers from the library in this process (deterministic for a seed across processes)
    from scr_core.defaults import default_model
    from scr_core.pipeline import SCRPipeline

    testbed = SCRPipeline.from_pretrained(default_model()[0])
    direct = calibrate(testbed, load_questions(data), lams=(1.1, 3.0), ks=(8,), hook_layers=[(0, 1, 2)],
                       batch_size=12, n_resamples=200).to_dict()
    for key in ("settings", "vanilla", "picked", "recommended", "verdict"):
        assert json.loads(json.dumps(direct[key])) == report[key]

    from scr_core.cli import main

    def refused(*extra) -> str:  # checks that fail before the model loads, in this process
        capsys.readouterr()
        assert main(["calibrate", *map(str, args), *map(str, extra)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.strip().count("\n") == 0
        return err

    assert "--overwrite" in refused("--out", tmp_path / "a")
    assert "--holdout" in refused("--out", tmp_path / "b", "--holdout", "1.5")
    assert not (tmp_path / "b").exists()


def test_amber_and_pope_folders_give_their_yes_no_questions(tmp_path):
    import shutil

    fixtures = ROOT / "tests" / "eval" / "fixtures"
    amber = tmp_path / "AMBER"
    shutil.copytree(fixtures / "amber", amber / "data")
    for i in (1, 2, 3):
        (amber / "image").mkdir(exist_ok=True)
        Image.new("RGB", (4, 4)).save(amber / "image" / f"AMBER_{i}.jpg")
    qs = load_questions(amber)
    assert qs and all(int(q.id) >= 1000 and q.label in ("yes", "no") for q in qs)  # discriminative only
    assert next(q for q in qs if q.id == "1005").label == "no"
    assert qs[0].prompt.startswith("Is there a cat in this image? ")
    with pytest.raises(DataError, match="neither a POPE folder"):
        load_questions(tmp_path)
