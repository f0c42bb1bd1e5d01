"""An int4 export against the fp32 export of the same model: agreement, size on disk, decode speed.

    python -m bench.onnx_int4 [--model DIR] [--images 4] [--tokens 32] [--repeats 3] [--threads N] [--json PATH]
    python -m bench.onnx_int4 --report PATH     # the summary of a run's JSON again

Default: the benchmark's CPU model (``bench.shapes.LLAVA_15_CPU``: random weights, 32 layers of
width 256, 576 visual tokens) on bench's images; ``--model``: a checkpoint, e.g. the testbed
(``scr_core/testbed/checkpoint``, then on testbed scenes). Both exports are made by
``python -m export.onnx``'s code with the same SCR settings (fp32, and ``--dtype int4``: decoder
Linears in int4, LM head and vision tower kept). Over each image x prompt, each export runs its
own diagnosis and greedy caption, as a deployment would: the figures say how often int4 writes
the fp32 export's tokens and picks its plan. Speed: decode tokens/s at a forced length with the
same plans (PyTorch's), PyTorch fp32 against both exports, interleaved (``bench.timing``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from . import inputs, settings, shapes
from .timing import column, stats

PROMPTS = (None, "Is there a cat in the image?")  # the caption prompt, and a testbed question


def agreement(fp32, int4, images, prompts, tokens: int) -> dict:
    """How close ``int4``'s diagnosis and greedy caption stay to ``fp32``'s (two ``OnnxVLM``), per image x prompt."""
    rows = []
    for image in images:
        for prompt in prompts:
            a, b = fp32.diagnose(image, prompt)[0], int4.diagnose(image, prompt)[0]
            maps = [(np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel())
                    for x, y in zip(a.maps, b.maps)]
            sources = [(set(g.sources), set(h.sources)) for g, h in zip(a.plan.grids, b.plan.grids)]
            same, logits = [], []
            for vlm in (fp32, int4):  # the same plan: the first step's logits of each
                with vlm.decoder.record_logits() as steps:
                    same.append(vlm.generate(vlm.prepare(image, prompt), scr=[a.plan], max_new_tokens=1)[0].token_ids)
                logits.append(np.asarray(steps[0], np.float64).ravel())
            la, lb = logits
            ta = fp32.caption(image, prompt, max_new_tokens=tokens)[0].token_ids
            tb = int4.caption(image, prompt, max_new_tokens=tokens)[0].token_ids
            prefix = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))
            rows.append({
                "map_correlation": min(float(np.corrcoef(x, y)[0, 1]) for x, y in maps),
                "map_max_abs_diff_rel": max(float(np.abs(x - y).max() / max(np.abs(x).max(), 1e-30)) for x, y in maps),
                "plan_identical": a.plan == b.plan, "sources_identical": all(s == t for s, t in sources),
                "sources_jaccard": float(np.mean([len(s & t) / max(1, len(s | t)) for s, t in sources])),
                "logits_max_abs_diff_rel": float(np.abs(la - lb).max() / max(np.ptp(la), 1e-30)),
                "first_token_identical_same_plan": same[0] == same[1],
                "tokens_identical": ta == tb, "tokens": len(ta), "common_prefix": prefix,
                "prefix_share": prefix / max(1, len(ta))})
    n = len(rows)
    return {"captions": n, "prompts": [p or "(caption prompt)" for p in prompts], "max_new_tokens": tokens,
            "tokens_identical": sum(r["tokens_identical"] for r in rows) / n,
            "first_token_identical_same_plan": sum(r["first_token_identical_same_plan"] for r in rows) / n,
            "logits_max_abs_diff_rel": max(r["logits_max_abs_diff_rel"] for r in rows),
            "prefix_share_mean": float(np.mean([r["prefix_share"] for r in rows])),
            "plan_identical": sum(r["plan_identical"] for r in rows) / n,
            "sources_identical": sum(r["sources_identical"] for r in rows) / n,
            "sources_jaccard_mean": float(np.mean([r["sources_jaccard"] for r in rows])),
            "map_correlation_min": min(r["map_correlation"] for r in rows),
            "map_max_abs_diff_rel": max(r["map_max_abs_diff_rel"] for r in rows), "rows": rows}


def sensitivity(pipe, image, levels=(1e-3, 1e-2, 1e-1), seed: int = 0) -> dict:
    """How far the PyTorch model's next-token logits move (max |change| / their range) when Gaussian noise of
    ``level`` x each weight's std is added to every decoder Linear: a control that tells a model that
    amplifies any rounding (random weights) from one that does not, whatever int4 then does."""
    import torch

    linears = [m for m in pipe.adapter.language_model().modules() if isinstance(m, torch.nn.Linear)]
    saved = [m.weight.detach().clone() for m in linears]
    inputs_ = pipe.prepare([image]).inputs
    generator = torch.Generator().manual_seed(seed)

    def logits():
        with torch.no_grad():
            return pipe.model(**inputs_).logits[0, -1].double().numpy()

    base, moved = logits(), {}
    try:
        for level in levels:
            with torch.no_grad():
                for m, w in zip(linears, saved):
                    m.weight.copy_(w + torch.randn(w.shape, generator=generator) * w.std() * level)
            out = logits()
            moved[str(level)] = {"logits_max_abs_diff_rel": float(np.abs(out - base).max() / np.ptp(base)),
                                 "same_argmax": bool(out.argmax() == base.argmax())}
    finally:
        with torch.no_grad():
            for m, w in zip(linears, saved):
                m.weight.copy_(w)
    return moved


def decoder_mib(folder: Path) -> float:
    """The decoder graphs' bytes on disk (head and tail, with any external-data file), in MiB."""
    from .onnx_runtime import decoder_bytes

    return round(decoder_bytes(folder) / 2**20, 2)


