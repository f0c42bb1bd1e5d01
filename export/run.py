"""``python -m export.run``: caption an image with an exported folder and onnxruntime alone (no torch).

    python -m export.run --model scr-onnx photo.jpg
    python -m export.run --model scr-onnx photo.jpg --prompt "Is there a dog?" --no-scr --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from scr_core import SCRError
from scr_core.errors import exit_code


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.run", description=__doc__.split("\n")[0])
    p.add_argument("image", nargs="+", help="image file(s); several images go into one prompt")
    p.add_argument("--model", type=Path, required=True, help="folder written by python -m export.onnx")
    p.add_argument("--prompt", default=None, help="instruction or question (default: the caption instruction)")
    p.add_argument("--no-scr", action="store_true", help="vanilla decoding (no diagnostic pass, no redistribution)")
    p.add_argument("--k", type=int, default=None, help="sources per image grid (default: the export's)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                   help="execution provider (auto: CUDA when onnxruntime has it)")
    p.add_argument("--json", action="store_true", help="print text, token ids, plan and timings as JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .notorch import hide_torch

    hide_torch()  # this process needs no torch; transformers would import it anyway (~700 MiB)
    if not args.debug:  # a quiet run prints what was asked for: not transformers' "PyTorch was not found" (hidden)
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

    def work() -> None:
        from .runtime import OnnxVLM

        if args.max_new_tokens < 1:
            raise SCRError(f"--max-new-tokens must be >= 1 (got {args.max_new_tokens})")
        vlm = OnnxVLM(args.model, provider=args.provider)
        scr = None if args.no_scr else vlm.settings if args.k is None else vlm.settings.with_(k=args.k)
        result = vlm.caption([list(args.image)], args.prompt, scr=scr, max_new_tokens=args.max_new_tokens)[0]
        if args.json:
            print(json.dumps({**result.to_dict(), "provider": vlm.providers[0],
                              "onnxruntime": vlm.onnxruntime}, indent=2))
        else:
            print(result.text)
            print(result.timings.summary(), f"| {vlm.providers[0]}", file=sys.stderr)

    return exit_code(work, args.debug)


if __name__ == "__main__":
    sys.exit(main())
