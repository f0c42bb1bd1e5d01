"""One benchmark run: machine, model, then each section in turn, into one JSON-ready document.

The sections are a registry, so the ONNX Runtime comparison is one entry
whose ``run`` changes when the exporter lands; nothing else has to.
"""

from __future__ import annotations

import time
import warnings

from . import decode_hooks, diagnostic, end_to_end, growth, machine, onnx_runtime, scale_out, throughput, video
from .context import Context
from .settings import SECTIONS, Settings

SCHEMA_VERSION = 1
RUNNERS = {"end_to_end": end_to_end.run, "diagnostic": diagnostic.run, "decode_hooks": decode_hooks.run,
           "growth": growth.run, "throughput": throughput.run, "onnx_runtime": onnx_runtime.run, "video": video.run,
           "scale_out": scale_out.run}
assert tuple(RUNNERS) == SECTIONS


def run(settings: Settings) -> dict:
    import torch

    started = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    ctx = Context(settings)
    doc = {"schema": SCHEMA_VERSION, "settings": settings.to_dict(), "machine": machine.describe(settings.device)}
    ctx.log(f"bench ({settings.mode}): {doc['machine']['cpu']}, {doc['machine']['torch_threads']} torch threads, "
            f"torch {doc['machine']['torch']}, transformers {doc['machine']['transformers']}, device {settings.device}")
    ctx.load()
    doc["model"] = ctx.model_info
    ctx.log(f"model: {ctx.model_info['source']} {ctx.model_info['family']}, {ctx.model_info['depth']} layers, "
            f"{ctx.model_info['visual_tokens']} visual tokens, {ctx.model_info['parameters'] / 1e6:.1f} M parameters")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="only .* sources fit")  # K clamped on small grids: expected
        for name in SECTIONS:
            if name in settings.sections:
                doc[name] = RUNNERS[name](ctx)
    doc["machine"]["load_average_end"] = machine.load_average()
    doc["duration_s"] = round(time.perf_counter() - started, 1)
    return doc
