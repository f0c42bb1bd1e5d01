"""Issue item 6 (later): ONNX Runtime vs PyTorch, the hook the ORT measurement plugs into.

Not measured yet: the exporter (``export/``) is being built in parallel and this benchmark
does not import it until it has landed. When it has, ``run`` should export the benchmark's
model once, run the exported graphs with the same plan (CPU execution provider; CUDA when a
GPU is lent), interleaved with the PyTorch pipeline, and return the fields the report
already renders: ``{"status": "measured", "provider": ..., "tokens_per_s": {"onnxruntime":
stats, "pytorch": stats}, "ratio": stats, "session_memory_bytes": int}``.
"""

from __future__ import annotations

from .context import Context

PENDING = {"status": "pending",
           "reason": "the ONNX exporter (export/) has not landed; ORT vs PyTorch tokens/s is measured after it"}


def run(ctx: Context) -> dict:
    ctx.log("onnx runtime: pending (" + PENDING["reason"] + ")")
    return dict(PENDING)
