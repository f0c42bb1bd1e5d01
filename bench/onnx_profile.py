"""Where onnxruntime spends a caption's time, by operator type, prefill and decode apart.

    python -m bench.onnx_profile [--batch 4] [--tokens 32] [--quick] [--threads N]

The benchmark's CPU model (or ``--quick``'s tiny one) is exported as ``python -m bench`` does
and captioned once with onnxruntime's own profiler on the decoder sessions (head and tail).
Why: the ONNX Runtime part of the benchmark says *how fast*; this says *why*, e.g. whether the
exported attention (matrix products and a softmax over the whole score matrix) or the KV-cache
copies dominate where onnxruntime trails PyTorch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from . import inputs, settings, shapes


def profile(batch: int, tokens: int, quick: bool, threads: int | None, opset: int | None = None) -> dict:
    import torch

    from scr_core import SCRConfig

    from .onnx_runtime import export_checkpoint

    plan = settings.make(quick, "cpu")
    if threads:
        torch.set_num_threads(threads)
    pipe = shapes.build(plan.shape, "cpu", torch.float32, plan.seed)
    cfg = pipe.resolve(SCRConfig(k=plan.k))
    images = inputs.images(batch, plan.shape.image, plan.seed)
    with tempfile.TemporaryDirectory(prefix="scr-onnx-profile-") as tmp:
        from export.runtime import OnnxVLM

        _, folder = export_checkpoint(pipe, cfg, None, "fp32", Path(tmp), lambda m: print(m, file=sys.stderr),
                                      opset=opset)
        vlm = OnnxVLM(folder, provider="cpu", threads=torch.get_num_threads())
        onnx_batch = vlm.prepare(images)
        plans = [d.plan for d in pipe.diagnose(pipe.prepare(images), config=cfg)]
        vlm.generate(onnx_batch, scr=plans, max_new_tokens=2, min_new_tokens=2)  # warm-up
        options = vlm.sessions.options
        options.enable_profiling = True
        for name in ("head", "tail"):  # the decoder's sessions again, with onnxruntime's profiler on
            options.profile_file_prefix = str(Path(tmp) / name)
            vlm.sessions.open(name, options=options)
        vlm.generate(onnx_batch, scr=plans, max_new_tokens=1, min_new_tokens=1)  # first runs of the new sessions
        result = vlm.generate(onnx_batch, scr=plans, max_new_tokens=tokens, min_new_tokens=tokens)[0]
        traces = [json.loads(Path(vlm.sessions[name].end_profiling()).read_text()) for name in ("head", "tail")]
    return {"batch": batch, "tokens": tokens, "threads": torch.get_num_threads(), "shape": plan.shape.name,
            "opset": vlm.config.export.opset,
            "prefill_ms": result.timings.prefill_ms, "decode_ms_per_token": result.timings.decode_ms_per_token,
            **split_by_run(traces, skip_runs=1)}


def split_by_run(traces: list[list[dict]], skip_runs: int) -> dict:
    """Milliseconds per operator type in the prefill (first timed run) and per decode step (the rest)."""
    prefill, decode = defaultdict(float), defaultdict(float)
    steps = 0
    for events in traces:
        runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[skip_runs:]
        steps = max(steps, len(runs) - 1)
        for e in events:
            if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
                continue
            index = next((i for i, (start, end) in enumerate(runs) if start <= e["ts"] <= end), None)
            if index is None:
                continue
            (prefill if index == 0 else decode)[e["args"]["op_name"]] += e["dur"] / 1000
    per_step = {op: ms / max(steps, 1) for op, ms in decode.items()}
    return {"prefill_ms_by_op": _top(prefill), "decode_ms_per_step_by_op": _top(per_step)}


def _top(times: dict) -> dict:
    return {op: round(ms, 3) for op, ms in sorted(times.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.onnx_profile", description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--quick", action="store_true", help="the tiny model (checks that it runs)")
    p.add_argument("--threads", type=int)
    p.add_argument("--opset", type=int, help="the export's opset (default: the exporter's; 18 = decomposed attention)")
    args = p.parse_args(argv)
    report = profile(args.batch, args.tokens, args.quick, args.threads, args.opset)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
