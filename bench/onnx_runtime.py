"""The exported ONNX graphs under onnxruntime against the PyTorch pipeline.

The benchmark's model is saved as a checkpoint (or ``--model`` is used as it is), exported
once with ``python -m export.onnx``'s settings equal to the measured SCR settings, and loaded
into ``export.runtime.OnnxVLM`` (CPU execution provider; CUDA on a GPU) in this process, with
as many intra-op threads as torch has. Both sides then generate from their own prepared batch
with **the same plans** (PyTorch's diagnosis), forced to the same length, interleaved: the
comparison is prefill with SCR plus greedy decode, which is what a deployment runs per caption.
Memory comes from ``python -m export.measure`` (fresh torch-free processes): resident memory
of the SCR sessions (head + tail + select, every weight once) against a plain one-graph export.
The same settings are also exported with int4 decoder weights (``--dtype int4``, or ``int4-fp16``
for an fp16 run) and timed in the same rounds: the int4 rows (``python -m bench.onnx_int4`` adds
how close int4 stays to fp32).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .context import Context, check_length
from .timing import column, interleave, paired, stats

ROOT = Path(__file__).resolve().parent.parent


def run(ctx: Context) -> dict:
    from export.dtypes import for_activations

    s = ctx.settings
    plain, int4 = for_activations(s.dtype), for_activations(s.dtype, quantized=True)  # the run's activations
    if plain is None:
        return {"status": "skipped", "reason": f"the exporter writes fp32 or fp16 graphs, not {s.dtype}"}
    with tempfile.TemporaryDirectory(prefix="scr-bench-onnx-") as tmp:
        checkpoint, folder = export_checkpoint(ctx.pipe, ctx.config(), s.model, plain.name, Path(tmp), ctx.log)
        (Path(tmp) / "int4").mkdir()
        _, int4_folder = export_checkpoint(ctx.pipe, ctx.config(), str(checkpoint), int4.name, Path(tmp) / "int4",
                                           ctx.log)
        return _measure(ctx, checkpoint, folder, int4_folder)


def export_checkpoint(pipe, cfg, model: str | None, dtype: str, tmp: Path, log,
                      opset: int | None = None) -> tuple[Path, Path]:
    """(checkpoint folder, exported folder): ``model`` as it is, or ``pipe``'s model saved under ``tmp``,
    exported with the SCR settings ``cfg`` (K, λ, diagnostic and hook layers) in ``dtype`` (fp32/fp16)
    at ``opset`` (default: the exporter's)."""
    import time

    from export.exporter import DEFAULT_OPSET, ExportOptions, export

    checkpoint = Path(model) if model else tmp / "checkpoint"
    if not model:
        pipe.model.save_pretrained(checkpoint)
        pipe.processor.save_pretrained(checkpoint)
    start = time.perf_counter()
    folder = export(ExportOptions(model=checkpoint, out=tmp / "onnx", k=cfg.k, lam=cfg.lam,
                                  diag_layers=tuple(cfg.diag_layers), hook_layers=tuple(cfg.hook_layers), dtype=dtype,
                                  opset=opset or DEFAULT_OPSET))
    log(f"onnx runtime: exported in {time.perf_counter() - start:.1f} s")
    return checkpoint, Path(folder)


def _measure(ctx: Context, checkpoint: Path, folder: Path, int4: Path) -> dict:
    import torch

    from export.runtime import OnnxVLM

    s, pipe = ctx.settings, ctx.pipe
    provider = "cuda" if ctx.device.startswith("cuda") else "cpu"
    threads = torch.get_num_threads()
    vlm = OnnxVLM(folder, provider=provider, threads=threads)
    vlm_int4 = OnnxVLM(int4, provider=provider, threads=threads)
    n = s.hook_tokens
    cells = []
    for batch in s.batches:
        images = ctx.images(batch)
        prepared, onnx_batch, int4_batch = pipe.prepare(images), vlm.prepare(images), vlm_int4.prepare(images)
        plans = [d.plan for d in pipe.diagnose(prepared, config=ctx.config())]

        rounds = forced_decode(pipe, prepared, plans, {"onnxruntime": (vlm, onnx_batch),
                                                       "onnxruntime_int4": (vlm_int4, int4_batch)},
                               n, s.repeats, s.warmup, ctx.device)
        decode = {name: column(r, "decode_ms_per_token") for name, r in rounds.items()}
        cell = {"batch": batch, "new_tokens": n,
                "ms": {name: stats(column(r)) for name, r in rounds.items()},
                "prefill_ms": {name: stats(column(r, "prefill_ms")) for name, r in rounds.items()},
                "decode_tokens_per_s": {name: stats(batch * 1000 / v for v in values)
                                        for name, values in decode.items()},
                # tokens/s of ORT over PyTorch's = PyTorch's ms per token over ORT's, per round
                "ratio": paired(decode["pytorch"], decode["onnxruntime"], lambda a, b: a / b),
                "ratio_int4": paired(decode["pytorch"], decode["onnxruntime_int4"], lambda a, b: a / b)}
        cells.append(cell)
        ctx.log(f"onnx runtime, batch {batch}: {cell['decode_tokens_per_s']['onnxruntime']['median']:.1f} tokens/s "
                f"vs PyTorch {cell['decode_tokens_per_s']['pytorch']['median']:.1f} (x{cell['ratio']['median']:.3f})")
    memory = _memory(ctx, checkpoint, folder, provider)
    memory["disk_mib"]["int4_decoder"] = round(decoder_bytes(int4) / 2**20, 1)
    return {"status": "measured", "provider": vlm.providers[0], "threads": threads,
            "opset": vlm.config.export.opset, "cells": cells, "int4": vlm_int4.config.model.quantization.to_json(),
            "ratio": stats(c["ratio"]["median"] for c in cells), "memory": memory}


def forced_decode(pipe, prepared, plans, runners: dict, tokens: int, repeats: int, warmup: int, device: str,
                  torch_name: str = "pytorch") -> dict:
    """Interleaved rounds of PyTorch's ``generate`` (as ``torch_name``) and of each ``name: (OnnxVLM, its
    prepared batch)``, all at ``tokens`` forced new tokens with the same ``plans``: ``{name: rounds}``."""

    def variant(call, name):
        def run():
            results = call(scr=plans, max_new_tokens=tokens, min_new_tokens=tokens)
            check_length(results, tokens, name)
            t = results[0].timings
            return {"prefill_ms": t.prefill_ms, "decode_ms_per_token": t.decode_ms_per_token}

        return run

    variants = {torch_name: variant(lambda **kw: pipe.generate(prepared, **kw), "PyTorch")}
    for name, (vlm, batch) in runners.items():
        variants[name] = variant(lambda vlm=vlm, batch=batch, **kw: vlm.generate(batch, **kw), name)
    return interleave(variants, repeats, warmup, device)


def decoder_bytes(folder: Path) -> int:
    """The decoder graphs' bytes on disk (head and tail, with their external-data files)."""
    return sum(f.stat().st_size for f in Path(folder).glob("decoder_*"))


def _memory(ctx: Context, checkpoint: Path, folder: Path, provider: str) -> dict:
    """``python -m export.measure``: resident memory of the SCR sessions and of a plain export, in MiB."""
    done = subprocess.run([sys.executable, "-m", "export.measure", "--model", str(checkpoint), "--onnx", str(folder),
                           "--tokens", str(min(ctx.settings.hook_tokens, 16)), "--provider", provider],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError("python -m export.measure failed: " + done.stderr.strip().splitlines()[-1])
    report = json.loads(done.stdout)
    weights = sum(p.numel() * p.element_size() for p in ctx.pipe.model.parameters())
    return {"method": "VmRSS after loading minus after importing, in a torch-free process (export.measure)",
            "torch_weights_mib": round(weights / 2**20, 1),
            "disk_mib": report["disk_mib"],
            **{f"{kind}_sessions_mib": round(report[kind]["rss_loaded_mib"] - report[kind]["rss_import_mib"], 1)
               for kind in ("scr", "plain")},
            **{f"{kind}_peak_rss_mib": report[kind]["peak_rss_mib"] for kind in ("scr", "plain")}}
