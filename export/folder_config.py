"""``scr_config.json``, the one file that says what an exported folder holds: its name, format version and
the size past which a graph keeps its weights apart, how it is written, and how it is read back.

Read, it is checked before onnxruntime opens anything: an exported folder may come from someone else,
so a wrong type is one ``ModelLoadError`` line and a graph name is a plain file name inside the folder
(no absolute path, no ``..``, no separator, no NUL). torch-free (the runtime reads it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from scr_core import ModelLoadError

CONFIG_NAME = "scr_config.json"
FORMAT_VERSION = 2  # 2: the processor rule as steps with the adapter's reserved tokens; short_answer_suffix
# (model.quantization, an int4 export's record, is optional: folders without it are fp32/fp16 ones)
EXTERNAL_DATA_BYTES = 1 << 30  # graphs with more weights than this keep them in a .onnx.data file

GRAPHS = (("vision",), ("embedding",), ("decoder", "head"), ("decoder", "tail"), ("select",))
MAX_NAME = 255


def _fail(config_path: Path, where: str, why: str) -> ModelLoadError:
    return ModelLoadError(f"{config_path}: {where} {why}; export the folder again")


def _get(tree: dict, keys: tuple[str, ...], kind, config_path: Path):
    value = tree
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise _fail(config_path, ".".join(keys[:depth + 1]), "is missing")
        value = value[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _fail(config_path, ".".join(keys), f"must be an integer (got {value!r:.40})")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        raise _fail(config_path, ".".join(keys), f"must be a number (got {value!r:.40})")
    if kind not in (int, float) and not isinstance(value, kind):
        raise _fail(config_path, ".".join(keys), f"must be a {getattr(kind, '__name__', kind)} (got {value!r:.40})")
    return value


def _int_list(tree: dict, keys: tuple[str, ...], config_path: Path) -> list[int]:
    value = _get(tree, keys, list, config_path)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise _fail(config_path, ".".join(keys), "must be a list of integers")
    return value


def graph_path(folder: Path, name, config_path: Path, where: str) -> Path:
    """``folder / name`` for a plain file name that stays in ``folder`` (symlinks resolved)."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or "\0" in name or "/" in name \
            or "\\" in name or name in (".", "..") or not name.endswith(".onnx"):
        raise _fail(config_path, where, f"must be a plain .onnx file name in the folder (got {name!r:.60})")
    path = folder / name
    try:
        inside = path.resolve().parent == folder.resolve()
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise _fail(config_path, where, f"({name!r}) leads outside {folder}")
    return path


