"""``compare``: headline columns by default, everything with --all, the paired McNemar p per run.

Run folders are written by the real runner (``run_benchmark``) with scripted answers instead of
a model, so no torch is needed.
"""

from __future__ import annotations

import argparse
import json

import pytest

from scr_core.eval.cli import cmd_compare
from scr_core.eval.pope import mcnemar_exact
from scr_core.eval.runner import Answer, run_benchmark
from scr_core.eval.suites import load_suite
from scr_core.testbed.benchmarks import write_benchmarks
from scr_core.testbed.scenes import generate_scenes


@pytest.fixture(scope="module")
def pope_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    write_benchmarks(generate_scenes(6, seed=11), root, seed=0)
    return root / "pope"


def scripted(answer_for):
    def generate(tasks):
        return [Answer(answer_for(t.id), None, 5.0) for t in tasks]
    return generate


def make_run(pope_dir, out, method, answer_for, k=32):
    suite = load_suite("pope", pope_dir)
    meta = {"benchmark": "pope", "data": str(pope_dir.resolve()), "method": method, "model": "m",
            "limit": None, "seed": 0, "config": {"k": k}}
    run_benchmark(suite, scripted(answer_for), out, meta, batch_size=4, progress=False)
    return suite


def compare(*folders, all_=False, out=None, baseline="vanilla"):
    cmd_compare(argparse.Namespace(runs=list(folders), baseline=baseline, all=all_, out=out))


def test_headline_columns_deltas_and_mcnemar(pope_dir, tmp_path, capsys):
    suite = make_run(pope_dir, tmp_path / "v", "vanilla", lambda i: "Yes")
    labels = suite.labels()
    make_run(pope_dir, tmp_path / "s", "scr", lambda i: "Yes" if labels[i] == "yes" else "No")
    compare(tmp_path / "v", tmp_path / "s", out=tmp_path / "t.md")
    table = (tmp_path / "t.md").read_text()
    header = table.splitlines()[0]
    columns = [c.strip() for c in header.split("|")[2:-1]]
    assert columns[:4] == ["overall.accuracy ↑", "overall.f1 ↑", "overall.hr ↓", "overall.yes_ratio"]
    assert columns[-2:] == ["latency_ms ↓", "p (McNemar)"]
    assert len(columns) == 4 * 4 + 2  # overall + 3 splits, then latency and p
    assert "tp" not in header and "unknown_ratio" not in header
    ids = list(labels)
    expected = mcnemar_exact([labels[i] for i in ids], ["yes"] * len(ids), [labels[i] for i in ids]).p_value
    scr_row = next(line for line in table.splitlines() if line.startswith("| scr"))
    assert scr_row.split("|")[-2].strip() == format(expected, ".3g")
    assert "(+" in scr_row  # deltas against the vanilla run
    assert "p (McNemar): exact two-sided test" in table
    assert capsys.readouterr().out.startswith("| method |")


def test_all_shows_every_number(pope_dir, tmp_path):
    make_run(pope_dir, tmp_path / "v", "vanilla", lambda i: "Yes")
    make_run(pope_dir, tmp_path / "s", "scr", lambda i: "No")
    compare(tmp_path / "v", tmp_path / "s", all_=True, out=tmp_path / "t.md")
    header = (tmp_path / "t.md").read_text().splitlines()[0]
    assert "overall.tp" in header and "adversarial.unknown_ratio ↓" in header


def test_no_p_when_the_data_is_gone(pope_dir, tmp_path):
    import shutil

    data = tmp_path / "pope"
    shutil.copytree(pope_dir, data)
    make_run(data, tmp_path / "v", "vanilla", lambda i: "Yes")
    make_run(data, tmp_path / "s", "scr", lambda i: "No")
    shutil.rmtree(data)
    compare(tmp_path / "v", tmp_path / "s", out=tmp_path / "t.md")
    table = (tmp_path / "t.md").read_text()
    assert "p (McNemar)" not in table.splitlines()[0]
    assert "no p for scr" in table and "cannot read the benchmark data again" in table
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["scores"]["rule"] == "pope"


def test_first_run_is_the_baseline_without_a_vanilla_run(pope_dir, tmp_path):
    suite = make_run(pope_dir, tmp_path / "a", "scr", lambda i: "Yes", k=32)
    make_run(pope_dir, tmp_path / "b", "scr", lambda i: "No", k=8)
    compare(tmp_path / "a", tmp_path / "b", out=tmp_path / "t.md")
    rows = [line for line in (tmp_path / "t.md").read_text().splitlines() if line.startswith("| scr")]
    assert rows[0].startswith("| scr (k=32) |") and "(+" not in rows[0] and "(-" not in rows[0]
    assert "(-" in rows[1]  # "No" everywhere: accuracy down against the first run
    assert len(suite.labels()) > 0


def test_eval_parser_option_reaches_the_summary(pope_dir, tmp_path, monkeypatch, capsys):
    import scr_core.cli
    from scr_core.cli import main

    from tests.test_bad_inputs_data import FakePipe

    monkeypatch.setattr(scr_core.cli, "_pipeline", lambda args: FakePipe("NO"))
    argv = ["eval", "pope", "--data", str(pope_dir), "--limit", "2"]
    assert main([*argv, "--out", str(tmp_path / "official")]) == 0
    assert main([*argv, "--out", str(tmp_path / "lenient"), "--parser", "pope_casefold"]) == 0
    official = json.loads((tmp_path / "official" / "summary.json").read_text())
    lenient = json.loads((tmp_path / "lenient" / "summary.json").read_text())
    assert "options" not in official and lenient["options"] == {"rule": "pope_casefold"}
    assert official["scores"]["rule"] == "pope" and lenient["scores"]["rule"] == "pope_casefold"
    # evaluate.py reads "NO" as yes (it matches "No"/"no"/"not" exactly); the lenient rule as no
    assert official["scores"]["overall"]["yes_ratio"] == 100.0 and lenient["scores"]["overall"]["yes_ratio"] == 0.0
    capsys.readouterr()

    def no_model(args):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(scr_core.cli, "_pipeline", no_model)
    assert main(["eval", "chair", "--data", str(pope_dir), "--out", str(tmp_path / "c"), "--parser", "pope"]) == 2
    assert "chair takes no rule option" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
