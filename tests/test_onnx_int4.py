"""``python -m export.onnx --dtype int4``: int4 ``MatMulNBits`` weights on the decoder's Linears.

The tiny LLaVA of ``test_onnx_llava`` (width 32, MLP 64: block size 32 divides them) exported in
int4. What is checked is the graphs' make-up and that they run torch-free with SCR's plan; how
close int4 stays to fp32 is measured, not asserted (``python -m bench.onnx_int4``, docs/onnx.md).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest

from export.exporter import ExportOptions, export
from export.folder_config import FolderConfig
from export.onnx import main as export_main
from export.quantize import lm_head_nodes
from export.runtime import OnnxVLM
from scr_core import ModelLoadError

from .test_onnx_llava import llava_dir, run_without_torch  # noqa: F401  (the shared tiny checkpoint fixture)

K = 4  # the tiny model's K: an 8x8 grid holds 4 sources with room to spare


@pytest.fixture(scope="module")
def int4_onnx(tmp_path_factory, llava_dir) -> Path:  # noqa: F811
    return export(ExportOptions(model=llava_dir, out=tmp_path_factory.mktemp("onnx") / "int4", k=K, dtype="int4"))


def _weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """MatMul nodes whose second input is a stored weight (a Linear not quantized)."""
    weights = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def test_int4_decoder_holds_matmulnbits_and_keeps_the_scr_nodes(int4_onnx, llava_dir):  # noqa: F811
    layers = json.loads((llava_dir / "config.json").read_text())["text_config"]["num_hidden_layers"]
    models = {}
    for name in ("vision", "embedding", "decoder_head", "decoder_tail", "select"):
        onnx.checker.check_model(str(int4_onnx / f"{name}.onnx"), full_check=True)
        models[name] = onnx.load(str(int4_onnx / f"{name}.onnx"))
    head, tail = models["decoder_head"], models["decoder_tail"]
    nbits = {name: sum(n.op_type == "MatMulNBits" for n in m.graph.node) for name, m in models.items()}
    assert nbits["decoder_head"] + nbits["decoder_tail"] == 7 * layers  # q, k, v, o, gate, up, down per layer
    assert not _weight_matmuls(head)
    assert _weight_matmuls(tail) == lm_head_nodes(tail) and len(lm_head_nodes(tail)) == 1  # the LM head stays
    assert nbits["vision"] == 0 and _weight_matmuls(models["vision"])  # the tower stays by default
    block = {a.name: a.i for n in head.graph.node if n.op_type == "MatMulNBits" for a in n.attribute}
    assert (block["bits"], block["block_size"], block["accuracy_level"]) == (4, 32, 4)
    assert len([n for n in head.graph.node if n.domain == "ai.scr"]) == 4  # the hook layers 0..3, as in fp32
    assert {f.name for f in head.functions} >= {"SpatialCreditRedistribution"}
    assert "scr_scores" in [o.name for o in head.graph.output]
    config = FolderConfig.from_json(int4_onnx)
    assert config.model.dtype == "float32"
    assert config.model.quantization.to_json() == {"bits": 4, "block_size": 32, "symmetric": True, "accuracy_level": 4,
                                               "parts": ["decoder"], "op": "com.microsoft.MatMulNBits"}


def test_int4_export_files_follow_the_umask(int4_onnx):
    """onnx writes external data 0600; every file of the export gets a plain ``open``'s mode, as fp32's."""
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in int4_onnx.iterdir()}
    assert {"decoder_head.onnx.data", "decoder_tail.onnx.data"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)


def test_int4_runs_without_torch_and_plans_k_sources(int4_onnx, images, tmp_path):
    shown = run_without_torch(int4_onnx, images[0], tmp_path)
    assert [len(g["sources"]) for g in shown["plan"]["grids"]] == [K]
    assert 1 <= len(shown["token_ids"]) <= 6


def test_int4_fp16_with_lm_head_and_vision(tmp_path, llava_dir, images):  # noqa: F811
    out = export(ExportOptions(model=llava_dir, out=tmp_path / "int4-fp16", k=K, dtype="int4-fp16", block_size=16,
                               int4_lm_head=True, int4_vision=True))
    for name in ("vision", "decoder_head", "decoder_tail"):
        model = onnx.load(str(out / f"{name}.onnx"))
        assert not _weight_matmuls(model), name
        assert {a.i for n in model.graph.node if n.op_type == "MatMulNBits" for a in n.attribute
                if a.name == "block_size"} == {16}
    vlm = OnnxVLM(out, provider="cpu")
    assert vlm.decoder.dtype == np.float16 and vlm.config.model.quantization.parts == ("decoder", "lm_head", "vision")
    with vlm.decoder.record_logits() as steps:
        result = vlm.caption(images[1], max_new_tokens=4)[0]
    assert [g.num_sources for g in result.plan.grids] == [K] and result.token_ids
    assert np.isfinite(steps[0].astype(np.float32)).all()


def test_int4_keeps_large_graphs_weights_in_external_data(tmp_path, llava_dir, images, monkeypatch):  # noqa: F811
    """Past the external-data threshold (lowered here so the tiny model crosses it) the quantizer reads the
    float graph's .data file and writes the int4 weights to a new one; checked by path, run by the runtime."""
    monkeypatch.setattr("export.graph_export.EXTERNAL_DATA_BYTES", 4096, raising=False)
    monkeypatch.setattr("export.quantize.EXTERNAL_DATA_BYTES", 4096)
    out = export(ExportOptions(model=llava_dir, out=tmp_path / "external", k=K, dtype="int4"))
    config = FolderConfig.from_json(out)
    assert (out / "embedding.onnx.data").is_file()  # the float graphs were written with external data too
    for part in ("head", "tail"):
        path = out / f"decoder_{part}.onnx"
        assert getattr(config.model.decoder, part).external_data and (out / f"{path.name}.data").stat().st_size > 0
        onnx.checker.check_model(str(path), full_check=True)
        assert not _weight_matmuls(onnx.load(str(path))) or part == "tail"
    assert [g.num_sources for g in OnnxVLM(out, provider="cpu").caption(images[0], max_new_tokens=2)[0].plan.grids] \
        == [K]


