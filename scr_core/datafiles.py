"""Files the library reads back (run records, prediction lines, benchmark data): a missing, empty,
corrupt or mis-shaped one is one ``DataError`` naming the file (and the line), never a bare
``KeyError`` or ``JSONDecodeError`` deep inside a scorer or a resumed run.

The counterpart of ``outputs`` (files the library writes); the benchmark readers add their own
helpers on top (``scr_core.eval.files``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import DataError


def require_file(path: str | Path, what: str = "data file") -> Path:
    """The path as a ``Path`` if it is an existing file, else ``DataError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def read_text(path: str | Path, what: str = "data file") -> str:
    """Whole UTF-8 text of a file (a BOM is dropped); ``DataError`` if missing or not UTF-8."""
    path = require_file(path, what)
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {what} {path}: {err}") from err


def load_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parsed JSON document; ``DataError`` naming the file (and line) if it is empty or corrupt."""
    text = read_text(path, what)
    if not text.strip():
        raise DataError(f"{what} is empty: {path}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{what} {path} is not valid JSON (line {err.lineno}: {err.msg})") from err


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def json_object(record: Any, keys: Sequence[str], path: str | Path, line: int, fix: str = "") -> dict:
    """``record`` (parsed from ``line`` of a JSON-lines file) if it is an object holding ``keys``,
    else ``DataError`` naming the file and the line, followed by ``fix`` (what to do)."""
    fix = f"; {fix}" if fix else ""
    if not isinstance(record, dict):
        kind = _JSON_KINDS.get(type(record), type(record).__name__)
        raise DataError(f"{path}: line {line} is a JSON {kind}, expected an object{fix}")
    missing = [key for key in keys if key not in record]
    if missing:
        raise DataError(f"{path}: line {line} has no field {missing[0]!r} (fields: {sorted(record)}){fix}")
    return record
