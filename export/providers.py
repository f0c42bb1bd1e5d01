"""Which onnxruntime this process has and where its sessions run: the wheel that provides the imported
``onnxruntime`` (``onnxruntime`` or ``onnxruntime-gpu``: both install the same package, so only one may be
installed) and the execution providers a session really gets (``auto``: CUDA when it loads, else CPU)."""

from __future__ import annotations

import logging
from pathlib import Path

from scr_core import ConfigError
from scr_core.extras import require

require("onnx", "the ONNX runtime (Load ONNX VLM, python -m export.run)", ("onnxruntime",))
import onnxruntime as ort  # noqa: E402  (either wheel: onnxruntime or onnxruntime-gpu)

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
WHEELS = ("onnxruntime", "onnxruntime-gpu")  # both install the `onnxruntime` package: one must be installed alone


def _installed_wheels():
    import importlib.metadata

    for name in WHEELS:
        try:
            yield name, importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pass


def describe_onnxruntime() -> str:
    """One line: the wheel whose files provide the imported ``onnxruntime`` and the providers it has."""
    here = Path(ort.__file__).resolve()
    wheel = next((f"{name} {dist.version}" for name, dist in _installed_wheels()
                  if Path(dist.locate_file("onnxruntime/__init__.py")).resolve() == here),
                 f"onnxruntime {ort.__version__}")
    return f"{wheel}, providers {', '.join(ort.get_available_providers())}"


def warn_if_both_wheels() -> None:
    places = [Path(dist.locate_file("")).resolve() for _, dist in _installed_wheels()]
    if len(places) == 2 and places[0] == places[1]:
        log.warning("both onnxruntime and onnxruntime-gpu are installed in %s; they overwrite each other's files: "
                    "pip uninstall -y onnxruntime onnxruntime-gpu, then install one of them", places[0])


def resolve_providers(provider: str, probe: Path | None = None) -> list[str]:
    """``auto``: CUDA when it loads on this machine, else CPU; ``cpu`` / ``cuda`` explicitly.

    onnxruntime-gpu lists CUDA as available even without a GPU or CUDA libraries, so ``auto`` and
    ``cuda`` open a session on ``probe`` (a tiny graph) and look at what it really got; the probe's
    failure log is silenced for ``auto``, where falling back to the CPU is the expected outcome.
    """
    if provider not in ("auto", *PROVIDERS):
        raise ConfigError(f"provider must be auto, cpu or cuda (got {provider!r})")
    if provider == "cpu":
        return PROVIDERS["cpu"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        if provider == "cuda":
            raise ConfigError("this onnxruntime has no CUDA execution provider; install onnxruntime-gpu "
                              "(and uninstall the CPU onnxruntime wheel: both provide the same package)")
        return PROVIDERS["cpu"]
    if probe is None:
        return PROVIDERS["cuda"]
    if provider == "auto":
        ort.set_default_logger_severity(4)
    try:
        got = ort.InferenceSession(str(probe), providers=PROVIDERS["cuda"]).get_providers()
    finally:
        ort.set_default_logger_severity(2)
    if "CUDAExecutionProvider" in got:
        return PROVIDERS["cuda"]
    if provider == "cuda":
        raise ConfigError("the CUDA execution provider did not load (no GPU, or CUDA/cuDNN libraries missing: "
                          "onnxruntime-gpu needs the CUDA and cuDNN versions its release notes name); "
                          "use --provider cpu")
    return PROVIDERS["cpu"]
