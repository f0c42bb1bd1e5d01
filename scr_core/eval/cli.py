"""``python -m scr_core eval BENCH …`` and ``python -m scr_core compare OUT…``."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError, SCRError
from .files import load_json
from .parsing import available_rules
from ..extras import require
from .peers import PEERS
from .runner import METHODS
from .suites import SUITES
from .text import LEMMATIZERS


def add_parsers(sub, add_model_args, add_scr_args) -> None:
    ev = sub.add_parser("eval", help="run a benchmark from a local folder in its official format")
    ev.add_argument("bench", choices=sorted(SUITES))
    ev.add_argument("--data", type=Path, required=True, help="the benchmark's folder (docs/benchmarks.md)")
    ev.add_argument("--method", choices=METHODS, default="scr")
    ev.add_argument("--out", type=Path, required=True, help="run folder (resumed if it exists)")
    ev.add_argument("--limit", type=int, help="seeded subset size (per POPE split)")
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--parser", choices=available_rules(),
                    help="yes/no answer parser (pope, amber, mme); default: the benchmark's official rule "
                         "(pope, amber_exact, mme); the summary names the one used")
    ev.add_argument("--lemmatizer", choices=LEMMATIZERS,
                    help="noun lemmatiser (chair, amber); default auto: NLTK WordNet 3.0 as the official "
                         "scripts, lemminflect when WordNet is not installed; the summary names it")
    ev.add_argument("--scope", choices=("all", "visual"),
                    help="hallusionbench: all questions (default, the official set; those without a figure are "
                         "asked without an image) or only those with an image")
    ev.add_argument("--spacy-model", help="amber: spaCy model name or folder (the reference uses en_core_web_lg) "
                                          "for its near-synonym check; default: exact words only")
    add_model_args(ev)
    add_scr_args(ev)

    cmp = sub.add_parser("compare", help="markdown table of several eval runs with deltas (one row per run, "
                                         "labelled by the method and the settings that differ)")
    cmp.add_argument("runs", nargs="+", type=Path, help="run folders (each with summary.json)")
    cmp.add_argument("--baseline", default="vanilla",
                     help="method the deltas are taken against (its run with the most settings in common); "
                          "the first run when none used it")
    cmp.add_argument("--all", action="store_true", help="every number of every summary (default: the headline "
                                                       "metrics, latency and the paired McNemar p)")
    cmp.add_argument("--out", type=Path, help="also write the table here")


def cmd_eval(args, make_pipeline, make_config, make_engine=lambda args: None) -> None:
    from contextlib import nullcontext

    from ..runs import check_sizes
    from ..shards import Shard, launched_shard
    from .runner import run

    from .suites import check_options

    check_sizes(args.limit, args.batch_size)  # before minutes of model loading
    if args.method in PEERS:
        require("peers", f"--method {args.method}")
    options = {"rule": args.parser, "lemmatizer": args.lemmatizer, "similarity_model": args.spacy_model,
               "scope": args.scope}
    check_options(args.bench, options)
    config = make_config(args)
    engine = make_engine(args)  # --engine ray: the batches run on Ray actors
    # under accelerate launch / torchrun: this rank's share
    shard, args.device = (Shard(), args.device) if engine else launched_shard(args.device)
    with engine or nullcontext():
        summary = run(args.bench, args.data, None if engine else make_pipeline(args), args.method, args.out, config,
                      limit=args.limit, seed=args.seed, batch_size=args.batch_size,
                      model_name=str(args.model or "embedded default"),
                      options={k: v for k, v in options.items() if v is not None}, shard=shard, engine=engine)
    if not shard.main:
        return
    print(json.dumps({"n": summary["n"], "scores": summary["scores"],
                      "latency_ms_mean": summary["latency_ms_mean"]}, indent=2))
    print(f"summary: {args.out / 'summary.json'}")


def flat_scores(scores: dict, prefix: str = "") -> dict[str, float | None]:
    """{"overall": {"hr": 1}} -> {"overall.hr": 1}; ``None`` (an undefined rate) kept, other non-numbers dropped."""
    out: dict[str, float | None] = {}
    for key, value in scores.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_scores(value, name + "."))
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out[name] = value
    return out


# What a reader compares, per benchmark (flat score names; those absent from every run are left out).
HEADLINE = {
    "pope": tuple(f"{split}.{m}" for split in ("overall", "random", "popular", "adversarial")
                  for m in ("accuracy", "f1", "hr", "yes_ratio")),
    "chair": ("chair_s", "chair_i", "recall", "len"),
    "amber": ("generative.chair", "generative.cover", "generative.hal", "generative.cog",
              "discriminative.overall.accuracy", "discriminative.overall.f1"),
    "mme": ("perception", "cognition"),
    "hallusionbench": ("overall.aAcc", "overall.fAcc", "overall.qAcc"),
}
P_VALUE = "p_mcnemar"


def headline_metrics(runs: list[dict]) -> list[str]:
    """The headline metrics of the runs' benchmarks that some run has, then latency and the McNemar p."""
    names = [m for bench in dict.fromkeys(r["benchmark"] for r in runs) for m in HEADLINE.get(bench, ())]
    present = [m for m in names if any(m in r["scores"] for r in runs)]
    present += [m for m in ("latency_ms", P_VALUE) if any(m in r["scores"] for r in runs)]
    return present


