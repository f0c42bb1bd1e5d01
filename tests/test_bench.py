"""``python -m bench``: the quick run works end to end and its report renders (no speed assertions)."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import memory, schema, timing
from bench.settings import SECTIONS
from tests.extras import has_extra

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def quick_json(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = bench("--quick", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "end to end, batch 1" in proc.stderr and "| batch |" in proc.stdout  # progress, then the tables
    return out


def test_quick_json_has_every_field_the_report_needs(quick_json):
    doc = json.loads(quick_json.read_text())
    assert schema.problems(doc) == []
    assert tuple(doc["settings"]["sections"]) == SECTIONS
    s = doc["settings"]
    assert sorted((c["batch"], c["new_tokens"]) for c in doc["end_to_end"]) == sorted(
        (b, n) for b in s["batches"] for n in s["lengths"])
    assert all(stat["n"] == s["repeats"] >= 5 for c in doc["end_to_end"] for stat in c["ms"].values())
    assert {p["axis"] for p in doc["growth"]} == {"visual_tokens", "depth"}
    assert {p["family"] for p in doc["growth"]} == {"llava", "qwen2_vl"}
    onnx = doc["onnx_runtime"]
    assert onnx["status"] == "measured" and onnx["provider"] == "CPUExecutionProvider" and onnx["opset"] == 23
    assert [c["batch"] for c in onnx["cells"]] == list(s["batches"])
    assert onnx["memory"]["scr_sessions_mib"] > 0 and onnx["memory"]["plain_sessions_mib"] > 0
    assert onnx["int4"]["parts"] == ["decoder"] and onnx["memory"]["disk_mib"]["int4_decoder"] > 0  # the int4 rows
    assert all(c["decode_tokens_per_s"]["onnxruntime_int4"]["median"] > 0 for c in onnx["cells"])
    scale = doc["scale_out"]  # measured wherever the ray extra is (CI requires it)
    assert scale["status"] == "measured" or not has_extra("ray"), scale
    if scale["status"] == "measured":
        assert [c["actors"] for c in scale["cells"]] == [0, *s["scale_out_actors"]] and scale["images"] == 6
        assert all(c["items_per_s"]["median"] > 0 and c["first_batch_s"]["median"] > 0 for c in scale["cells"])
    assert doc["machine"]["torch_threads"] == 1 and doc["machine"]["load_average_end"] is not None


def test_the_naive_diagnostic_computes_the_same_maps(quick_json):
    doc = json.loads(quick_json.read_text())
    assert max(c["naive_max_abs_diff"] for c in doc["diagnostic"]) < 1e-5


def test_report_renders_the_tables_and_a_png(quick_json, tmp_path):
    md, png = tmp_path / "perf.md", tmp_path / "perf.png"
    proc = bench("--report", str(quick_json), "--markdown", str(md), "--plot", str(png), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = md.read_text()
    assert text == proc.stdout.rstrip("\n") + "\n"
    doc = json.loads(quick_json.read_text())
    for heading in ("**End to end**", "**Where the time goes**", "**Extra time over vanilla per generated token**",
                    "**Diagnostic pass**", "**Decode steps with the SCR hooks", "**How the cost grows**",
                    "**Captioning throughput**", "**A video clip**", "**Scale-out**",
                    "**ONNX Runtime vs PyTorch** (`python -m export.onnx`", "**Targets**"):
        assert heading in text
    table_rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| batch")]
    assert len(table_rows) >= 3 * len(doc["end_to_end"]) + 4 * len(doc["diagnostic"]) + len(doc["growth"]) + 6
    assert doc["machine"]["cpu"] in text and f"torch {doc['machine']['torch']}" in text
    assert [c["model"] for c in doc["throughput"]] == ["benchmark model", "testbed"]
    assert all(c["slices"] >= 2 and c["ms"]["scr"]["median"] > 0 for c in doc["video"])
    assert all(c["images_per_s"][b]["median"] > 0 for c in doc["throughput"] for b in ("1", "4"))
    assert "![" in text and "(perf.png)" in text
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 1000 and image.height > 300


def test_report_names_a_missing_field(quick_json, tmp_path):
    doc = json.loads(quick_json.read_text())
    del doc["end_to_end"][1]["ratios"]["scr/two_pass_limit"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    proc = bench("--report", str(broken), timeout=120)
    assert proc.returncode == 2
    assert "end_to_end[1].ratios.scr/two_pass_limit: missing" in proc.stderr
    assert not broken.with_suffix(".md").exists()


def test_a_run_refuses_to_overwrite_its_json_before_measuring(quick_json):
    before = quick_json.read_text()
    proc = bench("--quick", "--json", str(quick_json), timeout=120)
    assert proc.returncode == 2 and "exists" in proc.stderr and "end to end" not in proc.stderr
    assert quick_json.read_text() == before


def test_interleave_balances_the_order_and_drops_the_warm_up():
    calls = []
    variants = {name: (lambda name=name: calls.append(name) or {"tag": name}) for name in "ABCD"}
    rounds = timing.interleave(variants, repeats=4, warmup=1)
    assert calls == list("DACB" "ABDC" "BCAD" "CDBA" "DACB")  # warm-up: the design's last row
    assert {name: [r["tag"] for r in rows] for name, rows in rounds.items()} == {n: [n] * 4 for n in "ABCD"}
    assert all(r["ms"] >= 0 for rows in rounds.values() for r in rows)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_orders_put_every_variant_after_every_other_equally_often(n):
    rows = timing.orders(n)
    assert all(sorted(row) == list(range(n)) for row in rows)  # each row runs every variant once
    assert all(sorted(column) == sorted(rows[0] * (len(rows) // n)) for column in zip(*rows))  # Latin columns
    pairs = collections.Counter((a, b) for row in rows for a, b in zip(row, row[1:]))
    assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert len(set(pairs.values())) == 1  # a rotation would give each variant one predecessor only


def test_stats_and_paired_ratios():
    s = timing.stats([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s["median"], s["p25"], s["p75"], s["min"], s["max"], s["n"]) == (3.0, 2.0, 4.0, 1.0, 5.0, 5)
    assert timing.paired([2.0, 6.0, 3.0], [1.0, 2.0, 3.0], lambda a, b: a / b)["median"] == 2.0


@pytest.mark.skipif(memory.method("cpu") is None, reason="peak RSS cannot be reset on this platform")
def test_cpu_peak_memory_sees_an_allocation_and_resets_between_calls():
    big = memory.peak_bytes(lambda: np.ones(64 * 2**20 // 8).sum(), "cpu")
    small = memory.peak_bytes(lambda: np.ones(1024).sum(), "cpu")
    assert 60 * 2**20 <= big <= 200 * 2**20
    assert small < 16 * 2**20


def test_onnx_profile_splits_operator_time_into_prefill_and_decode_steps():
    """``python -m bench.onnx_profile --quick``: onnxruntime's profiler on the tiny model's decoder."""
    proc = subprocess.run([sys.executable, "-m", "bench.onnx_profile", "--quick", "--batch", "2", "--tokens", "4", "--opset", "18",
                           "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert (report["batch"], report["tokens"], report["opset"]) == (2, 4, 18)
    prefill, decode = report["prefill_ms_by_op"], report["decode_ms_per_step_by_op"]
    assert "MatMul" in prefill and "MatMul" in decode and all(ms >= 0 for ms in [*prefill.values(), *decode.values()])
    assert list(prefill.values()) == sorted(prefill.values(), reverse=True)
    # the prefill (hundreds of positions) costs more per operator than one decode step
    assert prefill["MatMul"] > decode["MatMul"]
