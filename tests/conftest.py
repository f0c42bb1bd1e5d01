"""Shared fixtures: tiny random checkpoints saved and loaded like a user's local folder."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory):
    from scr_core.testbed.tiny import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"), seed=0)


@pytest.fixture(scope="session")
def pipe(tiny_llava_dir):
    from scr_core.pipeline import SCRPipeline

    return SCRPipeline.from_pretrained(tiny_llava_dir)


@pytest.fixture(scope="session")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((112 + 8 * i, 112, 3)) * 255).astype(np.uint8)) for i in range(3)]


@pytest.fixture(autouse=True)
def _quiet_clamp_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="only .* sources fit")
        yield


@functools.cache
def _built(family: str, root: str) -> Path:
    from scr_core.testbed.tiny_families import build

    return build(family, Path(root) / family)


@pytest.fixture(scope="session")
def family_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("tiny-families"))


@pytest.fixture(scope="session")
def family_dir(family_root):
    """``family_dir("qwen2_vl")``: a tiny random checkpoint of that family, built once per session."""
    return lambda family: _built(family, family_root)


@functools.cache
def family_pipe(path: Path, **options):
    """One pipeline per (checkpoint, adapter options), shared by the test files."""
    from scr_core.pipeline import SCRPipeline

    return SCRPipeline.from_pretrained(path, adapter_options=options or None)
