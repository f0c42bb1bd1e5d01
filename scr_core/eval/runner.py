"""Run one method on one benchmark: batched, resumable, one JSONL line per answer as it is made.

``out/run.json`` records what the run is and everything that changes its answers (benchmark,
method, model and its dtype/device/attention kernel, subset, seed, batch size, SCR settings);
resuming in the same folder with other settings is refused, naming them (``scr_core.runs``).
``out/predictions.jsonl`` gains one line per task (flushed and fsynced batch by batch); after an
interruption the next run skips the ids already there, drops a half-written last line, and
produces the same summary as an uninterrupted run.
``out/summary.json`` holds the scores and mean latency.
Under ``accelerate launch`` / ``torchrun`` the fixed batches are shared out across the processes,
each with its own resumable file, and rank 0 merges them (``scr_core.shards``): the merged
predictions and summary equal a one-process run at the same batch size (latencies aside); so do
those of ``--engine ray`` (``scr_core.ray_engine``: the batches on Ray actors, this process writing).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import SCRConfig
from ..datafiles import load_json
from ..errors import SCRError
from ..outputs import write_atomically
from ..runs import check_run, check_sizes, model_numerics, on_cpu
from ..shards import Execute, Shard, batches_of, one_by_one, read_records, run_shards
from .peers import PEERS
from .suites import Task, load_suite

log = logging.getLogger(__name__)

METHODS = ("vanilla", "scr", "uniform", "remove", "vcd", "dola", *PEERS)  # PEERS: through mitigv (peers.py)


@dataclass(frozen=True)
class Answer:
    text: str
    entropy: float | None = None
    latency_ms: float | None = None


Generate = Callable[[Sequence[Task]], list[Answer]]


def check_method(method: str) -> None:
    if method not in METHODS:
        raise SCRError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def method_generator(pipe, method: str, config: SCRConfig, seed: int = 0, entropy: bool = False) -> Generate:
    """A function answering a batch of tasks (same max_new_tokens) with ``method``."""
    from . import baselines

    check_method(method)
    if method in PEERS:
        from .peers import PeerGenerator

        peer = PeerGenerator(pipe, method, seed)  # refuses an unsupported family before any work

    def run(tasks: Sequence[Task]) -> list[Answer]:
        images = [t.image for t in tasks]
        prompts = [t.prompt for t in tasks]
        kwargs = {"max_new_tokens": tasks[0].max_new_tokens}
        start = time.perf_counter()
        if tasks[0].image is None:  # asked without an image: every method answers as greedy decoding
            from .textonly import generate_text_only

            texts = generate_text_only(pipe, prompts, tasks[0].max_new_tokens)
            per_task = (time.perf_counter() - start) * 1000 / len(tasks)
            return [Answer(text, None, per_task) for text in texts]
        if method == "vanilla":
            results = pipe.generate(images, prompts, scr=None, diagnose=entropy, **kwargs)
        elif method in ("scr", "uniform", "remove"):
            # Uniform-Smooth seeds each prompt by its own content too, so answers do not depend on the batch;
            # remove: SCR's plan with its sources zeroed (the EAZY-style ablation)
            cfg = config.with_(selection="uniform" if method == "uniform" else "attention", seed=seed)
            results = pipe.generate(images, prompts, scr=cfg, remove_sources=method == "remove", **kwargs)
        elif method in PEERS:
            texts = peer(images, prompts, **kwargs)
            per_task = (time.perf_counter() - start) * 1000 / len(tasks)
            return [Answer(text, None, per_task) for text in texts]
        elif method == "vcd":
            results = baselines.generate_vcd(pipe, images, prompts, seed=seed, **kwargs)
        else:
            penalty = 1.2 if tasks[0].free_form else 1.0
            results = baselines.generate_dola(pipe, images, prompts, repetition_penalty=penalty, **kwargs)
        per_task = (time.perf_counter() - start) * 1000 / len(tasks)
        return [Answer(r.text, r.diagnosis.entropy if r.diagnosis else None, per_task) for r in results]

    return run


def answer_records(generate: Generate, batch: Sequence[Task]) -> list[dict]:
    """One predictions line per task of ``batch``."""
    return [{"id": task.id, "text": answer.text, "entropy": answer.entropy, "latency_ms": answer.latency_ms}
            for task, answer in zip(batch, generate(batch))]


@dataclass(frozen=True)
class EvalJob:
    """What is done to each batch, apart from the model: ``job(pipe)`` is the batch function.
    Picklable, so a Ray actor builds the same function around its own model."""

    method: str
    config: SCRConfig
    seed: int = 0
    entropy: bool = False

    def __call__(self, pipe):
        generate = method_generator(pipe, self.method, self.config, self.seed, self.entropy)
        return lambda batch: answer_records(generate, batch)


def read_predictions(path: Path) -> dict[str, dict]:
    """Predictions written so far; a truncated last line (a crash mid-write) is dropped.

    Every other line must be a JSON object with the ``id`` and ``text`` the runner writes, else
    ``DataError`` naming the file and the line (summarizing would fail later with a bare KeyError).
    """
    return read_records(Path(path), "id", ("id", "text"), _START_OVER)


_START_OVER = "delete that line (its task is answered again) or the file (to start over)"


def run_benchmark(suite, generate: Generate | None, out: Path, meta: dict, batch_size: int = 8,
                  progress: bool = True, shard: Shard | None = None, execute: Execute | None = None) -> dict:
    """Answer every task of ``suite`` not yet in ``out/predictions.jsonl``, then score all of them.

    shard: this process's share of a data-parallel run (default: from the launcher's environment).
    execute: runs the batches elsewhere (Ray actors) instead of ``generate`` here.
    """
    check_sizes(None, batch_size)
    shard = shard or Shard.current()
    out = Path(out)
    meta = {**meta, "batch_size": batch_size}  # recorded: left padding changes a batch's numerics
    check_run(out, meta)
    batches = batches_of(suite.tasks(), batch_size, group=lambda t: (t.max_new_tokens, t.image is None))
    # one batch never mixes lengths, nor questions with and without an image

    if execute is None:
        assert generate is not None, "run_benchmark needs generate or execute"
        answer = generate
        execute = one_by_one(lambda batch: answer_records(answer, batch))
    done = run_shards(batches, lambda t: t.id, execute, out / "predictions.jsonl", shard, "id", ("id", "text"),
                      _START_OVER, progress, desc=f"{meta['benchmark']}/{meta['method']}")
    if shard.main:
        assert done is not None  # rank 0 gets every record
        summarize(suite, done, out, meta)
    shard.barrier()
    return load_json(out / "summary.json", "run summary")


def summarize(suite, predictions: dict[str, dict], out: Path, meta: dict) -> dict:
    answers = {k: v["text"] for k, v in predictions.items()}
    latencies = [v["latency_ms"] for v in predictions.values() if v.get("latency_ms") is not None]
    summary = {**meta, "n": len(answers), "scores": suite.score(answers),
               "latency_ms_mean": sum(latencies) / len(latencies) if latencies else None}
    entropies = {k: v["entropy"] for k, v in predictions.items() if v.get("entropy") is not None}
    if entropies and hasattr(suite, "labels"):
        summary["entropy_analysis"] = entropy_analysis(suite, answers, entropies, out)
    write_atomically(out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    return summary


def entropy_analysis(suite, answers: dict[str, str], entropies: dict[str, float], out: Path) -> dict:
    """Entropy vs hallucination over the ground-truth "no" questions (docs/method.md §2)."""
    from .analysis import entropy_hallucination_analysis, plot_entropy_hallucination
    from .parsing import parse_yes_no

    labels = suite.labels()
    ids = [i for i in entropies if i in labels]
    negatives = sum(labels[i] == "no" for i in ids)
    if negatives < 4:
        return {"skipped": f"only {negatives} ground-truth 'no' questions"}
    # The paper's 30 equal-count bins; small runs get fewer (>= 2 samples a bin).
    analysis = entropy_hallucination_analysis([entropies[i] for i in ids], [labels[i] for i in ids],
                                              [parse_yes_no(answers[i], suite.rule) for i in ids],
                                              n_bins=min(30, negatives // 2))
    plot_entropy_hallucination(analysis, out / "entropy_vs_hr.png")
    return analysis.to_dict()


def run(bench: str, data: Path, pipe, method: str, out: Path, config: SCRConfig = SCRConfig(),  # noqa: B008
        limit: int | None = None, seed: int = 0, batch_size: int = 8, model_name: str = "",
        progress: bool = True, options: dict | None = None, shard: Shard | None = None, engine=None) -> dict:
    """Run ``method`` on benchmark ``bench`` into ``out`` (see the module docstring); the settings
    are checked before the data is read or ``out`` is created. ``options``: the suite's scoring
    options (``suites.OPTIONS``), recorded when given. ``engine``: where the batches run when not
    here with ``pipe`` (``scr_core.ray_engine.RayEngine``; ``pipe`` is then None), with the same outputs."""
    check_sizes(limit, batch_size)
    check_method(method)
    suite = load_suite(bench, data, limit, seed, **(options or {}))
    numerics = engine.numerics() if engine else model_numerics(pipe)
    meta = {"benchmark": bench, "data": str(Path(data).resolve()), "method": method, "model": model_name,
            **numerics, "limit": limit, "seed": seed, **({"options": options} if options else {}),
            "config": {k: v for k, v in config.__dict__.items() if not k.startswith("_")}}
    if method in PEERS:
        from .peers import settings

        meta["peer"] = settings(method)
    job = EvalJob(method, config, seed, entropy=(method == "vanilla" and hasattr(suite, "labels")))
    shard = shard or (Shard() if engine else Shard.current(cpu=on_cpu(numerics)))
    return run_benchmark(suite, None, out, json.loads(json.dumps(meta)), batch_size, progress, shard,
                         execute=engine.executor(job) if engine else one_by_one(job(pipe)))
