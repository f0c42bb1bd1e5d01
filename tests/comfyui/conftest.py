"""One real ComfyUI server for the session (when a ComfyUI source tree is there)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from .server import ComfyServer, comfyui_dir


@pytest.fixture(scope="session")
def comfy_base(tmp_path_factory, tiny_llava_dir):
    base = tmp_path_factory.mktemp("comfy-base")
    (base / "models" / "LLM").mkdir(parents=True)
    shutil.copytree(tiny_llava_dir, base / "models" / "LLM" / "tiny-random-llava")
    (base / "input").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((96, 128, 3)) * 255).astype(np.uint8)).save(base / "input" / "example.png")
    return base


@pytest.fixture(scope="session")
def comfy(comfy_base):
    source = comfyui_dir()
    if source is None:
        pytest.skip("no ComfyUI source tree: set COMFYUI_DIR (CI has ../shared/comfyui)")
    server = ComfyServer(source, comfy_base).start()
    yield server
    server.stop()
