"""``python -m scr_core eval BENCH …`` and ``python -m scr_core compare OUT…``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import DataError
from .runner import METHODS
from .suites import SUITES


def add_parsers(sub, add_model_args, add_scr_args) -> None:
    ev = sub.add_parser("eval", help="run a benchmark from a local folder in its official format")
    ev.add_argument("bench", choices=sorted(SUITES))
    ev.add_argument("--data", type=Path, required=True, help="the benchmark's folder (see README)")
    ev.add_argument("--method", choices=METHODS, default="scr")
    ev.add_argument("--out", type=Path, required=True, help="run folder (resumed if it exists)")
    ev.add_argument("--limit", type=int, help="seeded subset size (per POPE split)")
    ev.add_argument("--batch-size", type=int, default=8)
    add_model_args(ev)
    add_scr_args(ev)

    cmp = sub.add_parser("compare", help="markdown table of several eval runs with deltas")
    cmp.add_argument("runs", nargs="+", type=Path, help="run folders (each with summary.json)")
    cmp.add_argument("--baseline", default="vanilla", help="method the deltas are taken against")
    cmp.add_argument("--out", type=Path, help="also write the table here")


def cmd_eval(args, make_pipeline, make_config) -> None:
    from .runner import run

    pipe = make_pipeline(args)
    summary = run(args.bench, args.data, pipe, args.method, args.out, make_config(args), limit=args.limit,
                  seed=args.seed, batch_size=args.batch_size, model_name=str(args.model or "embedded default"))
    print(json.dumps({"n": summary["n"], "scores": summary["scores"],
                      "latency_ms_mean": summary["latency_ms_mean"]}, indent=2))
    print(f"summary: {args.out / 'summary.json'}")


def flat_scores(scores: dict, prefix: str = "") -> dict[str, float]:
    """{"overall": {"hr": 1}} -> {"overall.hr": 1}; non-numbers dropped."""
    out = {}
    for key, value in scores.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_scores(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def cmd_compare(args) -> None:
    from .report import comparison_table

    results = {}
    for run_dir in args.runs:
        path = run_dir / "summary.json"
        if not path.is_file():
            raise DataError(f"{path} not found: finish the run first (python -m scr_core eval …)")
        summary = json.loads(path.read_text())
        scores = flat_scores(summary["scores"])
        if summary.get("latency_ms_mean") is not None:
            scores["latency_ms"] = summary["latency_ms_mean"]
        results[summary["method"]] = scores
    table = comparison_table(results, baseline=args.baseline if args.baseline in results else None)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