def speed(pipe, vlms: dict, images, cfg, tokens: int, repeats: int) -> dict:
    """Median decode tokens/s of PyTorch and each ``OnnxVLM`` at ``tokens`` forced new tokens, same plans."""
    from .onnx_runtime import forced_decode

    prepared = pipe.prepare(images)
    plans = [d.plan for d in pipe.diagnose(prepared, config=cfg)]
    rounds = forced_decode(pipe, prepared, plans, {name: (vlm, vlm.prepare(images)) for name, vlm in vlms.items()},
                           tokens, repeats, 1, "cpu", torch_name="pytorch_fp32")
    return {"batch": len(images), "new_tokens": tokens, "repeats": repeats,
            "decode_tokens_per_s": {name: stats(len(images) * 1000 / v for v in column(r, "decode_ms_per_token"))
                                    for name, r in rounds.items()},
            "prefill_ms": {name: stats(column(r, "prefill_ms")) for name, r in rounds.items()}}


def measure(model: str | None, n_images: int, tokens: int, repeats: int, threads: int, k: int | None,
            log=lambda m: print(m, file=sys.stderr, flush=True)) -> dict:
    import onnxruntime
    import torch

    from export.runtime import OnnxVLM
    from scr_core import SCRConfig, SCRPipeline

    from .onnx_runtime import export_checkpoint

    torch.set_num_threads(threads)
    plan = settings.make(False, "cpu")
    if model:
        pipe = SCRPipeline.from_pretrained(model, dtype="float32", device="cpu")
        from scr_core.testbed.scenes import generate_scenes

        images = [s.image for s in generate_scenes(n_images, seed=2027)]  # unseen scenes (training used others)
        name = str(model)
    else:
        pipe = shapes.build(plan.shape, "cpu", torch.float32, plan.seed)
        images = inputs.images(n_images, plan.shape.image, plan.seed)
        name = plan.shape.name
    cfg = pipe.resolve(SCRConfig(k=k if k is not None else plan.k))
    control = sensitivity(pipe, images[0])
    with tempfile.TemporaryDirectory(prefix="scr-bench-int4-") as tmp:
        tmp = Path(tmp)
        (tmp / "fp32").mkdir()
        (tmp / "int4").mkdir()
        checkpoint, fp32_folder = export_checkpoint(pipe, cfg, model, "fp32", tmp / "fp32", log)
        _, int4_folder = export_checkpoint(pipe, cfg, str(checkpoint), "int4", tmp / "int4", log)
        vlms = {name: OnnxVLM(folder, provider="cpu", threads=threads)
                for name, folder in (("onnx_fp32", fp32_folder), ("onnx_int4", int4_folder))}
        log("comparing the int4 export's diagnoses and captions with the fp32 export's")
        agree = agreement(vlms["onnx_fp32"], vlms["onnx_int4"], images, PROMPTS, tokens)
        log("timing decode: PyTorch fp32, ONNX fp32, ONNX int4")
        timed = speed(pipe, vlms, images[:1], cfg, tokens, repeats)
        quantization = vlms["onnx_int4"].config.model.quantization.to_json()
        disk = {"fp32": decoder_mib(fp32_folder), "int4": decoder_mib(int4_folder)}
    grids = pipe.prepare(images[:1]).layout.grids_of(0)
    return {"model": name, "visual_tokens": sum(g.height * g.width for g in grids),
            "k": cfg.k, "threads": threads, "onnxruntime": onnxruntime.__version__, "quantization": quantization,
            "decoder_disk_mib": disk, "agreement": agree, "speed": timed, "noise_sensitivity": control}


