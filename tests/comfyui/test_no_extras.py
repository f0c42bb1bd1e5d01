"""The pack in a real ComfyUI server where the extras (requirements-onnx.txt, requirements-eval.txt) are
not installed, as after ``pip install -r requirements.txt`` alone: every node loads, a caption workflow
runs, and Load ONNX VLM says in one line which file to install."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.extras import without_extras

from .server import PACK_NAME, ComfyServer, comfyui_dir

TWINS = Path(__file__).parent / "workflows"


@pytest.fixture(scope="module")
def bare(comfy, comfy_base, tmp_path_factory):
    """A second server (``comfy`` is used for its checks that ComfyUI is there) with the extras hidden."""
    base = tmp_path_factory.mktemp("comfy-no-extras")
    llm = base / "models" / "LLM"
    llm.mkdir(parents=True)
    (base / "input").mkdir()
    exported = comfy_base / "models" / "LLM" / "testbed-onnx"
    if exported.is_dir():
        shutil.copytree(exported, llm / "testbed-onnx")
    else:  # CI's floor job exports nothing (no onnx there); the loader refuses before it reads the folder
        (llm / "testbed-onnx").mkdir()
        (llm / "testbed-onnx" / "scr_config.json").write_text("{}")
    server = ComfyServer(comfyui_dir(), base, env=without_extras(keep=("scipy",))).start()  # ComfyUI needs scipy
    yield server
    server.stop()


def test_every_node_loads_and_a_caption_runs_without_the_extras(bare):
    log = bare.log_text()
    assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and PACK_NAME in line], log[-3000:]
    assert "SCRLoadOnnxVLM" in bare.get("/object_info")
    prompt = json.loads((TWINS / "scr_caption.api.json").read_text())
    entry = bare.run(prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]["messages"][-1:]
    assert entry["outputs"]["5"]["text"][0].strip() and "entropy" in entry["outputs"]["4"]["text"][0]


def test_load_onnx_vlm_names_the_file_to_install(bare):
    prompt = json.loads((TWINS / "scr_caption.api.json").read_text())
    prompt["2"] = {"class_type": "SCRLoadOnnxVLM", "inputs": {"model": "testbed-onnx", "path": "", "provider": "cpu"}}
    entry = bare.run(prompt)
    assert entry["status"]["status_str"] == "error"
    error = next(data for event, data in entry["status"]["messages"] if event == "execution_error")
    message = error["exception_message"]
    assert error["exception_type"].endswith("MissingExtraError") and "\n" not in message.strip()
    assert "onnxruntime" in message and "requirements-onnx.txt" in message
