"""The command line on a saved tiny checkpoint, as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "scr_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_caption_and_diagnose(tiny_llava_dir, tmp_path):
    image = tmp_path / "scene.png"
    Image.new("RGB", (120, 90), (200, 30, 30)).save(image)
    out = run_cli("caption", image, "--model", tiny_llava_dir, "--k", "4", "--json", "--max-new-tokens", "5")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["text"] and result["scr"] and result["plan"]["grids"][0]["height"] == 8
    assert result["timings"]["prefill_ms"] > 0 and result["timings"]["new_tokens"] == 5
    vanilla = run_cli("caption", image, "--model", tiny_llava_dir, "--no-scr", "--max-new-tokens", "5")
    assert vanilla.returncode == 0 and vanilla.stdout.strip()

    heatmap = tmp_path / "heat.png"
    diag = run_cli("diagnose", image, "--model", tiny_llava_dir, "--k", "4", "--heatmap", heatmap)
    assert diag.returncode == 0, diag.stderr
    assert "entropy:" in diag.stdout and "4 sources" in diag.stdout
    from scr_core.heatmap import FOOTER_HEIGHT

    assert Image.open(heatmap).size == (512, 384 + FOOTER_HEIGHT)  # the image's own 4:3, longer side 512


def test_cli_errors_are_one_line(tmp_path):
    out = run_cli("caption", tmp_path / "none.png", "--model", tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error:") and "config.json" in out.stderr


def test_demo_runs_offline_on_the_embedded_default(tmp_path):
    out = run_cli("demo", "--out", tmp_path / "demo", env={"SCR_CACHE": str(tmp_path / "cache"),
                                                          "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert "vanilla:" in out.stdout and "SCR:" in out.stdout and "entropy:" in out.stdout
    assert (tmp_path / "demo" / "heatmap.png").is_file()
