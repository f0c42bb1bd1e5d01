"""Fixtures for the benchmark tests: paths to the hand-made official-format files, tiny images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"


def write_image(path: Path, color=(200, 30, 30), fmt: str | None = None) -> Path:
    """A 4x4 solid image at ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path, format=fmt)
    return path


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def make_image():
    return write_image


@pytest.fixture
def pope_images(tmp_path) -> Path:
    """val2014/ with the two images the POPE fixture files refer to."""
    folder = tmp_path / "val2014"
    for i in (1, 2):
        write_image(folder / f"COCO_val2014_{i:012d}.jpg")
    return folder


@pytest.fixture
def amber_dir(tmp_path) -> Path:
    """A copy of the AMBER fixture laid out as AMBER/data + AMBER/image."""
    root = tmp_path / "AMBER"
    shutil.copytree(FIXTURES / "amber", root / "data")
    for i in (1, 2, 3):
        write_image(root / "image" / f"AMBER_{i}.jpg")
    return root


@pytest.fixture
def hallusion_dir(tmp_path) -> Path:
    """HallusionBench.json plus hallusion_bench/ images (VD under the README's prefix, VS not)."""
    root = tmp_path / "HallusionBench"
    root.mkdir()
    shutil.copy(FIXTURES / "hallusionbench" / "HallusionBench.json", root)
    images = root / "hallusion_bench"
    for rel in ("VD/illusion/0_0.png", "VD/illusion/0_1.png", "VS/chart/0_1.png"):
        write_image(images / rel, fmt="PNG")
    return root