def render(report: dict) -> str:
    a, s, d, q = report["agreement"], report["speed"], report["decoder_disk_mib"], report["quantization"]
    tps = {name: v["median"] for name, v in s["decode_tokens_per_s"].items()}
    noise = ", ".join(f"{float(level) * 100:g} % of a weight's std moves the logits by "
                      f"{v['logits_max_abs_diff_rel']:.3f} of their range"
                      for level, v in report["noise_sensitivity"].items())
    return "\n".join([
        f"{report['model']} ({report['visual_tokens']} visual tokens, K={report['k']}, {report['threads']} thread(s), "
        f"onnxruntime {report['onnxruntime']}; int4: block {q['block_size']}, {'+'.join(q['parts'])})",
        f"- int4 vs fp32 export over {a['captions']} captions (greedy, up to {a['max_new_tokens']} tokens): "
        f"identical tokens {a['tokens_identical']:.0%}, common prefix {a['prefix_share_mean']:.0%} of the fp32 "
        f"caption on average; with fp32's plan, first-step logits within {a['logits_max_abs_diff_rel']:.3f} of "
        f"their range, same first token {a['first_token_identical_same_plan']:.0%}; identical plans "
        f"{a['plan_identical']:.0%}, identical source sets {a['sources_identical']:.0%}, sources' Jaccard "
        f"{a['sources_jaccard_mean']:.2f}; maps: correlation >= {a['map_correlation_min']:.4f}, max |diff| <= "
        f"{a['map_max_abs_diff_rel']:.3f} of the map's max",
        f"- control, PyTorch fp32 with Gaussian noise on its decoder Linears' weights: {noise}",
        f"- decoder on disk: fp32 {d['fp32']} MiB, int4 {d['int4']} MiB (x{d['fp32'] / d['int4']:.2f} smaller)",
        f"- decode tokens/s (batch {s['batch']}, {s['new_tokens']} new tokens, median of {s['repeats']}): "
        f"PyTorch fp32 {tps['pytorch_fp32']:.1f}, ONNX fp32 {tps['onnx_fp32']:.1f}, ONNX int4 {tps['onnx_int4']:.1f} "
        f"(x{tps['onnx_int4'] / tps['onnx_fp32']:.2f} of ONNX fp32, x{tps['onnx_int4'] / tps['pytorch_fp32']:.2f} "
        "of PyTorch)"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.onnx_int4", description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a checkpoint folder (default: the benchmark's random CPU model)")
    p.add_argument("--images", type=int, default=4, help="images compared (x 2 prompts)")
    p.add_argument("--tokens", type=int, default=32, help="new tokens per caption and per timed decode")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds of the decode comparison")
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    p.add_argument("--k", type=int, help="SCR's K (default: the benchmark's, 32)")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--report", type=Path, metavar="JSON", help="print the summary of an earlier run's --json")
    args = p.parse_args(argv)
    if args.report:
        print(render(json.loads(args.report.read_text())))
        return 0
    warnings.filterwarnings("ignore", message="only .* sources fit")
    report = measure(args.model, args.images, args.tokens, args.repeats, args.threads, args.k)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