def test_bad_block_size_and_misplaced_int4_flags_are_one_line(tmp_path, llava_dir, capsys):  # noqa: F811
    cases = [(["--dtype", "int4", "--block-size", "64"], "--block-size 64 does not divide hidden_size = 32"),
             (["--dtype", "int4-fp16", "--block-size", "24"], "power of two"),
             (["--block-size", "32"], "go with --dtype int4"),
             (["--dtype", "fp16", "--int4-vision"], "go with --dtype int4")]
    for extra, message in cases:
        assert export_main(["--model", str(llava_dir), "--out", str(tmp_path / "x"), *extra]) == 2, extra
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and message in captured.err, captured.err
        assert captured.err.count("\n") == 1 and "[export] loading" not in captured.out  # refused before any work
    assert not list(tmp_path.iterdir())


def test_a_wrong_quantization_record_is_refused(int4_onnx, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    for item in int4_onnx.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    config = json.loads((folder / "scr_config.json").read_text())
    config["model"]["quantization"]["block_size"] = "32"
    (folder / "scr_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="model.quantization.block_size must be an integer"):
        FolderConfig.from_json(folder)


def test_bench_onnx_int4_measures_agreement_size_and_speed(llava_dir):  # noqa: F811
    """``python -m bench.onnx_int4``'s measurement on the tiny model: every figure is there and in range
    (how close int4 stays is what it reports, not what this test asserts)."""
    from bench.onnx_int4 import measure, render

    report = measure(str(llava_dir), n_images=1, tokens=3, repeats=1, threads=1, k=K, log=lambda message: None)
    agree, disk = report["agreement"], report["decoder_disk_mib"]
    assert agree["captions"] == 2 and all(0 <= agree[key] <= 1 for key in (
        "tokens_identical", "prefix_share_mean", "plan_identical", "sources_identical", "sources_jaccard_mean",
        "first_token_identical_same_plan"))
    assert 0 < disk["int4"] < disk["fp32"] and report["quantization"]["parts"] == ["decoder"]
    assert all(s["median"] > 0 for s in report["speed"]["decode_tokens_per_s"].values())
    assert set(report["speed"]["decode_tokens_per_s"]) == {"pytorch_fp32", "onnx_fp32", "onnx_int4"}
    assert "ONNX int4" in render(report) and len(report["noise_sensitivity"]) == 3