def cmd_compare(args) -> None:
    """One row per run folder (the same folder given twice counts once), deltas against the
    ``--baseline`` method's run with the most settings in common (the first run if no run used that
    method); by default only the headline
    metrics, latency and the exact McNemar p against that baseline run (``--all``: everything)."""
    from .report import comparison_table

    folders = {Path(r).resolve(): Path(r) for r in args.runs}
    runs = [_read_run(folder) for folder in folders.values()]
    labels = run_labels(runs)
    by_label = dict(zip(labels, runs))
    baselines = [label for label, run in zip(labels, runs) if run["method"] == args.baseline] or labels[:1]
    against = None
    notes = []
    if baselines:
        against = {label: max(baselines, key=lambda b: _in_common(run, by_label[b])) for label, run in by_label.items()}
        for label, run in by_label.items():
            if label not in baselines:
                p, note = paired_p(run, by_label[against[label]])
                if p is not None:
                    run["scores"][P_VALUE] = p
                elif note:
                    notes.append(f"{label}: {note}")
    results = {label: run["scores"] for label, run in by_label.items()}
    metrics = list(dict.fromkeys(k for r in results.values() for k in r)) if args.all else headline_metrics(runs)
    table = comparison_table(results, metrics, baseline=baselines or None, against=against,
                             formats={P_VALUE: ".3g"}, labels={P_VALUE: "p (McNemar)"})
    if P_VALUE in (metrics or [P_VALUE]) and baselines:
        table += "\np (McNemar): exact two-sided test of the questions both runs answered, against the baseline row.\n"
    table += "".join(f"\nno p for {n}" for n in notes) + ("\n" if notes else "")
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


def paired_p(run: dict, base: dict) -> tuple[float | None, str]:
    """Exact McNemar p of two runs' yes/no answers on the questions both answered, or ``(None, why)``.

    Labels come from the benchmark folder recorded in the run (read again); answers are parsed
    with the rule the run's summary names.
    """
    from .parsing import parse_many
    from .pope import mcnemar_exact
    from .runner import read_predictions
    from .suites import load_suite

    if run["benchmark"] != base["benchmark"] or "rule" not in run["raw_scores"]:
        return None, ""
    if run["raw_scores"].get("rule") != base["raw_scores"].get("rule"):
        return None, "the runs parse answers with different rules"
    try:
        suite = load_suite(run["benchmark"], Path(run["run"].get("data", "")), None, 0,
                           **({"rule": run["raw_scores"]["rule"]} if run["benchmark"] == "pope" else {}))
    except SCRError as err:
        return None, f"cannot read the benchmark data again ({err})"
    if not hasattr(suite, "labels"):
        return None, ""
    labels = suite.labels()
    a = read_predictions(Path(base["name"]) / "predictions.jsonl")
    b = read_predictions(Path(run["name"]) / "predictions.jsonl")
    shared = [i for i in a if i in b and i in labels]
    if not shared:
        return None, "no question in common with the baseline run"
    rule = run["raw_scores"]["rule"]
    result = mcnemar_exact([labels[i] for i in shared], parse_many([a[i]["text"] for i in shared], rule),
                           parse_many([b[i]["text"] for i in shared], rule))
    return result.p_value, ""


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
    return {"name": str(run_dir), "method": summary["method"], "benchmark": summary.get("benchmark"),
            "scores": scores, "raw_scores": summary["scores"],
            # a peer's settings (peers.settings) belong to its method, like SCR's config
            "config": {**(meta.get("config") or {}), **({"peer": meta["peer"]} if "peer" in meta else {})},
            "run": {k: v for k, v in meta.items() if k not in ("method", "config", "peer")}}


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
