"""A 2.5 GB fp16 export in bounded memory (``bench.export_memory``'s ``llama7b-6``: six Llama-2-7B-shaped
layers, so each decoder part holds 1.2 GB of weights and takes the external-data path for its size, not by
rule alone): the export child's peak RSS at most twice the checkpoint's bytes, every graph checked by path,
and the folder run by the torch-free runtime. Minutes (6.4 min on 2 cores shared with other jobs: building
the checkpoint, two 1.2 GB decoder parts traced and written, onnxruntime opening them), 6 GiB of RAM, 5 GB of disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from bench.export_memory import PRESETS, measure
from export.folder_config import EXTERNAL_DATA_BYTES

ROOT = Path(__file__).resolve().parent.parent
PRESET = "llama7b-6"
NEEDS_RAM, NEEDS_DISK = 7 << 30, 6 << 30


def _available_ram() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines() if Path("/proc/meminfo").is_file() else ():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or _available_ram() < NEEDS_RAM,
                                reason="needs Linux (peak RSS from wait4) and 7 GiB of free memory")

RUN_TORCH_FREE = """
import json, sys
from export.notorch import hide_torch
hide_torch()
from PIL import Image
from export.runtime import OnnxVLM
vlm = OnnxVLM(sys.argv[1], provider="cpu")
result = vlm.caption(Image.open(sys.argv[2]), max_new_tokens=3, min_new_tokens=3)[0]
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"token_ids": list(result.token_ids), "text": result.text, "vm_hwm_kib": int(hwm),
                  "torch": [m for m in sys.modules if m.split(".")[0] == "torch"]}))
"""


@pytest.fixture(scope="module")
def big_export(tmp_path_factory):
    work = tmp_path_factory.mktemp("big-export")
    if shutil.disk_usage(work).free < NEEDS_DISK:
        pytest.skip("needs 6 GB of free disk for the checkpoint and its export")
    return measure(PRESET, work)


def test_each_decoder_part_streams_its_weights_and_memory_stays_under_twice_the_checkpoint(big_export):
    assert PRESETS[PRESET]["num_layers"] == 6 and big_export["checkpoint_bytes"] > 2.4e9
    for name in ("decoder_head", "decoder_tail"):
        graph = big_export["graphs"][name]
        # past the threshold by size; the graph file itself holds no weights (far from protobuf's 2 GiB)
        assert graph["external_data"] and graph["data_bytes"] > EXTERNAL_DATA_BYTES, name
        assert graph["graph_bytes"] < 4 << 20, name
    assert big_export["peak_rss_bytes"] <= 2 * big_export["checkpoint_bytes"], big_export
    stages = [stage["stage"] for stage in big_export["stages"]]
    for name in ("decoder_head", "decoder_tail"):
        assert f"checking {name}.onnx by path (external data)" in stages
    folder = Path(big_export["onnx"])
    onnx.checker.check_model(str(folder / "decoder_tail.onnx"), full_check=True)  # by path: nothing loaded
    head = onnx.load(str(folder / "decoder_head.onnx"), load_external_data=False)
    locations = {entry.value for t in head.graph.initializer for entry in t.external_data if entry.key == "location"}
    assert locations == {"decoder_head.onnx.data"}  # a plain name in the folder, as folder_config requires


def test_the_folder_captions_torch_free(big_export, tmp_path):
    image = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((112, 112, 3)) * 255).astype(np.uint8)).save(image)
    done = subprocess.run([sys.executable, "-c", RUN_TORCH_FREE, big_export["onnx"], str(image)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["token_ids"]) == 3 and result["torch"] == []
    print(f"torch-free runtime VmHWM {result['vm_hwm_kib'] / 2**20:.2f} GiB")
