"""The export dtypes, one table: what ``--dtype`` means for the weights and the activations, and how the
activations are spelled for numpy, in ``scr_config.json`` and for torch.

Why one table: the exporter loads the checkpoint in the activations' torch dtype, the graphs come out in
it, ``scr_config.json`` records it, the runtime feeds numpy arrays of it and the benchmark picks the export
that matches its own run; each read the same row. torch-free (the runtime reads it): torch spellings are
names (``getattr(torch, row.torch)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scr_core import ConfigError


@dataclass(frozen=True)
class ExportDtype:
    """One ``--dtype``: ``weights`` as stored (fp32, fp16, int4), ``activations`` as computed (fp32, fp16)."""

    name: str  # python -m export.onnx --dtype
    weights: str
    activations: str
    numpy: type  # the activations' numpy type (what the runtime feeds)
    json: str  # scr_config.json's model.dtype

    @property
    def torch(self) -> str:
        """The activations' torch dtype name (``SCRPipeline.from_pretrained(dtype=...)``, bench's ``--dtype``):
        torch spells them as ``scr_config.json`` does."""
        return self.json

    @property
    def quantized(self) -> bool:
        return self.weights == "int4"


EXPORT_DTYPES = {row.name: row for row in (
    ExportDtype("fp32", "fp32", "fp32", np.float32, "float32"),
    ExportDtype("fp16", "fp16", "fp16", np.float16, "float16"),
    ExportDtype("int4", "int4", "fp32", np.float32, "float32"),  # CPU: MatMulNBits, fp32 activations
    ExportDtype("int4-fp16", "int4", "fp16", np.float16, "float16"),  # CUDA: fp16 activations
)}
JSON_DTYPES = tuple(dict.fromkeys(row.json for row in EXPORT_DTYPES.values()))  # what model.dtype may say


def export_dtype(name: str) -> ExportDtype:
    """The row of ``--dtype name``, or one ``ConfigError`` naming the choices."""
    if name not in EXPORT_DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(EXPORT_DTYPES)} (got {name!r})")
    return EXPORT_DTYPES[name]


def for_activations(spelling: str, quantized: bool = False) -> ExportDtype | None:
    """The export whose activations are ``spelling`` (JSON/torch: ``float16``) with int4 weights or not;
    ``None`` for activations no export has (bfloat16)."""
    return next((row for row in EXPORT_DTYPES.values() if row.json == spelling and row.quantized == quantized), None)
