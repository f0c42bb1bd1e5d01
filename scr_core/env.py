"""On/off switches read from the environment (``SCR_ALLOW_DOWNLOADS``, ``HF_HUB_OFFLINE``): one reading of
"on", so every switch takes the same spellings (huggingface_hub's own: 1, true, yes, on)."""

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
