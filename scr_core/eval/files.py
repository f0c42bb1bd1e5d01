"""Small file readers shared by the benchmark loaders.

Why: every benchmark reader must fail the same way on a missing, empty or corrupt file, with a
``DataError`` whose message names the file, instead of a bare ``KeyError`` or ``JSONDecodeError``
deep inside a scorer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from scr_core.errors import DataError


def require_file(path: str | Path, what: str = "data file") -> Path:
    """The path as a ``Path`` if it is an existing file, else ``DataError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def require_dir(path: str | Path, what: str = "data folder") -> Path:
    """The path as a ``Path`` if it is an existing folder, else ``DataError`` naming it."""
    path = Path(path)
    if not path.is_dir():
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


def load_json_records(path: str | Path, what: str = "JSON file") -> list[dict]:
    """A list of objects from either a JSON array or JSON lines (one object per line).

    POPE ships JSON lines under a ``.json`` name, AMBER ships arrays, caption logs come in both;
    the first non-blank character decides.
    """
    text = read_text(path, what)
    stripped = text.lstrip()
    if not stripped:
        raise DataError(f"{what} is empty: {path}")
    if stripped.startswith("["):
        records = load_json(path, what)
    else:
        records = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{what} {path} line {lineno} is not valid JSON ({err.msg})") from err
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{what} {path}: record {i + 1} is a {type(record).__name__}, expected an object")
    return records


def field(record: dict, key: str, path: str | Path, index: int | None = None) -> Any:
    """``record[key]``, or ``DataError`` saying which file and which record lacks it."""
    try:
        return record[key]
    except KeyError:
        where = f" record {index + 1}" if index is not None else ""
        raise DataError(f"{path}{where} has no field {key!r} (fields: {sorted(record)})") from None


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


def check_image(path: Path, source: str | Path) -> Path:
    """The image path if the file exists, else ``DataError`` naming it and the file that refers to it."""
    if not path.is_file():
        raise DataError(f"image {path} (listed in {source}) not found")
    return path
