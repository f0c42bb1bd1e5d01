"""Small file readers shared by the benchmark loaders, on top of the library's own (``scr_core.datafiles``,
re-exported here: ``require_file``, ``read_text``, ``load_json``, ``json_object``).

Why: every benchmark reader must fail the same way on a missing, empty or corrupt file, with a
``DataError`` whose message names the file, instead of a bare ``KeyError`` or ``JSONDecodeError``
deep inside a scorer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scr_core.datafiles import json_object, load_json, read_text, require_file
from scr_core.errors import DataError

__all__ = ["check_image", "field", "json_object", "load_json", "load_json_records", "read_text", "require_dir",
           "require_file"]


def require_dir(path: str | Path, what: str = "data folder") -> Path:
    """The path as a ``Path`` if it is an existing folder, else ``DataError`` naming it."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{what} not found: {path}")
    return path


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


def check_image(path: Path, source: str | Path) -> Path:
    """The image path if the file exists, else ``DataError`` naming it and the file that refers to it."""
    if not path.is_file():
        raise DataError(f"image {path} (listed in {source}) not found")
    return path
