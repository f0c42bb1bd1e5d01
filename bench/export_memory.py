"""``python -m bench.export_memory``: peak memory of an fp16 ONNX export of a multi-gigabyte checkpoint.

    python -m bench.export_memory                      # TinyLlama-1.1B-shaped LLaVA, 25 layers, 2.5 GB fp16
    python -m bench.export_memory --preset llama7b-6   # six Llama-2-7B-shaped layers (the test's model)
    python -m bench.export_memory --preset llama7b-6 --dtype int4-fp16   # the same, its decoder then in int4

Builds a random LLaVA checkpoint from the real transformers config classes, directly in fp16, saved with
``save_pretrained`` like a user's checkpoint (a child process, so its own memory does not count), then
runs the exporter on it in another child and prints one JSON object: the export child's peak resident
set (``ru_maxrss`` from ``wait4``: the kernel's high-water mark, with every allocator counted), the
checkpoint's bytes on disk, their ratio, the wall time, each graph's bytes (graph + external data) and
whether it took the external-data path, and the resident set at each stage of the export.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Decoder shapes. Both put each decoder part (head: layers 0..max(diag_layers); tail: the rest + LM head)
# past export.folder_config.EXTERNAL_DATA_BYTES, so each takes the external-data path.
PRESETS = {
    # TinyLlama-1.1B's decoder (hidden 2048, MLP 5632, 32 heads / 4 KV heads, vocab 32000) with 25 layers
    # instead of 22: head 13 layers (1.15 GB), tail 12 layers + LM head (1.19 GB)
    "tinyllama-25": dict(hidden_size=2048, intermediate_size=5632, num_layers=25, num_heads=32, num_kv_heads=4,
                         vocab_size=32000),
    # Llama-2-7B's (LLaVA-1.5-7B's) layer shape, six layers, the testbed's small vocabulary: head 3 layers,
    # tail 3 layers, 1.21 GB each; few layers trace quickly, so this is the CI test's model
    "llama7b-6": dict(hidden_size=4096, intermediate_size=11008, num_layers=6, num_heads=32, num_kv_heads=32),
}
VISION = dict(vision_layers=2, vision_hidden_size=32, image_size=112, patch_size=14)  # a tiny tower, 64 tokens


def build_checkpoint(preset: str, out: Path) -> Path:
    """Write the random fp16 checkpoint of ``preset`` to ``out`` (call it in a child: it holds the model)."""
    import torch

    from scr_core.testbed.tiny import make_llava

    model, processor = make_llava(seed=0, initializer_range=0.02, dtype=torch.float16, **VISION,
                                  **PRESETS[preset])
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out


def checkpoint_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _export_child(model: Path, out: Path, dtype: str) -> None:
    """The measured process: the exporter's ``--dtype`` path, one JSON line per stage on stdout."""
    from export.exporter import ExportOptions, export

    started = time.perf_counter()

    def progress(message: str) -> None:
        print(json.dumps({"t": round(time.perf_counter() - started, 1), "rss_mib": round(_rss_mib()),
                          "stage": message}), flush=True)

    export(ExportOptions(model=model, out=out, dtype=dtype, overwrite=True), progress=progress)


def _run(args: list[str]) -> tuple[int, int, float, str, str]:
    """Run ``python -m bench.export_memory ARGS`` in a child: (exit code, peak RSS bytes, seconds, out, err)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "bench.export_memory", *args], stdout=out, stderr=err,
                                 env=env, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (getrusage would mix children)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0), err.seek(0)
        return child.returncode, usage.ru_maxrss * 1024, seconds, out.read(), err.read()


def graph_sizes(folder: Path) -> dict:
    """Each graph of an exported folder: bytes of the .onnx file and of its external data, if any."""
    config = json.loads((folder / "scr_config.json").read_text())["model"]
    graphs = {"vision": config["vision"], "embedding": config["embedding"],
              "decoder_head": config["decoder"]["head"], "decoder_tail": config["decoder"]["tail"]}
    sizes = {}
    for name, spec in graphs.items():
        path = folder / spec["filename"]
        data = path.with_name(path.name + ".data")
        sizes[name] = {"graph_bytes": path.stat().st_size, "data_bytes": data.stat().st_size if data.exists() else 0,
                       "external_data": bool(spec.get("external_data"))}
    return sizes


def measure(preset: str, work: Path, dtype: str = "fp16") -> dict:
    """Build ``preset``'s checkpoint under ``work`` (once), export it in a child, report (see the docstring)."""
    model, out = work / f"{preset}-checkpoint", work / f"{preset}-{dtype}-onnx"
    if not (model / "config.json").is_file():
        code, build_peak, build_seconds, _, err = _run(["--child-build", preset, str(model)])
        if code:
            raise RuntimeError(f"building the checkpoint failed:\n{err[-3000:]}")
    code, peak, seconds, stdout, err = _run(["--child-export", str(model), str(out), dtype])
    if code:
        raise RuntimeError(f"the export failed:\n{err[-3000:]}")
    size = checkpoint_bytes(model)
    return {"preset": preset, "dtype": dtype, "checkpoint_bytes": size, "peak_rss_bytes": peak,
            "ratio": round(peak / size, 2), "export_seconds": round(seconds, 1), "graphs": graph_sizes(out),
            "stages": [json.loads(line) for line in stdout.splitlines() if line.startswith("{")],
            "checkpoint": str(model), "onnx": str(out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.export_memory", description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="tinyllama-25")
    p.add_argument("--work", type=Path, default=None,
                   help="folder for the checkpoint and the export (kept; default: a temporary folder, removed)")
    p.add_argument("--child-build", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--dtype", choices=("fp16", "int4-fp16"), default="fp16",
                   help="the export's --dtype (int4-fp16: the fp16 export, then its decoder quantized)")
    p.add_argument("--child-export", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_build:
        build_checkpoint(args.child_build[0], Path(args.child_build[1]))
        return 0
    if args.child_export:
        _export_child(Path(args.child_export[0]), Path(args.child_export[1]), args.child_export[2])
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="export-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(json.dumps(measure(args.preset, work, args.dtype), indent=2))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
