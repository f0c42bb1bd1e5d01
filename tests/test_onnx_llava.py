"""LLaVA exported to ONNX and run by onnxruntime, against the PyTorch pipeline.

One tiny random LLaVA checkpoint (the shared ``llava_dir``) is exported once per session;
the PyTorch side is ``scr_core`` itself: ``SCRPipeline.diagnose`` for maps and plans, and the
model's ``generate`` under ``scr_core``'s redistribution hooks for logits and tokens. Both sides
use the PIL image processor (onnx.md §8: the torchvision one differs by up to 0.015).
"""

from __future__ import annotations

import importlib.machinery  # noqa: F401  (used by the torch-free child process's code below)
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from export.exporter import ExportOptions, export
from export.onnx import main as export_main
from export.run import main as run_main
from export.runtime import OnnxVLM
from scr_core import ConfigError, SCRPipeline
from scr_core.redistribution import BatchEdit, redistribution
from scr_core.runner import RUNNER_DEFAULT

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = ("vision", "embedding", "decoder_head", "decoder_tail", "select")
NEW_TOKENS = 20


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory) -> Path:
    """A tiny random LLaVA with 10 decoder layers (diagnostic layers 2..4, hooks 0..3 by the scaled rule)."""
    from scr_core.testbed.tiny import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny") / "llava", seed=0, num_layers=10)


@pytest.fixture(scope="session")
def llava_onnx(tmp_path_factory, llava_dir) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "llava"
    return export(ExportOptions(model=llava_dir, out=out))


@pytest.fixture(scope="session")
def llava_vlm(llava_onnx) -> OnnxVLM:
    return OnnxVLM(llava_onnx, provider="cpu")


@pytest.fixture(scope="session")
def llava_pil_pipe(llava_dir) -> SCRPipeline:
    return SCRPipeline.from_pretrained(llava_dir, processor_kwargs={"backend": "pil"})


def torch_reference(pipe: SCRPipeline, images, prompt, plans, max_new_tokens: int = NEW_TOKENS, **generate_kwargs):
    """(new tokens [B, n], next-token logits per step) of HF ``generate`` under scr_core's hooks."""
    batch = pipe.prepare(images, prompt)
    edit = BatchEdit.build(plans, batch.layout) if plans else None
    layers = plans[0].hook_layers if plans else ()
    with redistribution(pipe.adapter.decoder_layers(), layers, edit), torch.no_grad():
        out = pipe.model.generate(**batch.inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                  output_logits=True, return_dict_in_generate=True, **generate_kwargs)
    return out.sequences[:, batch.layout.seq_len:].numpy(), [step.float().numpy() for step in out.logits]


def assert_parity(steps: list, results, tokens, logits, atol: float = 1e-4) -> None:
    """``steps``: the ONNX side's per-step logits (``OnnxVLM.decoder.record_logits``)."""
    assert [r.token_ids for r in results] == [tuple(int(t) for t in row) for row in tokens]
    assert len(steps) == len(logits)
    for step, (ours, theirs) in enumerate(zip(steps, logits)):
        np.testing.assert_allclose(ours, theirs, atol=atol, rtol=0, err_msg=f"step {step}")


def test_min_new_tokens_masks_end_of_sequence_as_transformers_does(llava_vlm, llava_pil_pipe, images):
    """Forced lengths (the benchmark's): the token greedy decoding picks at step 3 is declared the end of
    sequence; plain decoding stops there, ``min_new_tokens`` masks it and matches HF ``generate``."""
    free = llava_vlm.caption(images[0], scr=None, max_new_tokens=12)[0].token_ids
    stop = free[2]
    assert llava_vlm.caption(images[0], scr=None, max_new_tokens=12, eos_token_id=stop)[0].token_ids \
        == free[:free.index(stop) + 1]
    forced = llava_vlm.caption(images[0], scr=None, max_new_tokens=12, min_new_tokens=12, eos_token_id=stop)[0]
    tokens, _ = torch_reference(llava_pil_pipe, images[0], None, None, max_new_tokens=12, min_new_tokens=12,
                                eos_token_id=stop)
    assert forced.token_ids == tuple(int(t) for t in tokens[0]) and len(forced.token_ids) == 12
    assert stop not in forced.token_ids
    with pytest.raises(ConfigError, match="min_new_tokens"):
        llava_vlm.caption(images[0], max_new_tokens=4, min_new_tokens=5)


