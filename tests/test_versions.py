"""The transformers floor: older versions and families newer than the installed transformers are refused
with one line (the real gate, fed a version string or a fake installed distribution)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from scr_core import DependencyError
from scr_core.adapters import LlavaAdapter
from scr_core.pipeline import SCRPipeline
from scr_core.versions import MIN_TRANSFORMERS, installed_transformers, require_transformers

ROOT = Path(__file__).resolve().parents[1]


def test_the_floor_and_newer_pass_and_4x_is_refused():
    for found in ("5.0.0", "5.0.0rc1", "5.24.0", installed_transformers()):
        require_transformers(found=found)
    with pytest.raises(DependencyError) as err:
        require_transformers(found="4.57.6")
    assert str(err.value) == "SCR needs transformers >= 5.0 (found 4.57.6): pip install -U 'transformers>=5.0'"
    assert MIN_TRANSFORMERS == "5.0"


def test_a_family_newer_than_the_installed_transformers_is_refused_at_load(tiny_llava_dir, monkeypatch):
    monkeypatch.setattr(LlavaAdapter, "min_transformers", "99.1")
    with pytest.raises(DependencyError, match=r"^SCR's llava support needs transformers >= 99\.1 \(found 5\.[^)]+\): "
                                              r"pip install -U 'transformers>=99\.1'$"):
        SCRPipeline.from_pretrained(tiny_llava_dir)


def test_the_cli_refuses_an_old_transformers_with_one_line(tiny_llava_dir, tmp_path):
    """A transformers 4.57 distribution first on the path (what ``importlib.metadata`` reports)."""
    fake = tmp_path / "site" / "transformers-4.57.6.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: transformers\nVersion: 4.57.6\n")
    image = tmp_path / "scene.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(image)
    path = [str(fake.parent), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    out = subprocess.run([sys.executable, "-m", "scr_core", "caption", str(image), "--model", str(tiny_llava_dir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "error: SCR needs transformers >= 5.0 (found 4.57.6): pip install -U 'transformers>=5.0'"]
