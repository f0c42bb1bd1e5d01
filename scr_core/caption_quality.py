"""Which captions are empty or degenerate, one rule for the CLI's ``caption-folder`` and the ComfyUI nodes
that write caption files (Save Captions, Caption Folder): a data set with such files trains on noise, so
every writer counts them and names the files instead of reporting plain success.

A caption is degenerate when (after stripping) it is empty, holds no letter (e.g. ``"."``), or is a loop:
one word said three times or more and nothing else (``"and and and"``), or at least 8 words of which at
most a quarter are distinct (``"and and above and with and and and"``). A short sensible caption (``"a cat
and a fork."``) never is one. Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Names listed in one report line before "and N more".
MAX_LISTED = 10

_WORD = re.compile(r"[^\W_]+")


def degenerate_reason(caption: str | None) -> str | None:
    """Why ``caption`` is no caption ("empty", "no letters", "a repeated word", "a loop of few words"), or
    ``None`` when it is a usable one."""
    text = (caption or "").strip()
    if not text:
        return "empty"
    if not any(ch.isalpha() for ch in text):
        return "no letters"
    words = [w.lower() for w in _WORD.findall(text)]
    distinct = len(set(words))
    if distinct == 1 and len(words) >= 3:
        return "a repeated word"
    if len(words) >= 8 and distinct * 4 <= len(words):
        return "a loop of few words"
    return None


def degenerate_captions(named: Iterable[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """``(name, reason)`` of every degenerate caption among ``(name, caption)`` pairs, in their order."""
    return [(name, reason) for name, caption in named if (reason := degenerate_reason(caption)) is not None]


def degenerate_line(found: list[tuple[str, str]], total: int) -> str:
    """One line for a report: how many of ``total`` captions are degenerate and which (the first
    ``MAX_LISTED``); empty when none is."""
    if not found:
        return ""
    listed = ", ".join(f"{name} ({reason})" for name, reason in found[:MAX_LISTED])
    more = f" and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
    return (f"warning: {len(found)} of {total} caption(s) are empty or degenerate (check the model and the "
            f"preset): {listed}{more}")


__all__ = ["MAX_LISTED", "degenerate_captions", "degenerate_line", "degenerate_reason"]
