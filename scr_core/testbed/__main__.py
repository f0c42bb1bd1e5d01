"""``python -m scr_core.testbed train|report``."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from .train import TrainConfig, train

CHECKPOINT = Path(__file__).parent / "checkpoint"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scr_core.testbed")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train the testbed VLM on synthetic scenes (CPU)")
    tr.add_argument("--out", type=Path, default=CHECKPOINT)
    for f in fields(TrainConfig):
        if f.type in ("int", "float"):
            tr.add_argument(f"--{f.name.replace('_', '-')}", type=int if f.type == "int" else float,
                            default=f.default)
    rep = sub.add_parser("report", help="vanilla vs SCR vs Uniform-Smooth on held-out testbed benchmarks")
    rep.add_argument("--model", type=Path, default=CHECKPOINT)
    rep.add_argument("--out", type=Path, default=Path("testbed_report"))
    rep.add_argument("--images", type=int, default=300, help="scenes per held-out set")
    rep.add_argument("--seeds", type=int, default=3, help="number of held-out sets (1..3)")
    rep.add_argument("--lambdas", default="1.1,1.5,2.0,3.0", help="λ values of the sweep")
    rep.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    if args.command == "train":
        overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
        command = "python -m scr_core.testbed " + shlex.join(argv if argv is not None else sys.argv[1:])
        train(TrainConfig(**overrides), args.out, command=command)
    elif args.command == "report":
        from ..pipeline import SCRPipeline
        from .report import TEST_SEEDS, build_report

        pipe = SCRPipeline.from_pretrained(args.model)
        lambdas = tuple(float(x) for x in args.lambdas.split(",") if x)
        print(build_report(pipe, args.out, n_images=args.images, seeds=TEST_SEEDS[: args.seeds],
                           lambdas=lambdas, batch_size=args.batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
