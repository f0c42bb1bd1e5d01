"""``python -m export.onnx``: export a VLM checkpoint with SCR baked in (see export/exporter.py).

    python -m export.onnx --out scr-onnx                       # the bundled testbed LLaVA
    python -m export.onnx --model /models/llava-1.5-7b-hf --out llava-onnx --dtype fp16
    python -m export.onnx --model /models/llava-1.5-7b-hf --out llava-int4 --dtype int4       # CPU deployment
    python -m export.onnx --model /models/llava-1.5-7b-hf --out llava-int4 --dtype int4-fp16  # CUDA deployment
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import warnings
from pathlib import Path

from scr_core import SCRConfig, SCRError
from scr_core.cli import parse_layers

from .exporter import DEFAULT_OPSET, DTYPES, ExportOptions, export
from .quantize import DEFAULT_BLOCK_SIZE

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "scr_core" / "testbed" / "checkpoint"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.onnx", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="checkpoint folder (default: bundled testbed)")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--k", type=int, default=None, help=f"default sources per grid stored in the config ({SCRConfig.k})")
    p.add_argument("--lam", type=float, default=None, help=f"λ baked into the graphs ({SCRConfig.lam:.2f})")
    p.add_argument("--diag-layers", type=parse_layers, default=None,
                   help="diagnostic layers, e.g. 8-16 (family default)")
    p.add_argument("--hook-layers", type=parse_layers, default=None,
                   help="hooked layers, e.g. 0-3,8 (family default)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="fp32, fp16, or int4 weights on the decoder's Linears (MatMulNBits) with fp32 activations "
                        "(int4: for CPU) or fp16 activations (int4-fp16: for CUDA); docs/onnx.md")
    p.add_argument("--block-size", type=int, default=None,
                   help=f"int4: weights per quantization block along the input width (default {DEFAULT_BLOCK_SIZE})")
    p.add_argument("--int4-lm-head", action="store_true", help="int4: quantize the LM head too (default: kept)")
    p.add_argument("--int4-vision", action="store_true", help="int4: quantize the vision tower too (default: kept)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset of the graphs (default {DEFAULT_OPSET}: the decoder's attention as ONNX's "
                        "Attention op, onnxruntime >= 1.23); 18-21: the attention decomposed into basic ops")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--debug", action="store_true", help="show tracebacks and exporter warnings")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = ExportOptions(model=args.model, out=args.out, k=args.k, lam=args.lam, diag_layers=args.diag_layers,
                            hook_layers=args.hook_layers, dtype=args.dtype, opset=args.opset, overwrite=args.overwrite,
                            block_size=args.block_size, int4_lm_head=args.int4_lm_head, int4_vision=args.int4_vision)
    if not args.debug:
        warnings.filterwarnings("ignore")
        logging.getLogger("torch").setLevel(logging.ERROR)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # errors stay one line; the exporter prints its own stages
    terminated = []

    def on_sigterm(signum, frame):  # the same clean path as Ctrl-C: the staging folder is removed
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        export(options, progress=lambda message: print(f"[export] {message}", flush=True))
    except SCRError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("error: export interrupted; nothing was written", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"[export] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
