"""The embedded default model used when no ``--model`` is given.

The bundled testbed checkpoint (a tiny LLaVA trained on synthetic scenes). Without it (a
trimmed install), a tiny *random-weight* LLaVA is built on first use into a cache folder
(``SCR_CACHE``): the pipeline still runs offline, but its text is meaningless.
"""

from __future__ import annotations

import os
from pathlib import Path

TESTBED_CHECKPOINT = Path(__file__).parent / "testbed" / "checkpoint"

#: Said where a caption preset is chosen (the CLI's --preset, the nodes' preset) and at run time: the
#: testbed was trained on one instruction, so it answers any other with word loops or nothing.
TESTBED_PRESET_NOTE = ("the bundled testbed model follows only the descriptive preset (its one training "
                       "instruction); other presets and typed instructions give it word loops or nothing "
                       "— a real VLM follows them")


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


def is_testbed(model) -> bool:
    """Whether ``model`` (a checkpoint folder) is the bundled testbed."""
    try:
        return model is not None and Path(model).expanduser().resolve() == TESTBED_CHECKPOINT.resolve()
    except (OSError, TypeError, ValueError):
        return False


def preset_note(model, instruction: str | None) -> str | None:
    """One line for the user when the bundled testbed is asked anything but its training instruction
    (the descriptive preset, with or without a length); ``None`` otherwise. ``instruction``: the text sent
    (``None`` = the default)."""
    from .prompts import CAPTION_PROMPT

    if instruction is None or instruction.startswith(CAPTION_PROMPT) or not is_testbed(model):
        return None
    return f"note: {TESTBED_PRESET_NOTE}"
