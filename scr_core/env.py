"""Settings read from the environment: on/off switches (``SCR_ALLOW_DOWNLOADS``, ``HF_HUB_OFFLINE``), one
reading of "on", so every switch takes the same spellings (huggingface_hub's own: 1, true, yes, on); and the
owner's positive limits (``SCR_MAX_*``, ``SCR_TEMPLATE_*``, ``SCR_DOWNLOAD_*``), one reading of a number."""

from __future__ import annotations

import os
from collections.abc import Mapping

TRUTHY = ("1", "true", "yes", "on")


def env_flag(name: str, env: Mapping[str, str] = os.environ) -> bool:
    """Whether ``name`` is switched on: one of ``TRUTHY`` in any case, blanks around it ignored; unset,
    empty or anything else is off."""
    return env.get(name, "").strip().lower() in TRUTHY


def hub_offline(env: Mapping[str, str] = os.environ) -> bool:
    """``HF_HUB_OFFLINE`` is on: nothing may be fetched from the hub."""
    return env_flag("HF_HUB_OFFLINE", env)


def env_number(name: str, default: float, env: Mapping[str, str] = os.environ) -> float:
    """The positive, finite number the owner set in ``name`` (``_`` allowed as in ``256_000_000``), else
    ``default``; anything else is one ``InputError`` line naming the variable."""
    import math

    from .errors import InputError

    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        value = 0.0
    if not (value > 0 and math.isfinite(value)):
        raise InputError(f"{name}={raw!r} must be a positive number")
    return value