def test_export_folder_holds_every_weight_once(llava_onnx, llava_pil_pipe):
    config = json.loads((llava_onnx / "scr_config.json").read_text())
    decoder, scr = config["model"]["decoder"], config["scr"]
    assert decoder["head"]["layers"] == [0, max(scr["diag_layers"])] == [0, 4]
    assert decoder["tail"]["layers"] == [5, 9] and scr["hook_layers"] == [0, 1, 2, 3]
    assert scr["opset_import"] == {"ai.scr": 1} and config["model"]["layout"]["grid"] == [8, 8]
    models = {name: onnx.load(str(llava_onnx / f"{name}.onnx")) for name in GRAPHS}
    for name, model in models.items():
        onnx.checker.check_model(model, full_check=True)
        assert model.ir_version <= 10, name
    head_ops = [n for n in models["decoder_head"].graph.node if n.domain == "ai.scr"]
    assert len(head_ops) == 4 and not [n for n in models["decoder_tail"].graph.node if n.domain == "ai.scr"]
    assert {f.name for f in models["decoder_head"].functions} >= {"SpatialCreditRedistribution"}
    # every weight is stored once: the four graphs hold the checkpoint's parameters, head and tail share none
    big = {name: [numpy_helper.to_array(t) for t in m.graph.initializer if np.prod(t.dims) >= 256]
           for name, m in models.items()}
    head_bytes = {a.tobytes() for a in big["decoder_head"]}
    assert not [a for a in big["decoder_tail"] if a.tobytes() in head_bytes]
    pipe = llava_pil_pipe
    text = pipe.adapter.language_model()
    parameters = sum(p.numel() for p in [*text.parameters(), *pipe.model.get_output_embeddings().parameters()])
    stored = sum(int(np.prod(t.dims)) for name in ("embedding", "decoder_head", "decoder_tail")
                 for t in models[name].graph.initializer)
    # ±1 %: the optimiser merges identical constants (the ones-initialised norm weights) and adds a few
    assert 0.99 * parameters <= stored <= 1.01 * parameters
    # batch, sequence and past length stay symbolic
    for name in ("inputs_embeds", "past_key_values.0.key"):
        dims = next(i for i in models["decoder_head"].graph.input if i.name == name).type.tensor_type.shape.dim
        assert dims[0].dim_param and dims[2 if "past" in name else 1].dim_param


def test_diagnosis_matches_pipeline(llava_vlm, llava_pil_pipe, images):
    ours = llava_vlm.diagnose(images[:2])
    theirs = llava_pil_pipe.diagnose(images[:2])
    for a, b in zip(ours, theirs):
        assert a.plan == b.plan and a.plan.grids[0].num_sources > 0
        for map_a, map_b in zip(a.maps, b.maps):
            np.testing.assert_allclose(map_a, map_b, atol=1e-5, rtol=0)
        assert a.entropy == pytest.approx(b.entropy, abs=1e-5)


@pytest.mark.parametrize("scr", [True, False], ids=["scr", "vanilla"])
def test_logits_and_tokens_match_pytorch(llava_vlm, llava_pil_pipe, images, scr):
    prompt = "Describe the image."
    plans = [d.plan for d in llava_pil_pipe.diagnose(images[0], prompt)] if scr else None
    tokens, logits = torch_reference(llava_pil_pipe, images[0], prompt, plans)
    with llava_vlm.decoder.record_logits() as steps:
        results = llava_vlm.caption(images[0], prompt, scr=RUNNER_DEFAULT if scr else None,
                                    max_new_tokens=NEW_TOKENS)
    assert_parity(steps, results, tokens, logits)
    assert (results[0].plan == plans[0]) if scr else results[0].plan is None
    assert results[0].timings.new_tokens == tokens.shape[1] and results[0].timings.prefill_ms > 0


@pytest.fixture(scope="session")
def llava_decomposed_vlm(tmp_path_factory, llava_dir) -> OnnxVLM:
    """The same checkpoint exported at opset 18: the attention decomposed into basic ops."""
    return OnnxVLM(export(ExportOptions(model=llava_dir, out=tmp_path_factory.mktemp("onnx") / "llava18", opset=18)),
                   provider="cpu")


def test_default_opset_puts_one_attention_node_in_each_decoder_layer(llava_onnx, llava_decomposed_vlm):
    head, tail = (onnx.load(str(llava_onnx / f"decoder_{part}.onnx")) for part in ("head", "tail"))
    for model, layers in ((head, 5), (tail, 5)):
        assert model.ir_version == 10
        assert {o.domain: o.version for o in model.opset_import}[""] == 23
        assert sum(n.op_type == "Attention" for n in model.graph.node) == layers
        assert {o.domain: o.version for f in model.functions for o in f.opset_import}.get("", 23) == 23
    # the tail has no diagnostic layer: no softmax of its own (the head keeps the diagnostic's rows)
    assert not [n for n in tail.graph.node if n.op_type == "Softmax"]
    config = json.loads((llava_onnx / "scr_config.json").read_text())
    assert (config["export"]["opset"], config["export"]["ir_version"]) == (23, 10)
    old = onnx.load(str(llava_decomposed_vlm.folder / "decoder_tail.onnx"))
    assert not [n for n in old.graph.node if n.op_type == "Attention"]
    assert [n for n in old.graph.node if n.op_type == "Softmax"]


