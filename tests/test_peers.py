"""The peer methods through mitigv (requirements-peers.txt): each runs through eval's runner on a tiny
LLaVA and is recorded, the contrastive ones change the answers, Qwen2.5-VL runs what mitigv runs there,
and every other method or family is refused in one line before any work."""

from __future__ import annotations

import json

import pytest

from scr_core.config import SCRConfig
from scr_core.errors import ConfigError
from scr_core.eval.peers import FAMILIES, PEERS, PeerGenerator, check_family
from scr_core.eval.runner import read_predictions, run
from scr_core.testbed.benchmarks import write_benchmarks
from scr_core.testbed.scenes import generate_scenes
from tests.conftest import family_pipe
from tests.extras import need_extra

# On a tiny random model these change greedy answers; M3ID, AGLA and OPERA may coincide with vanilla
# over a few tokens (M3ID's weight grows with the step, AGLA blends in an augmented view, OPERA's
# penalty needs a column of attention to build up), so for them the test checks that they ran.
CONTRASTIVE = ("vcd-mitigv", "icd", "pai", "vista", "only")


@pytest.fixture(scope="module")
def pope_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    write_benchmarks(generate_scenes(4, seed=11), root, seed=0)
    return root / "pope"


@pytest.fixture(scope="module")
def vanilla(pipe, pope_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vanilla"
    run("pope", pope_dir, pipe, "vanilla", out, SCRConfig(), limit=1, batch_size=3, progress=False)
    return out


@pytest.mark.parametrize("method", list(PEERS))
def test_each_peer_runs_through_eval_on_llava_and_is_recorded(pipe, pope_dir, vanilla, tmp_path, method, capsys):
    need_extra("peers")
    import mitigv

    hooks = lambda: [(list(m._forward_hooks), list(m._forward_pre_hooks)) for m in pipe.model.modules()]  # noqa: E731
    before = hooks()
    summary = run("pope", pope_dir, pipe, method, tmp_path / method, SCRConfig(), limit=1, batch_size=3,
                  seed=0, progress=False)
    # nothing added to the shared model: not mitigv's hooks, nor the recording hooks transformers installs
    assert hooks() == before
    assert summary["method"] == method and summary["n"] == 3 and summary["latency_ms_mean"] > 0
    recorded = json.loads((tmp_path / method / "run.json").read_text())["peer"]
    assert recorded["library"] == f"mitigv {mitigv.__version__}" and recorded["algorithm"] == PEERS[method]
    defaults = mitigv.get_mitigator_class(PEERS[method]).config_class().to_dict()
    assert all(defaults[k] == v for k, v in recorded["settings"].items())  # the paper defaults mitigv ships
    answers = {k: v["text"] for k, v in read_predictions(tmp_path / method / "predictions.jsonl").items()}
    base = {k: v["text"] for k, v in read_predictions(vanilla / "predictions.jsonl").items()}
    assert answers.keys() == base.keys()
    if method in CONTRASTIVE:
        assert answers != base
    # compare puts it beside vanilla, labelled by its method alone
    from scr_core.cli import main

    capsys.readouterr()
    assert main(["compare", str(vanilla), str(tmp_path / method)]) in (None, 0)
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert {"vanilla", method} <= set(rows)
    # resumable like every method: a second run in the same folder answers nothing again
    again = run("pope", pope_dir, pipe, method, tmp_path / method, SCRConfig(), limit=1, batch_size=3, seed=0,
                progress=False)
    assert again["scores"] == summary["scores"]


def test_peer_answers_are_mitigvs_own_on_our_prompts(pipe, images):
    """What the runner records is mitigv's generate on the same prompt text SCR uses."""
    need_extra("peers")
    import mitigv
    from mitigv.backends.factory import adapt_vision_language

    peer = PeerGenerator(pipe, "icd", seed=0)
    ours = peer(images[:2], ["is there a dog ?", "describe the image ."], max_new_tokens=5)
    model, processor = adapt_vision_language("llava", pipe.model, pipe.processor)
    direct = mitigv.load_mitigator("icd", model=model, processor=processor)
    for image, prompt, text in zip(images[:2], ["is there a dog ?", "describe the image ."], ours):
        assert processor._prepare_text(prompt, [image]) == pipe.adapter.format_prompt(prompt, 1)
        out = direct.generate([image], [prompt], max_new_tokens=5, seed=0)
        assert (out[0] if isinstance(out, list) else out).strip() == text


def test_qwen2_5_vl_runs_what_mitigv_supports_and_refuses_the_rest(family_dir, images):
    need_extra("peers")
    pipe = family_pipe(family_dir("qwen2_5_vl"))
    vanilla = [r.text for r in pipe.generate([[im] for im in images[:2]], ["is there a dog ?", "describe the image ."],
                                             scr=None, max_new_tokens=4)]
    supported = FAMILIES["qwen2_5_vl"][1]
    changed = []
    for method in supported:
        texts = PeerGenerator(pipe, method)(images[:2], ["is there a dog ?", "describe the image ."], 4)
        assert len(texts) == 2
        changed.append(texts != vanilla)
    assert any(changed)
    for method in set(PEERS) - set(supported):
        with pytest.raises(ConfigError, match=rf"does not run {method.upper()} on qwen2_5_vl models"):
            PeerGenerator(pipe, method)


def test_other_families_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"mitigv 0\.1\.7 does not run OPERA on qwen2_vl models \(it runs on: llava\)"):
        check_family("qwen2_vl", "opera")
    with pytest.raises(ConfigError, match="does not run ICD on gemma3 models"):
        check_family("gemma3", "icd")


def test_eval_without_mitigv_is_one_line_before_the_model_loads(tmp_path):
    """Where requirements-peers.txt is not installed (hidden here), --method opera says what to install."""
    import subprocess
    import sys

    from tests.extras import ROOT, without_extras

    out = subprocess.run([sys.executable, "-m", "scr_core", "eval", "pope", "--data", str(tmp_path), "--method",
                          "opera", "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=without_extras(keep=("scipy", "nltk", "wn", "pycocotools", "lemminflect")))
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: --method opera needs mitigv, not installed here: "
                                                          "pip install -r ")
    assert "requirements-peers.txt" in out.stderr and not (tmp_path / "run").exists()
