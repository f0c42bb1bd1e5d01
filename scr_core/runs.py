"""Run bookkeeping shared by every resumable command (``eval``, ``calibrate``, ``caption-folder``):
the sizes checked before anything loads, what of the loaded model is recorded, and the run record
that a resume must match.

Why one place: a resumed run that mixed two settings (another batch size, dtype, device or
attention kernel changes the answers) would put two settings into one score or one caption file;
every command refuses it the same way, naming what differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from .datafiles import load_json
from .errors import ConfigError, DataError
from .outputs import write_atomically


def check_sizes(limit: int | None, batch_size: int) -> None:
    """ConfigError unless ``limit`` (None = every task) and ``batch_size`` are positive integers.

    Checked before anything is loaded or written: a zero limit used to leave an empty run folder.
    """
    if limit is not None and not _positive(limit):
        raise ConfigError(f"the limit (--limit) must be a positive number of tasks (got {limit!r}); "
                          "leave it out to run every task")
    if not _positive(batch_size):
        raise ConfigError(f"the batch size (--batch-size) must be a positive number of tasks (got {batch_size!r})")


def _positive(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def model_numerics(pipe) -> dict:
    """What of the loaded model changes its outputs besides the weights: dtype, device type,
    attention kernel (recorded, so a resume on other hardware or precision is refused)."""
    model = getattr(pipe, "model", None)
    dtype, device = getattr(model, "dtype", None), getattr(model, "device", None)
    return {"dtype": None if dtype is None else str(dtype), "device": getattr(device, "type", None),
            "attention": getattr(getattr(model, "config", None), "_attn_implementation", None)}


def on_cpu(numerics: dict) -> bool:
    """Whether ``model_numerics`` (of a pipeline, or of a Ray engine's actors) say the model runs on the CPU
    (or has no device): what ``Shard.current(cpu=)`` takes."""
    return numerics["device"] in (None, "cpu")


def check_run(out: Path, meta: dict, run_file: Path | None = None) -> None:
    """Record ``meta`` in a new run folder (``run_file``, default ``out/run.json``), or refuse to
    resume one recorded with other settings (its predictions would mix two settings into one score)."""
    run_file = run_file or out / "run.json"
    if run_file.is_file():
        previous = load_json(run_file, "run record")
        if not isinstance(previous, dict):
            raise DataError(f"{run_file} is not a run record (a JSON object); use another --out")
        previous = _flat(previous)
        current = _flat(json.loads(json.dumps(meta)))  # as it would be recorded (tuples as lists)
        changed = sorted(k for k in set(current) | set(previous) if current.get(k) != previous.get(k))
        if changed:
            details = ", ".join(f"{k}: recorded {previous.get(k)!r}, now {current.get(k)!r}" for k in changed)
            raise ConfigError(f"{out} holds a run with other settings ({details}); use another --out, "
                              f"or the settings recorded in {run_file}")
    else:
        out.mkdir(parents=True, exist_ok=True)  # every rank may get here first: same content, atomic
        write_atomically(run_file, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))


def _flat(settings: dict, prefix: str = "") -> dict:
    """{"config": {"k": 8}} -> {"config.k": 8}, so a refusal can name the setting that differs."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