@pytest.mark.parametrize("graphs", ["llava_vlm", "llava_decomposed_vlm"], ids=["opset-23", "opset-18"])
def test_left_padded_batch_of_two(graphs, llava_pil_pipe, images, request):
    vlm = request.getfixturevalue(graphs)
    prompts = ["Describe the image.", "Is there a red cat on the left of the large blue square?"]
    diagnoses = llava_pil_pipe.diagnose(images[:2], prompts)
    tokens, logits = torch_reference(llava_pil_pipe, images[:2], prompts, [d.plan for d in diagnoses])
    with vlm.decoder.record_logits() as steps:
        results = vlm.caption(images[:2], prompts, max_new_tokens=NEW_TOKENS)
    assert vlm.prepare(images[:2], prompts).attention_mask[0, 0] == 0  # really left-padded
    assert [r.plan for r in results] == [d.plan for d in diagnoses]
    assert_parity(steps, results, tokens, logits)


def test_scr_changes_the_output(llava_vlm, images):
    """The ai.scr nodes really act: the SCR prefill logits differ from the vanilla ones."""
    with llava_vlm.decoder.record_logits() as with_scr:
        llava_vlm.caption(images[1], max_new_tokens=1)
    with llava_vlm.decoder.record_logits() as vanilla:
        llava_vlm.caption(images[1], scr=None, max_new_tokens=1)
    assert np.abs(with_scr[0] - vanilla[0]).max() > 1e-3


