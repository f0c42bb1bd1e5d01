"""``python -m scr_core eval BENCH …`` and ``python -m scr_core compare OUT…``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import DataError
from .files import load_json
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

    cmp = sub.add_parser("compare", help="markdown table of several eval runs with deltas (one row per run, "
                                         "labelled by the method and the settings that differ)")
    cmp.add_argument("runs", nargs="+", type=Path, help="run folders (each with summary.json)")
    cmp.add_argument("--baseline", default="vanilla",
                     help="method the deltas are taken against (its run with the most settings in common)")
    cmp.add_argument("--out", type=Path, help="also write the table here")


def cmd_eval(args, make_pipeline, make_config) -> None:
    from ..shards import launched_shard
    from .runner import check_sizes, run

    check_sizes(args.limit, args.batch_size)  # before minutes of model loading
    config = make_config(args)
    shard, args.device = launched_shard(args.device)  # under accelerate launch / torchrun: this rank's share
    pipe = make_pipeline(args)
    summary = run(args.bench, args.data, pipe, args.method, args.out, config, limit=args.limit,
                  seed=args.seed, batch_size=args.batch_size, model_name=str(args.model or "embedded default"),
                  shard=shard)
    if not shard.main:
        return
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
    """One row per run folder (the same folder given twice counts once), deltas against the
    ``--baseline`` method's run with the most settings in common."""
    from .report import comparison_table

    folders = {Path(r).resolve(): Path(r) for r in args.runs}
    runs = [_read_run(folder) for folder in folders.values()]
    labels = run_labels(runs)
    results = {label: run["scores"] for label, run in zip(labels, runs)}
    baselines = [label for label, run in zip(labels, runs) if run["method"] == args.baseline]
    against = None
    if baselines:
        by_label = dict(zip(labels, runs))
        against = {label: max(baselines, key=lambda b: _in_common(run, by_label[b])) for label, run in by_label.items()}
    table = comparison_table(results, baseline=baselines or None, against=against)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


# What summarize() adds to the recorded settings (runner.run's meta) in summary.json.
SUMMARY_RESULTS = ("n", "scores", "latency_ms_mean", "entropy_analysis")


def _read_run(run_dir: Path) -> dict:
    """A run folder's method, recorded settings (``run.json``, else the summary's) and flat scores."""
    path = run_dir / "summary.json"
    if not path.is_file():
        raise DataError(f"{path} not found: finish the run first (python -m scr_core eval …)")
    summary = load_json(path, "run summary")
    if not isinstance(summary, dict) or not isinstance(summary.get("scores"), dict) or "method" not in summary:
        raise DataError(f"{path} is not a run summary (no method or scores); rerun the eval into {run_dir}")
    record = run_dir / "run.json"
    meta = load_json(record, "run record") if record.is_file() else \
        {k: v for k, v in summary.items() if k not in SUMMARY_RESULTS}
    scores = flat_scores(summary["scores"])
    if summary.get("latency_ms_mean") is not None:
        scores["latency_ms"] = summary["latency_ms_mean"]
    return {"name": str(run_dir), "method": summary["method"], "scores": scores, "config": meta.get("config") or {},
            "run": {k: v for k, v in meta.items() if k not in ("method", "config")}}


def run_labels(runs: list[dict]) -> list[str]:
    """One distinct row label per run: its method plus the settings that tell it apart.

    Run-level settings (model, data, subset, seed, batch size, ...) that differ between any runs
    are shown on every row; SCR settings only where they differ between runs of the same method
    (they do not matter to vanilla, and the method already names the row). Runs identical in
    every recorded setting are named by their folder.
    """
    shown_run = _differing(runs, "run")
    labels = []
    for run in runs:
        shown_config = _differing([r for r in runs if r["method"] == run["method"]], "config")
        parts = [f"{k}={_show(run['run'].get(k))}" for k in shown_run]
        parts += [f"{'config.' if k in shown_run else ''}{k}={_show(run['config'].get(k))}" for k in shown_config]
        labels.append(f"{run['method']} ({', '.join(parts)})" if parts else run["method"])
    return [run["name"] if labels.count(label) > 1 else label for label, run in zip(labels, runs)]


def _differing(runs: list[dict], part: str) -> list[str]:
    """Keys of ``run[part]`` whose values are not all the same, in recorded order."""
    keys = dict.fromkeys(k for run in runs for k in run[part])
    return [k for k in keys if len({_show(run[part].get(k)) for run in runs}) > 1]


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _in_common(run: dict, other: dict) -> int:
    """How many recorded settings two runs share (a delta is fairest against the closest baseline)."""
    return sum(other[part].get(k) == v for part in ("run", "config") for k, v in run[part].items())
