"""``requirements-runtime.txt`` alone runs ``python -m export.run``: .ci/run builds ``.venv-runtime`` from that
file (+ pytest) and runs this file there, after the main job::

    .venv-runtime/bin/python -m pytest --noconftest tests/runtime_venv.py

The export is made by the main venv (``SCR_EXPORT_PYTHON``, default ``.venv/bin/python``: torch and the ONNX
extra); this interpreter only captions with it. Not named ``test_*.py``, so the main suite does not collect
it (there torch is installed and the check would prove nothing); ``--noconftest``: the suite's conftest
imports torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPORT_PYTHON = os.environ.get("SCR_EXPORT_PYTHON", str(ROOT / ".venv" / "bin" / "python"))


def test_this_venv_holds_the_runtime_and_not_the_exporter():
    assert importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("transformers")
    assert [name for name in ("torch", "torchvision", "onnx", "onnxscript") if importlib.util.find_spec(name)] == []


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The bundled testbed exported by the main venv."""
    folder = tmp_path_factory.mktemp("runtime") / "testbed-onnx"
    made = subprocess.run([EXPORT_PYTHON, "-m", "export.onnx", "--out", str(folder)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert made.returncode == 0, made.stderr
    return folder


def caption(python: str, folder: Path, image: Path) -> dict:
    done = subprocess.run([python, "-m", "export.run", "--model", str(folder), str(image), "--json", "--provider",
                           "cpu", "--max-new-tokens", "12"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr  # a quiet run: the JSON asked for, nothing else
    return json.loads(done.stdout)


def test_export_run_captions_here_as_in_the_main_venv(exported, tmp_path):
    from scr_core.testbed.scenes import generate_scenes

    image = tmp_path / "scene.png"
    generate_scenes(1, seed=2027)[0].image.save(image)
    here = caption(sys.executable, exported, image)
    assert here["text"].strip() and here["plan"]["grids"][0]["sources"] and 1 <= len(here["token_ids"]) <= 12
    assert here["token_ids"] == caption(EXPORT_PYTHON, exported, image)["token_ids"]
