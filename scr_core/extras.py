"""The optional parts and the one check that names what to install when one is missing.

Why: ``requirements.txt`` holds only what captioning needs, since it goes into a shared ComfyUI
environment; the ONNX export/runtime, the benchmarks, the Ray engine, the peer methods (mitigv) and the
lmms-eval plug-in install from their own files (mirrored as the ``onnx``, ``eval``, ``ray``, ``peers`` and
``lmms`` extras of pyproject.toml); ``requirements-runtime.txt`` (extra ``runtime``) is a torch-free
deployment's environment on its own. Every entry point that needs one calls ``require``
before importing it, so a missing package is one line naming the file, never an import traceback.
Imports nothing heavy (no torch): the torch-free runtime uses it too.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from .errors import MissingExtraError

ROOT = Path(__file__).resolve().parent.parent

# extra -> (its requirements file, the import names it provides)
EXTRAS = {
    "onnx": ("requirements-onnx.txt", ("onnx", "onnxscript", "onnx_ir", "onnxruntime")),
    "eval": ("requirements-eval.txt", ("nltk", "wn", "pycocotools", "lemminflect", "scipy")),
    "ray": ("requirements-ray.txt", ("ray", "pyarrow")),  # --engine ray (Ray Data needs pyarrow)
    "peers": ("requirements-peers.txt", ("mitigv",)),
    "lmms": ("requirements-lmms.txt", ("lmms_eval", "loguru", "sacrebleu", "evaluate", "pytablewriter")),
    # a torch-free deployment's whole environment (python -m export.run, OnnxVLM), not an addition to
    # requirements.txt: of its packages only onnxruntime is not in requirements.txt's closure
    "runtime": ("requirements-runtime.txt", ("onnxruntime",)),
}
# what an extra's file cannot say: a package installed first, without its own dependencies
_FIRST = {"lmms": "pip install --no-deps lmms-eval==0.7.3 && "}
# import name -> the name pip installs it by, where they differ
_PIP_NAMES = {"onnx_ir": "onnx-ir", "onnxruntime": "onnxruntime (or onnxruntime-gpu)", "lmms_eval": "lmms-eval"}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that fails to import, or a module set to None in sys.modules
        return False


def install_hint(extra: str) -> str:
    """``pip install -r <the extra's file>`` from a checkout (the ComfyUI pack), else the pip extra."""
    file = ROOT / EXTRAS[extra][0]
    if file.is_file():
        return f"{_FIRST.get(extra, '')}pip install -r {file}"
    return f'{_FIRST.get(extra, "")}pip install "scr-spatial-credit-redistribution[{extra}]"'


def require(extra: str, purpose: str, modules: Sequence[str] | None = None) -> None:
    """Raise ``MissingExtraError`` unless ``modules`` (default: all of ``extra``'s) are installed.

    purpose: what needs them, as the message's subject ("the ONNX export", "python -m scr_core eval").
    """
    wanted = EXTRAS[extra][1] if modules is None else modules
    missing = [name for name in wanted if not installed(name)]
    if missing:
        names = ", ".join(_PIP_NAMES.get(name, name) for name in missing)
        raise MissingExtraError(f"{purpose} needs {names}, not installed here: {install_hint(extra)}")
