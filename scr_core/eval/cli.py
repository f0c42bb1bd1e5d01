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

    cmp = sub.add_parser("compare", help="markdown table of several eval runs with deltas")
    cmp.add_argument("runs", nargs="+", type=Path, help="run folders (each with summary.json)")
    cmp.add_argument("--baseline", default="vanilla", help="method the deltas are taken against")
    cmp.add_argument("--out", type=Path, help="also write the table here")


def cmd_eval(args, make_pipeline, make_config) -> None:
    from .runner import check_sizes, run

    check_sizes(args.limit, args.batch_size)  # before minutes of model loading
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

    runs = [_read_run(run_dir) for run_dir in dict.fromkeys(Path(r).resolve() for r in args.runs)]
    labels = run_labels(runs)
    results = {label: run["scores"] for label, run in zip(labels, runs)}
    baselines = [label for label, run in zip(labels, runs) if run["method"] == args.baseline]
    against = {label: _closest(run, runs, labels, baselines) for label, run in zip(labels, runs)} if baselines else None
    table = comparison_table(results, baseline=baselines or None, against=against)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


SUMMARY_RESULTS = ("n", "scores", "latency_ms_mean", "entropy_analysis")


def _read_run(run_dir: Path) -> dict:
    """A run folder's method, flat settings (``run.json``, else the summary's), scores and name."""
    path = run_dir / "summary.json"
    if not path.is_file():
        raise DataError(f"{path} not found: finish the run first (python -m scr_core eval …)")
    summary = load_json(path, "run summary")
    if not isinstance(summary, dict) or not isinstance(summary.get("scores"), dict) or "method" not in summary:
        raise DataError(f"{path} is not a run summary (no method or scores); rerun the eval into that folder")
    meta = load_json(run_dir / "run.json", "run record") if (run_dir / "run.json").is_file() else \
        {k: v for k, v in summary.items() if k not in SUMMARY_RESULTS}
    scores = flat_scores(summary["scores"])
    if summary.get("latency_ms_mean") is not None:
        scores["latency_ms"] = summary["latency_ms_mean"]
    return {"name": str(run_dir), "method": summary["method"], "settings": run_settings(meta), "scores": scores}


def run_settings(meta: dict) -> dict:
    """Recorded settings by short name: {"config": {"k": 8}, "seed": 0} -> {"k": 8, "seed": 0}
    (a config key that clashes with a run-level one keeps its prefix: "config.seed")."""
    settings = {k: v for k, v in meta.items() if k not in ("method", "config")}
    for key, value in (meta.get("config") or {}).items():
        settings[f"config.{key}" if key in meta else key] = value
    return settings


def run_labels(runs: list[dict]) -> list[str]:
    """One distinct row label per run: its method plus the settings that tell it apart.

    Run-level settings (model, data, subset, seed, batch size, ...) that differ between any runs
    are shown on every row; SCR settings only where they differ between runs of the same method
    (vanilla ignores ``k``). Runs identical in every recorded setting are named by their folder.
    """
    config_keys = {k for run in runs for k in run["settings"] if _is_config(k, run)}
    shared = _differing(runs, lambda k: k not in config_keys)
    labels = []
    for run in runs:
        same_method = [r for r in runs if r["method"] == run["method"]]
        keys = shared + _differing(same_method, lambda k: k in config_keys)
        shown = ", ".join(f"{k}={_show(run['settings'].get(k))}" for k in keys)
        labels.append(f"{run['method']} ({shown})" if shown else run["method"])
    return [run["name"] if labels.count(label) > 1 else label for label, run in zip(labels, runs)]


def _is_config(key: str, run: dict) -> bool:
    return key.startswith("config.") or key not in RUN_LEVEL


# The run-level settings the runner records (runner.run's meta); the rest come from SCRConfig.
RUN_LEVEL = ("benchmark", "data", "model", "dtype", "device", "attention", "limit", "seed", "batch_size")


def _differing(runs: list[dict], wanted) -> list[str]:
    keys = dict.fromkeys(k for run in runs for k in run["settings"] if wanted(k))
    return [k for k in keys if len({_show(run["settings"].get(k)) for run in runs}) > 1]


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _closest(run: dict, runs: list[dict], labels: list[str], baselines: list[str]) -> str:
    """The baseline row sharing the most settings with ``run`` (same model, data, subset, ...)."""
    by_label = dict(zip(labels, runs))
    return max(baselines, key=lambda b: sum(by_label[b]["settings"].get(k) == v for k, v in run["settings"].items()))
