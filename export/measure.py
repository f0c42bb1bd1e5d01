"""Resident memory and decode speed of the SCR runtime against a plain (vanilla) export.

    python -m export.measure --model CHECKPOINT --onnx SCR_FOLDER [--tokens 32]

The plain export is the same checkpoint's decoder as one graph with no ``ai.scr`` nodes and no
diagnostic output (written once to ``SCR_FOLDER.plain``), run by the same greedy loop. Each
variant is loaded in a fresh torch-free process, so resident memory (``VmRSS`` after loading
and after a caption, ``VmHWM`` peak) is that variant's alone. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _memory_mib() -> dict:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def _child(kind: str, folder: Path, image: Path, tokens: int, provider: str) -> dict:
    """Load one variant, caption ``image`` (``tokens`` forced new tokens), report memory and timings."""
    from .decoder import GreedyDecoder
    from .folder_config import DecoderGraph
    from .runtime import OnnxVLM

    baseline = _memory_mib()
    import transformers  # noqa: F401  (the processor's import cost, shared by both variants, reported apart)

    imported = _memory_mib()
    if kind == "plain":  # the single decoder graph instead of head, tail and select; same runner and loop
        plain = folder.with_suffix(".plain")
        vlm = OnnxVLM(folder, provider=provider, graphs=("vision", "embedding"))
        graph = DecoderGraph.from_record(json.loads((plain / "decoder.json").read_text()), plain / "decoder.json")
        vlm.sessions.open("decoder", plain / graph.filename)
        vlm.decoder = GreedyDecoder(vlm.sessions, vlm.config.model, parts=[("decoder", graph)])
        scr = None
    else:
        vlm = OnnxVLM(folder, provider=provider)
        scr = vlm.settings
    loaded = _memory_mib()
    vlm.caption(image, scr=scr, max_new_tokens=2, min_new_tokens=2)  # warm-up: first runs allocate, pick kernels
    start = time.perf_counter()
    result = vlm.caption(image, scr=scr, max_new_tokens=tokens, min_new_tokens=tokens)[0]  # exactly ``tokens``
    total = (time.perf_counter() - start) * 1000
    return {"variant": kind, "provider": vlm.providers[0], "rss_before_load_mib": baseline["VmRSS"],
            "rss_import_mib": imported["VmRSS"],
            "rss_loaded_mib": loaded["VmRSS"], "rss_after_caption_mib": _memory_mib()["VmRSS"],
            "peak_rss_mib": _memory_mib()["VmHWM"], "caption_ms": round(total, 1),
            "timings": result.timings.to_dict()}


def _export_plain(model: Path, folder: Path) -> None:
    """Write the single-graph vanilla decoder beside the SCR folder (once)."""
    import torch

    from scr_core import SCRConfig, SCRPipeline

    from .families import family_for
    from .folder_config import FolderConfig
    from .graph_export import GraphExporter

    plain = folder.with_suffix(".plain")
    if (plain / "decoder.json").is_file():
        return
    config = FolderConfig.from_json(folder)
    pipe = SCRPipeline.from_pretrained(model, dtype=config.model.export_dtype.torch, device="cpu",
                                       attn_implementation="sdpa")
    cfg = pipe.resolve(SCRConfig(diag_layers=config.scr.diag_layers, hook_layers=config.scr.hook_layers))
    staging = plain.with_suffix(".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    with torch.no_grad():
        graph = GraphExporter(pipe, family_for(pipe), cfg, config.export.opset).full_decoder(
            staging / "decoder.onnx")
    (staging / "decoder.json").write_text(json.dumps(graph.to_json()))
    staging.rename(plain)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.measure", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="the checkpoint the SCR folder was exported from")
    p.add_argument("--onnx", type=Path, required=True, help="folder written by python -m export.onnx")
    p.add_argument("--image", type=Path, default=None, help="image to caption (default: a generated one)")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--provider", default="cpu")
    p.add_argument("--child", choices=("scr", "plain"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from scr_core.extras import require

    require("onnx", "python -m export.measure")
    if args.child:
        from .notorch import hide_torch

        hide_torch()  # as python -m export.run does: the deployable, torch-free process
        print(json.dumps(_child(args.child, args.onnx, args.image, args.tokens, args.provider)))
        return 0
    image = args.image
    if image is None:
        from PIL import Image

        image = args.onnx.with_suffix(".png")
        rng = np.random.default_rng(0)
        Image.fromarray((rng.random((224, 224, 3)) * 255).astype(np.uint8)).save(image)
    _export_plain(args.model, args.onnx)
    report = {"model": str(args.model), "tokens": args.tokens,
              "disk_mib": {name: round(sum(f.stat().st_size for f in folder.glob(pattern)) / 2**20, 1)
                           for name, folder, pattern in (("scr_decoder", args.onnx, "decoder_*"),
                                                         ("plain_decoder", args.onnx.with_suffix(".plain"),
                                                          "decoder.onnx*"))}}
    for kind in ("plain", "scr"):
        done = subprocess.run([sys.executable, "-m", "export.measure", "--child", kind, "--model", str(args.model),
                               "--onnx", str(args.onnx), "--image", str(image), "--tokens", str(args.tokens),
                               "--provider", args.provider], capture_output=True, text=True, cwd=ROOT, check=True)
        report[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
