"""Shared fixtures: tiny random checkpoints saved and loaded like a user's local folder."""

from __future__ import annotations

import warnings

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
