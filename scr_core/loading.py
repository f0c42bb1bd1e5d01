"""How a model is loaded, in one place: ``LoadOptions`` (validated before any weight is read).

The CLI flags, the ComfyUI loader's widgets and ``SCRPipeline.from_pretrained``'s keyword
arguments are the fields of this one dataclass; a bad value is reported before the model loads.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, overload

from .env import hub_offline
from .errors import ConfigError, ModelLoadError

DTYPES = {"auto": "auto", "float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
QUANTIZATIONS = ("8bit", "4bit")
BITSANDBYTES_MIN = "0.46.1"  # the first release with CPU kernels; transformers 5 asks for it too
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class LoadOptions:
    """Options of ``SCRPipeline.from_pretrained`` (also its keyword arguments).

    dtype: None (float32 on CPU, the checkpoint's own dtype elsewhere), "auto" (the
        checkpoint's), "float32"/"fp32", "float16"/"fp16", "bfloat16"/"bf16", or a torch dtype.
    device: "cpu", "cuda", "cuda:N", "mps", or "auto" (CUDA, then MPS, then CPU).
    attn_implementation: how transformers runs attention ("sdpa", "eager", "flash_attention_2", ...);
        the diagnostic pass wraps whichever is chosen and reads its probabilities itself.
    local_files_only: never contact the hub (also implied by ``HF_HUB_OFFLINE=1``).
    processor_kwargs: passed to ``AutoProcessor.from_pretrained`` as they are.
    adapter_options: the family's declared options (``Adapter.options``, e.g. ``max_tiles`` for
        InternVL, ``max_pixels`` for Qwen2-VL), checked against the family before the weights load.
    quantization: None, "8bit" (LLM.int8()) or "4bit" (NF4, double quantization, computing in ``dtype``):
        the decoder's linear layers through bitsandbytes; the adapter's ``unquantized_modules``
        (vision tower, projector, LM head) stay in ``dtype``.
    trust_remote_code: run the Python modeling code a checkpoint ships with it (Qwen-VL v1, InternVL2
        before the ``-hf`` conversions). Off unless the user turns it on: it executes that code here.
    """

    dtype: object = None
    device: str = "cpu"
    attn_implementation: str = "sdpa"
    local_files_only: bool = False
    processor_kwargs: dict = field(default_factory=dict)
    adapter_options: dict = field(default_factory=dict)
    trust_remote_code: bool = False
    quantization: str | None = None

    def __post_init__(self) -> None:
        quantization = self.quantization
        if isinstance(quantization, str) and quantization.lower() in ("", "none"):
            quantization = None
        if quantization is not None and quantization not in QUANTIZATIONS:
            raise ConfigError(f"quantization must be none, 8bit or 4bit (got {quantization!r})")
        object.__setattr__(self, "quantization", quantization)
        if not isinstance(self.trust_remote_code, bool):
            raise ConfigError(f"trust_remote_code must be True or False (got {self.trust_remote_code!r})")
        dtype = self.dtype
        if isinstance(dtype, str):
            if dtype.lower() not in DTYPES:
                raise ConfigError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
            object.__setattr__(self, "dtype", DTYPES[dtype.lower()])
        elif dtype is not None and not type(dtype).__module__.startswith("torch"):
            raise ConfigError(f"dtype must be a name (auto, float32, float16, bfloat16) or a torch dtype, "
                              f"got {dtype!r}")
        device = str(self.device)
        if not DEVICE_PATTERN.match(device):
            raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto")
        object.__setattr__(self, "device", device)
        if self.quantization is not None and device == "mps":
            raise ConfigError(f"quantization={self.quantization!r} runs on cpu or cuda (bitsandbytes), not on 'mps'")
        if not isinstance(self.attn_implementation, str) or not self.attn_implementation:
            raise ConfigError(f"attn_implementation must be a name such as 'sdpa' (got {self.attn_implementation!r})")
        for name in ("processor_kwargs", "adapter_options"):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, {})
            elif not isinstance(value, dict):
                raise ConfigError(f"{name} must be a dict (got {type(value).__name__})")

    @property
    def offline(self) -> bool:
        return self.local_files_only or hub_offline()

    def resolved_device(self) -> str:
        """The device to load on; a ``ModelLoadError`` when it is not there (checked before loading)."""
        import torch

        device = self.device
        if device == "auto":
            if torch.cuda.is_available():
                return "cuda"
            mps = getattr(torch.backends, "mps", None)
            return "mps" if mps is not None and mps.is_available() else "cpu"
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ModelLoadError(f"device {device!r} asked for, but this machine has no usable CUDA GPU "
                                     "(or torch was installed without CUDA); use --device cpu")
            index = int(device.partition(":")[2] or 0)
            if index >= torch.cuda.device_count():
                raise ModelLoadError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s)")
        if device == "mps":
            mps = getattr(torch.backends, "mps", None)
            if mps is None or not mps.is_available():
                raise ModelLoadError("device 'mps' asked for, but Apple's MPS backend is not available here")
        return device

    def resolved_dtype(self, device: str):
        """The ``dtype`` argument for transformers: a torch dtype or "auto"."""
        import torch

        if self.dtype is None:
            return torch.float32 if device == "cpu" else "auto"
        if isinstance(self.dtype, str):
            return self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
        return self.dtype


def checkpoint_source(source: str | Path, offline: bool) -> str:
    """A local folder (checked to hold ``config.json``) or a hub id; fails at once for a missing folder.

    A name that cannot be a hub id (a path-like name, a bare name without ``owner/``) or any
    name while offline must be a local folder, so a typo costs no network retries.
    """
    text = str(source)
    if not text.strip():
        raise ModelLoadError("no model given: pass a checkpoint folder or a hub id (owner/name)")
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; pass the checkpoint folder (the one with config.json)")
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} has no config.json: not a transformers checkpoint folder")
        return str(path)
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") != 1 or "\\" in text
    if looks_like_path or offline:
        why = " (offline: hub ids cannot be downloaded)" if offline and not looks_like_path else ""
        raise ModelLoadError(f"model folder not found: {path}{why}")
    return text


@overload
def checkpoint_config(folder: str | Path, required: Literal[True]) -> dict: ...
@overload
def checkpoint_config(folder: str | Path, required: bool = False) -> dict | None: ...


def checkpoint_config(folder: str | Path, required: bool = False) -> dict | None:
    """A local checkpoint's ``config.json``, parsed (no weights, no transformers, no torch): the one reader
    of it before a model loads (its depth, its declared quantization, the exporter's checks).

    ``None`` when the folder holds none, or it is unreadable or not a JSON object; with ``required``, a
    ``ModelLoadError`` saying which instead.
    """
    import json

    path = Path(folder) / "config.json"
    problem: str | None
    config, problem = None, f"{folder} is not a checkpoint folder (no config.json); pass the checkpoint folder"
    if path.is_file():
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            problem = f"cannot read {path}: {err}"
        else:
            problem = None if isinstance(config, dict) else f"{path} is not a JSON object"
    if problem is None:
        return config
    if required:
        raise ModelLoadError(problem)
    return None


def decoder_depth(folder: str | Path) -> int | None:
    """Decoder layers of a local checkpoint, read from its ``config.json`` alone (no weights, no
    transformers), so explicit layer ranges can be checked before the model loads."""
    section = decoder_section(checkpoint_config(folder) or {})
    return section["num_hidden_layers"] if section else None


def decoder_section(config: dict) -> dict | None:
    """The part of a parsed ``config.json`` that describes the decoder (``text_config``, ``llm_config``
    or the top level: the first with a positive ``num_hidden_layers``)."""
    for section in (config.get("text_config") or {}, config.get("llm_config") or {}, config):
        depth = section.get("num_hidden_layers") if isinstance(section, dict) else None
        if isinstance(depth, int) and not isinstance(depth, bool) and depth > 0:
            return section
    return None


REMOTE_CODE_HINT = (
    "this checkpoint ships its own modeling code (its config.json names Python files in the folder); "
    "loading it runs that code on this machine with your permissions. Turn it on only for a checkpoint "
    "whose source you trust: SCRPipeline.from_pretrained(..., trust_remote_code=True), CLI --trust-remote-code"
)


def needs_remote_code(error: Exception) -> bool:
    """Whether transformers refused to load because the checkpoint needs ``trust_remote_code``."""
    return "trust_remote_code" in str(error)


def bitsandbytes_missing() -> str | None:
    """Why bitsandbytes cannot quantize here (``None`` when it can); imports nothing."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return ("bitsandbytes is not installed: pip install bitsandbytes (wheels for Linux and Windows x86_64; "
                "elsewhere quantization is unavailable)")
    version = importlib.metadata.version("bitsandbytes")
    if tuple(int(p) for p in re.findall(r"\d+", version)[:3]) < tuple(int(p) for p in BITSANDBYTES_MIN.split(".")):
        return f"bitsandbytes {version} is too old: pip install 'bitsandbytes>={BITSANDBYTES_MIN}'"
    return None


def bitsandbytes_config(options: LoadOptions, device: str, dtype, unquantized: tuple[str, ...]):
    """transformers' ``BitsAndBytesConfig`` for ``options.quantization`` (``None`` without one).

    Checked before any weight is read: the device, the package, and the modules that stay unquantized.
    """
    import torch

    if options.quantization is None:
        return None
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ModelLoadError(f"quantization={options.quantization!r} runs on cpu or cuda, not on {device!r}")
    missing = bitsandbytes_missing()
    if missing:
        raise ModelLoadError(f"quantization={options.quantization!r} needs {missing}")
    if not unquantized:
        raise ConfigError("this adapter names no unquantized modules (vision tower, projector, LM head); "
                          "quantization needs a registered family, or GenericAdapter(..., unquantized_modules=(...))")
    from transformers import BitsAndBytesConfig

    _quiet_int8_casts()
    compute = dtype if isinstance(dtype, torch.dtype) else torch.float16
    if options.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(unquantized))
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute, llm_int8_skip_modules=list(unquantized))


def model_quantization(model) -> str | None:
    """"8bit", "4bit" or ``None``: how a loaded model's weights are stored."""
    if getattr(model, "is_loaded_in_8bit", False):
        return "8bit"
    if getattr(model, "is_loaded_in_4bit", False):
        return "4bit"
    return None


def checkpoint_quantization(folder: str | Path) -> str | None:
    """The quantization a saved checkpoint's ``config.json`` declares (``None``: plain weights)."""
    declared = (checkpoint_config(folder) or {}).get("quantization_config")
    if not isinstance(declared, dict):
        return None
    if declared.get("load_in_8bit") or declared.get("_load_in_8bit"):
        return "8bit"
    if declared.get("load_in_4bit") or declared.get("_load_in_4bit"):
        return "4bit"
    return str(declared.get("quant_method") or "quantized")


class _QuietInt8Casts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


def _quiet_int8_casts() -> None:
    """LLM.int8() logs one warning per matmul when the input is not float16 (every token, every layer)."""
    target = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _QuietInt8Casts) for f in target.filters):
        target.addFilter(_QuietInt8Casts())
