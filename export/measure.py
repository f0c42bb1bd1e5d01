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
    import onnxruntime as ort

    from .runtime import OnnxVLM

    baseline = _memory_mib()
    import transformers  # noqa: F401  (the processor's import cost, shared by both variants, reported apart)

    imported = _memory_mib()
    if kind == "plain":  # the single decoder graph instead of head, tail and select; same loop otherwise
        vlm = OnnxVLM(folder, provider=provider, graphs=("vision", "embedding"))
        spec = json.loads((folder.with_suffix(".plain") / "decoder.json").read_text())
        vlm.sessions["decoder"] = ort.InferenceSession(str(folder.with_suffix(".plain") / "decoder.onnx"),
                                                       vlm.session_options, providers=vlm.providers)
        vlm.eos = set()  # decode exactly ``tokens`` tokens in both variants
        vlm.tail_layers = range(spec["layers"][0], spec["layers"][1] + 1)
        loaded = _memory_mib()
        _plain_caption(vlm, image, 2)  # warm-up, as for the SCR variant
        start = time.perf_counter()
        result = _plain_caption(vlm, image, tokens)
    else:
        vlm = OnnxVLM(folder, provider=provider)
        vlm.eos = set()
        loaded = _memory_mib()
        vlm.caption(image, max_new_tokens=2)  # warm-up: first runs allocate and pick kernels
        start = time.perf_counter()
        result = vlm.caption(image, max_new_tokens=tokens)[0]
    total = (time.perf_counter() - start) * 1000
    return {"variant": kind, "provider": vlm.providers[0], "rss_before_load_mib": baseline["VmRSS"],
            "rss_import_mib": imported["VmRSS"],
            "rss_loaded_mib": loaded["VmRSS"], "rss_after_caption_mib": _memory_mib()["VmRSS"],
            "peak_rss_mib": _memory_mib()["VmHWM"], "caption_ms": round(total, 1),
            "timings": result.timings.to_dict()}


def _plain_caption(vlm, image: Path, tokens: int):
    """The vanilla greedy loop on the single decoder graph (what an export without SCR runs)."""
    from scr_core import GenerationResult, Timings

    batch = vlm.prepare(image, None)
    mask, positions = batch.attention_mask, batch.position_ids
    embeds, past, steps, out = vlm._embed(batch.input_ids, batch.features), None, [], []
    layers = vlm.tail_layers
    for step in range(tokens):
        start = time.perf_counter()
        result = vlm._run("decoder", vlm._step_inputs(embeds, mask, positions, past, layers, first="hidden_state"),
                          ["logits", *vlm._present_names(layers)])
        token = np.argmax(result["logits"].numpy()[:, -1], axis=-1).astype(np.int64)
        out.append(int(token[0]))
        past = result
        mask = np.concatenate([mask, np.ones((mask.shape[0], 1), np.int64)], axis=1)
        positions = vlm._next_positions(positions)
        embeds = vlm._embed(token[:, None], vlm._empty_features())
        steps.append((time.perf_counter() - start) * 1000)
    timings = Timings(batch.vision_ms, 0.0, steps[0], sum(steps[1:]) / max(1, len(steps) - 1), len(out))
    return GenerationResult("", tuple(out), None, None, timings)


def _export_plain(model: Path, folder: Path) -> None:
    """Write the single-graph vanilla decoder beside the SCR folder (once)."""
    import torch

    from scr_core import SCRConfig, SCRPipeline

    from .families import family_for
    from .folder_config import read_config
    from .graph_export import GraphExporter

    plain = folder.with_suffix(".plain")
    if (plain / "decoder.json").is_file():
        return
    config, _ = read_config(folder)
    dtype = config["model"]["dtype"]
    pipe = SCRPipeline.from_pretrained(model, dtype=dtype, device="cpu", attn_implementation="sdpa")
    cfg = pipe.resolve(SCRConfig(diag_layers=tuple(config["scr"]["diag_layers"]),
                                 hook_layers=tuple(config["scr"]["hook_layers"])))
    staging = plain.with_suffix(".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    with torch.no_grad():
        info = GraphExporter(pipe, family_for(pipe), cfg, config["export"]["opset"]).full_decoder(
            staging / "decoder.onnx")
    (staging / "decoder.json").write_text(json.dumps(info))
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
