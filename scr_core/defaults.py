"""The embedded default model used when no ``--model`` is given.

The bundled testbed checkpoint (a tiny LLaVA trained on synthetic scenes). Without it (a
trimmed install), a tiny *random-weight* LLaVA is built on first use into a cache folder
(``SCR_CACHE``): the pipeline still runs offline, but its text is meaningless.
"""

from __future__ import annotations

import os
from pathlib import Path

TESTBED_CHECKPOINT = Path(__file__).parent / "testbed" / "checkpoint"


def cache_dir() -> Path:
    return Path(os.environ.get("SCR_CACHE", Path.home() / ".cache" / "scr")).expanduser()


def default_model() -> tuple[Path, str]:
    """(checkpoint folder, one-line description) of the embedded default."""
    if (TESTBED_CHECKPOINT / "config.json").is_file():
        return TESTBED_CHECKPOINT, "bundled testbed LLaVA (trained on synthetic scenes)"
    from .testbed.tiny import build_tiny_llava

    path = cache_dir() / "tiny-random-llava"
    if not (path / "config.json").is_file():
        build_tiny_llava(path)
    return path, "tiny RANDOM-weight LLaVA built locally (plumbing demo: its text is meaningless)"
