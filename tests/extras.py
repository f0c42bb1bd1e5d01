"""Tests that need an optional part (requirements-onnx.txt, requirements-eval.txt, requirements-ray.txt) where it
may be absent.

CI's floor job installs requirements.txt alone, so there they skip; CI's main job installs every extra
and sets ``SCR_REQUIRE_EXTRAS=1``, so there a missing extra fails instead of skipping silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scr_core.extras import EXTRAS, installed

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = sorted({name for _, modules in EXTRAS.values() for name in modules})  # every extra's import names


def without_extras(keep: tuple[str, ...] = ()) -> dict:
    """The environment of a process where every extra's modules but ``keep`` look uninstalled
    (tests/hide_modules); ``keep``: what the host needs anyway (ComfyUI requires scipy)."""
    path = os.pathsep.join(filter(None, [str(ROOT / "tests" / "hide_modules"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "SCR_HIDE_MODULES": ",".join(m for m in HIDDEN if m not in keep)}


def has_extra(extra: str) -> bool:
    return all(installed(name) for name in EXTRAS[extra][1])


def need_extra(extra: str) -> None:
    """Skip (or fail under ``SCR_REQUIRE_EXTRAS=1``) unless ``extra`` is installed."""
    if has_extra(extra):
        return
    reason = f"the {extra} extra is not installed (pip install -r {EXTRAS[extra][0]})"
    if os.environ.get("SCR_REQUIRE_EXTRAS") == "1":
        pytest.fail(f"SCR_REQUIRE_EXTRAS=1 but {reason}")
    pytest.skip(reason)
