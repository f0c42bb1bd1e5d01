"""SCR as an lmms-eval model (requirements-lmms.txt), run through lmms-eval's own CLI on the bundled
testbed with a local task (tests/lmms_task: yes/no questions over generated scenes).

How lmms-eval finds the plug-in here: through ``importlib.metadata`` entry points of the group
``lmms_eval.models``, the same lookup as for a pip-installed package. Instead of installing the project
into the test venv (slow, and it would change that venv), the test writes the one file such an install
contributes to that lookup, a ``*.dist-info`` with ``entry_points.txt``, into a temporary folder on the
CLI's PYTHONPATH, taking the entry points from pyproject.toml itself (so a wrong entry there fails here).
lmms-eval exits 0 on errors, so every check reads the results files it writes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from scr_core.config import SCRConfig
from scr_core.errors import ConfigError, SCRError
from tests.extras import ROOT, need_extra

LIMIT = 3  # per POPE split: 9 questions
SCR_ARGS = "method=scr,k=16,lam=100,hook_layers=0-7"  # strong enough to change some testbed answers
SCR_CONFIG = SCRConfig(k=16, lam=100.0, hook_layers=tuple(range(8)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The POPE questions (testbed scenes), the task folder with its data.jsonl, and the site folder."""
    need_extra("lmms")
    import tomllib

    from scr_core.eval.suites import load_suite
    from scr_core.testbed.report import write_test_set

    root = tmp_path_factory.mktemp("lmms")
    pope = write_test_set(root / "tb", 3001, 6) / "pope"
    suite = load_suite("pope", pope, LIMIT, 0)
    tasks, labels = suite.tasks(), suite.labels()
    task_dir = root / "task"
    shutil.copytree(ROOT / "tests" / "lmms_task", task_dir)
    with open(task_dir / "data.jsonl", "w") as f:
        for t in tasks:
            f.write(json.dumps({"id": t.id, "image": str(t.image), "prompt": t.prompt, "answer": labels[t.id]}) + "\n")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    info = root / "site" / f"scr_spatial_credit_redistribution-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entry_points = project["entry-points"]["lmms_eval.models"]
    (info / "entry_points.txt").write_text("[lmms_eval.models]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    return {"root": root, "pope": pope, "tasks": tasks, "task_dir": task_dir, "site": root / "site"}


def run_lmms(setup, model_args: str, name: str) -> dict:
    """lmms-eval's CLI on the local task; the answers by question id, the results and the log."""
    out = setup["root"] / name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(setup["site"]), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "lmms_eval", "--model", "scr", "--model_args",
                           f"{model_args},device=cpu", "--tasks", "scr_yesno", "--include_path", str(setup["task_dir"]),
                           "--batch_size", "3", "--log_samples", "--output_path", str(out)],
                          cwd=setup["root"], env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    results = sorted(out.rglob("*_results.json"))
    samples = sorted(out.rglob("*_samples_scr_yesno.jsonl"))
    assert results and samples, f"lmms-eval wrote no results (exit {proc.returncode}):\n{log[-3000:]}"
    ids = [t.id for t in setup["tasks"]]
    answers = {ids[s["doc_id"]]: s["filtered_resps"] for s in map(json.loads, samples[0].read_text().splitlines())}
    return {"answers": answers, "results": json.loads(results[0].read_text()), "log": log}


def settings_logged(log: str) -> dict:
    line = next(ln for ln in log.splitlines() if ln.startswith("SCR lmms-eval model: "))
    return json.loads(line.split(": ", 1)[1])


def test_vanilla_through_lmms_eval_equals_our_eval(setup, tmp_path):
    from scr_core.defaults import default_model
    from scr_core.eval.runner import read_predictions, run
    from scr_core.pipeline import SCRPipeline

    got = run_lmms(setup, "method=vanilla", "vanilla")
    assert got["results"]["results"]["scr_yesno"]["accuracy,none"] >= 0
    assert got["results"]["config"]["model_args"].startswith("method=vanilla")
    pipe = SCRPipeline.from_pretrained(default_model()[0])
    run("pope", setup["pope"], pipe, "vanilla", tmp_path / "eval", limit=LIMIT, batch_size=3, progress=False)
    ours = {k: v["text"] for k, v in read_predictions(tmp_path / "eval" / "predictions.jsonl").items()}
    assert len(got["answers"]) == len(setup["tasks"]) == 9
    assert got["answers"] == ours


def test_scr_settings_reach_the_model(setup):
    from scr_core.defaults import default_model
    from scr_core.pipeline import SCRPipeline

    got = run_lmms(setup, SCR_ARGS, "scr")
    recorded = got["results"]["config"]
    assert recorded["model_args"].startswith(SCR_ARGS) and "SCRLmms" in recorded["model_backend"]
    config = settings_logged(got["log"])["config"]
    assert (config["k"], config["lam"], config["hook_layers"]) == (16, 100.0, list(range(8)))
    pipe = SCRPipeline.from_pretrained(default_model()[0])
    images, prompts = [t.image for t in setup["tasks"]], [t.prompt for t in setup["tasks"]]
    expected = [r.text for r in pipe.generate(images, prompts, scr=SCR_CONFIG, max_new_tokens=10)]
    default = [r.text for r in pipe.generate(images, prompts, scr=SCRConfig(), max_new_tokens=10)]
    assert expected != default  # these settings change answers: a plug-in that ignored them would fail below
    assert [got["answers"][t.id] for t in setup["tasks"]] == expected


def test_the_model_refuses_what_it_does_not_do(setup, tiny_llava_dir):
    from scr_core.lmms.model import SCRLmms

    with pytest.raises(ConfigError, match="method='dola': choose one of scr, vanilla, uniform, remove"):
        SCRLmms(pretrained=str(tiny_llava_dir), method="dola")
    with pytest.raises(ConfigError, match="batch_size='auto'"):
        SCRLmms(pretrained=str(tiny_llava_dir), batch_size="auto")
    model = SCRLmms(pretrained=str(tiny_llava_dir), method="remove", k=4, hook_layers=8, device="cpu")
    assert model.settings["config"]["hook_layers"] == [8] and model.settings["method"] == "remove"
    with pytest.raises(SCRError, match="likelihood-scored"):
        model.loglikelihood([])
    with pytest.raises(SCRError, match="multi-round"):
        model.generate_until_multi_round([])
