"""A path given as text, checked before the file system sees it: a NUL byte, an over-long name or a
``..`` part becomes one ``InputError`` line instead of a raw ``ValueError``/``OSError`` from deep inside
``pathlib`` (a posted ComfyUI workflow and a command line can send any of them)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InputError

#: The longest name of one folder or file, in bytes (ext4, NTFS, APFS: 255).
MAX_NAME_BYTES = 255
#: The longest whole path, in bytes (Linux's PATH_MAX).
MAX_PATH_BYTES = 4096

_SEPARATORS = re.compile(r"[\\/]")


def check_path_text(path, what: str = "path") -> str:
    """``path`` as stripped text, or one line saying why no file system call should see it."""
    text = str(path).strip()
    if not text:
        raise InputError(f"no {what} given")
    shown = text if len(text) <= 80 else text[:77] + "..."
    if "\0" in text:
        raise InputError(f"{what} {shown!r} contains a NUL byte; give a real path")
    try:
        size = len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        raise InputError(f"{what} {shown!r} is not valid text; give a real path") from None
    if size > MAX_PATH_BYTES:
        raise InputError(f"{what} {shown!r} is {size:,} bytes long, more than the {MAX_PATH_BYTES:,} a path may have")
    longest = max(_SEPARATORS.split(text), key=lambda part: len(part.encode("utf-8", "surrogateescape")))
    if len(longest.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise InputError(f"{what} {shown!r} has a name longer than {MAX_NAME_BYTES} bytes, more than a file system "
                         "allows")
    return text


def checked_path(path, what: str = "path") -> Path:
    """``check_path_text``'s text as a ``Path``, ``~`` expanded (``~nobody`` is left as written, where
    ``Path.expanduser`` would raise)."""
    return Path(os.path.expanduser(check_path_text(path, what)))


def climbs(text: str) -> bool:
    """Whether ``text`` has a ``..`` part (``/`` or ``\\`` separated)."""
    return ".." in _SEPARATORS.split(text)