def test_lam_one_fp16_export_equals_vanilla_and_overwrite(tmp_path, images, capsys, llava_onnx):
    """The bundled testbed (the default --model) exported by the CLI in fp16 with --lam 1.0 over an earlier
    export: SCR = vanilla exactly, and the fp16 graphs follow PyTorch's fp32 model to fp16 precision (CPU
    execution provider)."""
    out = tmp_path / "lam1"
    out.mkdir()
    (out / "scr_config.json").write_text((llava_onnx / "scr_config.json").read_text())  # an earlier export's
    (out / "stale.txt").write_text("old export")
    assert export_main(["--out", str(out), "--lam", "1.0", "--dtype", "fp16", "--overwrite"]) == 0
    assert not (out / "stale.txt").exists() and "exporting decoder_head.onnx" in capsys.readouterr().out
    vlm = OnnxVLM(out, provider="cpu")
    with vlm.decoder.record_logits() as scr_logits:
        scr = vlm.caption(images[2], max_new_tokens=8)
    with vlm.decoder.record_logits() as vanilla_logits:
        vanilla = vlm.caption(images[2], scr=None, max_new_tokens=8)
    assert scr[0].plan.grids[0].num_sources > 0 and scr[0].token_ids == vanilla[0].token_ids
    for a, b in zip(scr_logits, vanilla_logits):
        np.testing.assert_array_equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lam1"]  # no temporary folder left
    testbed = SCRPipeline.from_pretrained(ROOT / "scr_core" / "testbed" / "checkpoint", processor_kwargs={"backend": "pil"})
    tokens, logits = torch_reference(testbed, images[2], None, None, max_new_tokens=8)
    assert vanilla[0].token_ids == tuple(int(t) for t in tokens[0])
    scale = np.abs(logits[0]).max()
    np.testing.assert_allclose(vanilla_logits[0].astype(np.float32), logits[0], atol=2e-2 * scale, rtol=0)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_refusals_leave_nothing_behind(tmp_path, llava_dir, capsys):
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((llava_dir / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not a weights file")
    cases = [
        (["--model", str(broken), "--out", str(tmp_path / "e")], "cannot load"),  # fails inside the export
        (["--model", str(other), "--out", str(tmp_path / "a")], "does not support 'bert'"),
        (["--model", str(llava_dir), "--out", str(other)], "exists; pass --overwrite"),
        (["--model", str(llava_dir), "--out", "/proc/scr-export"], "not writable"),
        (["--model", str(llava_dir), "--out", str(tmp_path / "b"), "--hook-layers", "30-31"], "hook_layers"),
        (["--model", str(tmp_path / "missing"), "--out", str(tmp_path / "c")], "no config.json"),
        (["--model", str(llava_dir), "--out", str(tmp_path / "f"), "--k", "0"], "k must be a positive integer"),
        (["--model", str(llava_dir), "--out", str(tmp_path / "g"), "--lam", "nan"], "lam must be a finite"),
        (["--out", str(tmp_path / "d"), "--dtype", "fp8"], None),
    ]
    for argv, message in cases:
        if message is None:
            with pytest.raises(SystemExit) as stop:
                export_main(argv)
            assert stop.value.code == 2
            continue
        assert export_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert _leftovers(tmp_path) == ["bert", "broken"] and _leftovers(other) == ["config.json"]


def test_run_cli_json_and_errors(llava_onnx, images, tmp_path, capsys):
    image = tmp_path / "photo.png"
    images[0].save(image)
    assert run_main(["--model", str(llava_onnx), str(image), "--json", "--max-new-tokens", "4", "--provider",
                     "cpu"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["scr"] and len(shown["token_ids"]) <= 4 and shown["plan"]["grids"][0]["sources"]
    assert set(shown["timings"]) >= {"vision_ms", "diagnostic_ms", "prefill_ms", "decode_ms_per_token"}
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for item in llava_onnx.iterdir():
        (corrupt / item.name).write_bytes(item.read_bytes())
    (corrupt / "decoder_tail.onnx").write_bytes(b"garbage")
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "scr_config.json").write_text(json.dumps({"format_version": 99, "model": {}, "scr": {}}))
    for argv, message in [(["--model", str(tmp_path), str(image)], "not an exported SCR folder"),
                          (["--model", str(corrupt), str(image)], "cannot load"),
                          (["--model", str(newer), str(image)], "format version 99"),
                          (["--model", str(llava_onnx), str(tmp_path / "none.png")], "none.png"),
                          (["--model", str(llava_onnx), str(image), "--prompt", " "], "prompt is empty"),
                          (["--model", str(llava_onnx), str(image), "--prompt", "look <image>"], "image token")]:
        assert run_main(argv + ["--provider", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err


NO_TORCH = """
import importlib.machinery, json, sys
class NoTorch(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)
sys.meta_path[:] = [NoTorch if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
from export.run import main
code = main(sys.argv[1:])
loaded = [m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")]
print("TORCH_MODULES", json.dumps(loaded))
sys.exit(code)
"""


def run_without_torch(folder, image, tmp_path, new_tokens: int = 6) -> dict:
    """``python -m export.run --json`` on ``folder`` in a process where torch cannot be imported; its JSON."""
    path = tmp_path / "photo.png"
    image.save(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", NO_TORCH, "--model", str(folder), str(path), "--json",
                           "--max-new-tokens", str(new_tokens), "--provider", "cpu"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    text, marker = done.stdout.rsplit("TORCH_MODULES", 1)
    assert json.loads(marker) == []
    return json.loads(text)


def test_runtime_runs_without_torch(llava_onnx, llava_vlm, images, tmp_path):
    expected = llava_vlm.caption(images[1], max_new_tokens=6)[0]
    assert run_without_torch(llava_onnx, images[1], tmp_path)["token_ids"] == list(expected.token_ids)


def test_generated_image_token_keeps_its_embedding(llava_onnx, llava_vlm, llava_pil_pipe):
    """A decode step that produces the image token itself (no image features) embeds it like the
    PyTorch model does, instead of an empty feature row."""
    image_id = llava_vlm.config.model.image_token_id
    ids = np.array([[image_id, 5], [7, image_id]], dtype=np.int64)
    out = llava_vlm.decoder.embed(ids, llava_vlm.decoder.empty_features()).numpy()
    table = llava_pil_pipe.adapter.language_model().get_input_embeddings().weight.detach().numpy()
    np.testing.assert_allclose(out, table[ids], atol=0, rtol=0)


def test_scr_config_argument(llava_vlm, images):
    """An SCRConfig picks K; settings baked into the export must match or are refused by name."""
    from scr_core import ConfigError, SCRConfig

    small = llava_vlm.caption(images[0], scr=SCRConfig(k=2), max_new_tokens=2)[0]
    assert [g.num_sources for g in small.plan.grids] == [2]
    with pytest.raises(ConfigError, match="lam=1.1"):
        llava_vlm.caption(images[0], scr=SCRConfig(lam=1.2), max_new_tokens=2)
    with pytest.raises(ConfigError, match="hook_layers"):
        llava_vlm.caption(images[0], scr=SCRConfig(hook_layers=(0,)), max_new_tokens=2)


def test_a_clip_is_refused_in_one_line(llava_vlm, tmp_path):
    """Video is not exported: a clip (a video path, a Clip, a T x H x W x C array) is one InputError line."""
    from scr_core import Clip, InputError
    from scr_core.testbed.clips import moving_square, write_clip

    path = write_clip(tmp_path / "clip.mp4", moving_square(8), fps=8)
    for clip in (path, Clip(moving_square(4)), moving_square(4), [[path]]):
        with pytest.raises(InputError, match="video clips are not exported") as err:
            llava_vlm.caption(clip, max_new_tokens=2)
        assert "\n" not in str(err.value)