def check_config(config: object, folder: Path, config_path: Path) -> dict[str, Path]:
    """Raise ``ModelLoadError`` naming the first field of the wrong type; returns the graph paths."""
    if not isinstance(config, dict):
        raise _fail(config_path, "the file", "must hold a JSON object")
    model = ("model",)
    _get(config, model, dict, config_path)
    for key in ("pad_token_id",):
        _get(config, (*model, key), int, config_path)
    _int_list(config, (*model, "eos_token_id"), config_path)
    if config["model"].get("context_length") is not None:
        _get(config, (*model, "context_length"), int, config_path)
    if _get(config, (*model, "dtype"), str, config_path) not in ("float16", "float32"):
        raise _fail(config_path, "model.dtype", "must be float16 or float32")
    for key in ("head_size", "hidden_size", "num_key_value_heads", "num_hidden_layers"):
        if _get(config, (*model, "decoder", key), int, config_path) < 1:
            raise _fail(config_path, f"model.decoder.{key}", "must be >= 1")
    _get(config, (*model, "decoder", "position_ids"), str, config_path)
    _get(config, (*model, "layout"), dict, config_path)
    _get(config, (*model, "short_answer_suffix"), str, config_path)
    if config["model"].get("quantization") is not None:
        _check_quantization(config, config_path)
    processor = (*model, "processor")
    _get(config, processor, dict, config_path)
    if any(not isinstance(t, str) for t in _get(config, (*processor, "reserved_tokens"), list, config_path)):
        raise _fail(config_path, "model.processor.reserved_tokens", "must be a list of strings")
    if config["model"]["processor"].get("expand") is not None:
        expand = (*processor, "expand")
        _get(config, (*expand, "image_token"), str, config_path)
        if _get(config, (*expand, "count"), str, config_path) not in ("image_grid_thw", "num_patches"):
            raise _fail(config_path, "model.processor.expand.count", "must be image_grid_thw or num_patches")
        size = "merge_size" if config["model"]["processor"]["expand"]["count"] == "image_grid_thw" \
            else "tokens_per_patch"
        if _get(config, (*expand, size), int, config_path) < 1:
            raise _fail(config_path, f"model.processor.expand.{size}", "must be >= 1")
    paths = {}
    for keys in GRAPHS:
        spec = (*model, *keys)
        _get(config, spec, dict, config_path)
        paths[keys[-1]] = graph_path(folder, _get(config, (*spec, "filename"), object, config_path), config_path,
                                     ".".join((*spec, "filename")))
    for part in ("head", "tail"):
        if len(_int_list(config, (*model, "decoder", part, "layers"), config_path)) != 2:
            raise _fail(config_path, f"model.decoder.{part}.layers", "must be [first, last]")
        _get(config, (*model, "decoder", part, "inputs"), list, config_path)
    scr = ("scr",)
    if _get(config, (*scr, "k"), int, config_path) < 1:
        raise _fail(config_path, "scr.k", "must be >= 1")
    if _get(config, (*scr, "lam"), float, config_path) <= 0:
        raise _fail(config_path, "scr.lam", "must be > 0")
    _int_list(config, (*scr, "diag_layers"), config_path)
    _int_list(config, (*scr, "hook_layers"), config_path)
    if config["scr"].get("query", "post_image") not in ("post_image", "last"):
        raise _fail(config_path, "scr.query", "must be post_image or last")
    _get(config, (*scr, "exclude_border"), bool, config_path)
    return paths


def _check_quantization(config: dict, config_path: Path) -> None:
    """``model.quantization``: what ``export/quantize.py`` records of an int4 export."""
    keys = ("model", "quantization")
    _get(config, keys, dict, config_path)
    if _get(config, (*keys, "bits"), int, config_path) not in (2, 4, 8):
        raise _fail(config_path, "model.quantization.bits", "must be 2, 4 or 8")
    if _get(config, (*keys, "block_size"), int, config_path) < 1:
        raise _fail(config_path, "model.quantization.block_size", "must be >= 1")
    _get(config, (*keys, "symmetric"), bool, config_path)
    _get(config, (*keys, "accuracy_level"), int, config_path)
    if any(not isinstance(p, str) for p in _get(config, (*keys, "parts"), list, config_path)):
        raise _fail(config_path, "model.quantization.parts", "must be a list of strings")


def write_config(folder: Path, config: dict) -> Path:
    """``config`` (everything but the version) as ``folder/scr_config.json``, stamped with this format."""
    path = Path(folder) / CONFIG_NAME
    path.write_text(json.dumps({"format_version": FORMAT_VERSION, **config}, indent=2) + "\n")
    return path


def read_config(folder: Path) -> tuple[dict, dict[str, Path]]:
    """(the config, its graph paths) of an exported folder, or one ``ModelLoadError`` line: not a folder
    made by ``python -m export.onnx``, unreadable, another format version, or a field of the wrong type."""
    config_path = Path(folder) / CONFIG_NAME
    try:
        found = config_path.is_file()
    except (OSError, ValueError) as err:  # a name too long for the file system, a NUL
        raise ModelLoadError(f"cannot use {str(folder)[:80]!r} as an exported folder: "
                             f"{getattr(err, 'strerror', None) or err}") from None
    if not found:
        raise ModelLoadError(f"{folder} is not an exported SCR folder (no {CONFIG_NAME}); "
                             "make one with python -m export.onnx --out FOLDER")
    try:
        config = json.loads(config_path.read_text())
        config["model"], config["scr"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{config_path} is unreadable or incomplete ({err!s:.200}); export the folder "
                             "again") from None
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"{config_path} has format version {config.get('format_version')!r}; this "
                             f"runtime reads version {FORMAT_VERSION}: export the folder again with this version")
    return config, check_config(config, Path(folder), config_path)
