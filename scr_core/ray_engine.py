"""``--engine ray``: the batches of ``caption-folder`` and ``eval`` run on Ray actors, on one machine or a cluster.

Why Ray for work beyond one machine: a Ray Data pipeline keeps a pool of stateful actors (the model
loaded once per actor, SCR's hooks applied per call as in one process), recreates an actor whose
process dies and retries its batch, and joins machines started with ``ray start`` — where
``accelerate launch`` needs every rank started by hand and a dead rank ends the run.
(``accelerate launch`` / ``torchrun`` stay for one machine's GPUs: no extra package, no cluster.)

The outputs are the one-process run's: the driver (this process) cuts the same batches
(``shards.batches_of``), skips what is done, and writes each batch's records as it arrives with the
same resumable writer (``shards.run_shards``: fsynced batch by batch, a record per key exactly
once, the file rewritten in batch order at the end); one dataset row is one whole batch, so left
padding gives the same numerics as in one process. Before any work the model is loaded once in a
Ray task with an actor's resources, to record its dtype, device and attention kernel (the settings a
resume checks); every batch's actor reports its own, and one that differs stops the run.

Retries, set explicitly: an actor whose process dies is recreated without limit
(``max_restarts=-1``: it holds nothing but the model); the batch it was running is retried up to
``task_retries`` times (``max_task_retries``), and an actor that dies while loading the model is
replaced up to ``task_retries`` times in a row (``max_consecutive_actor_init_deaths``); a Python
error raised by SCR's own code is not retried (``actor_task_retry_on_errors=False``): it would fail
again, so the run stops with its message and a rerun resumes. Torch-free at import; Ray is imported
only when an engine starts (the ``ray`` extra).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, SCRError
from .extras import require

log = logging.getLogger(__name__)

TASKS_IN_FLIGHT = 2  # batches queued per actor: the next one's arguments arrive while one runs


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the run goes (the ``--ray-*`` flags).

    address: a cluster's address (``HOST:6379``); None: ``RAY_ADDRESS``, else a local Ray sized to this machine.
    actors: model copies working at once; None: one per GPU of the cluster when actors take GPUs, else 1.
    cpus_per_actor, gpus_per_actor: what Ray reserves for each (torch uses ``cpus_per_actor`` threads).
    task_retries: how often a batch is retried after its actor's process died.
    verbose: forward the actors' own output (warnings, logs) to this terminal.
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    task_retries: int = 3
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.actors is not None and (isinstance(self.actors, bool) or not isinstance(self.actors, int)
                                        or self.actors < 1):
            raise ConfigError(f"--ray-actors must be a positive number of actors (got {self.actors!r})")
        if not _number(self.cpus_per_actor) or self.cpus_per_actor <= 0:
            raise ConfigError(f"--ray-cpus-per-actor must be above 0 (got {self.cpus_per_actor!r})")
        if not _number(self.gpus_per_actor) or self.gpus_per_actor < 0:
            raise ConfigError(f"--ray-gpus-per-actor must be 0 or more (got {self.gpus_per_actor!r})")
        if isinstance(self.task_retries, bool) or not isinstance(self.task_retries, int) or self.task_retries < 0:
            raise ConfigError(f"--ray-task-retries must be 0 or more (got {self.task_retries!r})")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RayEngine:
    """Runs a job's batches on a pool of Ray actors; ``caption_folder(None, …, engine=…)`` and
    ``eval.runner.run(…, None, …, engine=…)`` take it in place of a pipeline.

    load: a picklable function that returns the ``SCRPipeline`` (called once in each actor, on the
    node Ray places it on: the model must be at a path every node sees, or a hub id).
    Use it as a context manager: a Ray it started is shut down on exit, one it joined is left running.
    """

    def __init__(self, load: Callable[[], object], options: RayOptions = RayOptions()) -> None:
        require("ray", "--engine ray")
        self.load, self.options = load, options
        self._numerics: dict | None = None
        self._started = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        import ray

        if self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False

    def connect(self) -> None:
        """Join the cluster (``address``, ``RAY_ADDRESS``), or start a local Ray; a Ray this process has
        already joined (``ray.init`` by the caller) is used as it is."""
        import ray

        if not ray.is_initialized():
            address = self.options.address or os.environ.get("RAY_ADDRESS") or "local"
            extra: dict[str, Any] = {"include_dashboard": False} if address == "local" else {}
            _check_reachable(address)  # Ray itself retries an unreachable address for minutes
            try:
                ray.init(address=address, log_to_driver=self.options.verbose,
                         logging_level=logging.INFO if self.options.verbose else logging.WARNING, **extra)
            except (ConnectionError, TimeoutError, ValueError, RuntimeError) as err:
                raise ConfigError(f"cannot join the Ray cluster at {address} ({_first_line(err)}); start it with "
                                  "`ray start --head` or pass its address with --ray-address") from None
            self._started = True
        if not self.options.verbose:
            import ray.data  # configures its logger on import: quieted after

            for handler in logging.getLogger("ray.data").handlers:  # its log file keeps everything
                if handler.name == "console":
                    handler.setLevel(logging.ERROR)  # its start/finish lines and notices, not our bar

    def actors(self) -> int:
        """``options.actors``, or one per GPU of the cluster when actors take GPUs, else 1."""
        import ray

        if self.options.actors is not None:
            return self.options.actors
        if self.options.gpus_per_actor > 0:
            return max(1, int(ray.cluster_resources().get("GPU", 0) // self.options.gpus_per_actor))
        return 1

    def numerics(self) -> dict:
        """The model's dtype, device type and attention kernel as an actor loads it (recorded in the run
        file, as ``runs.model_numerics`` records them in one process): loaded once in a Ray task."""
        if self._numerics is None:
            import ray

            self.connect()
            probe = ray.remote(num_cpus=self.options.cpus_per_actor, num_gpus=self.options.gpus_per_actor,
                               max_calls=1, max_retries=self.options.task_retries)(_probe)
            with _worker_errors():
                self._numerics = ray.get(probe.remote(self.load))
        return self._numerics

    def executor(self, job: Callable) -> Callable[[list[list]], Iterator[tuple[list, list[dict]]]]:
        """``shards.Execute`` for ``job`` (``CaptionJob`` / ``EvalJob``): every batch on the actor pool,
        yielded with its records as each finishes."""

        def execute(batches: list[list]) -> Iterator[tuple[list, list[dict]]]:
            if batches:
                yield from self._run(job, batches)

        return execute

    def _run(self, job: Callable, batches: list[list]) -> Iterator[tuple[list, list[dict]]]:
        import warnings

        import ray.data

        expected = self.numerics()
        actors = min(self.actors(), len(batches))
        self._check_fits(actors)
        rows = [{"index": index, "batch": pickle.dumps(batch)} for index, batch in enumerate(batches)]
        # a block per batch: even spread
        dataset: ray.data.Dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the restart options have no named parameter yet
            dataset = dataset.map_batches(
                BatchWorker, fn_constructor_kwargs={"load": self.load, "job": job}, batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=TASKS_IN_FLIGHT),
                num_cpus=self.options.cpus_per_actor, num_gpus=self.options.gpus_per_actor or None,
                max_restarts=-1, max_task_retries=self.options.task_retries)
        context = dataset.context
        context.actor_task_retry_on_errors = False
        context.actor_init_retry_on_errors = False
        context.max_consecutive_actor_init_deaths = self.options.task_retries
        context.enable_progress_bars = False  # one bar over items, drawn by shards.run_shards
        context.print_on_execution_start = self.options.verbose
        with _worker_errors():
            # block by block as each arrives: prefetching would hold every result back until the next one
            for block in dataset.iter_batches(batch_size=None, prefetch_batches=0, batch_format="numpy"):
                for index, records, numerics in zip(block["index"], block["records"], block["numerics"]):
                    if json.loads(numerics) != expected:
                        raise ConfigError(f"a Ray actor loaded the model with {numerics}, the run records "
                                          f"{json.dumps(expected)}: every node must load it alike (same hardware "
                                          "kind, --dtype, --attn)")
                    yield batches[int(index)], json.loads(records)

    def _check_fits(self, actors: int) -> None:
        """Warn when the cluster (as it is now) cannot hold every actor: Ray waits for room, or a node."""
        import ray

        total = ray.cluster_resources()
        for name, each in (("CPU", self.options.cpus_per_actor), ("GPU", self.options.gpus_per_actor)):
            if each and actors * each > total.get(name, 0):
                log.warning("the Ray cluster has %g %s(s); %d actor(s) x %g need more: the run waits for them "
                            "(lower --ray-actors, or add nodes)", total.get(name, 0), name, actors, each)


class BatchWorker:
    """One actor of the pool (``ray::MapWorker(MapBatches(BatchWorker))``): the model loaded once,
    then one whole batch of the run per call."""

    def __init__(self, load: Callable[[], object], job: Callable) -> None:
        from .runs import model_numerics

        pipe = load()
        self.work = job(pipe)
        self.numerics = json.dumps(model_numerics(pipe))

    def __call__(self, rows: dict) -> dict:
        import numpy as np

        records = [json.dumps(self.work(pickle.loads(payload))) for payload in rows["batch"]]
        return {"index": rows["index"], "records": np.array(records, dtype=object),
                "numerics": np.array([self.numerics] * len(records), dtype=object)}


def _probe(load: Callable[[], object]) -> dict:
    from .runs import model_numerics

    return model_numerics(load())


@contextmanager
def _worker_errors():
    """An error raised in an actor or task reaches the caller as itself (one line on the command line),
    not wrapped in Ray's exceptions; Ray's own failures become an ``SCRError`` that says to rerun."""
    import ray.exceptions

    try:
        yield
    except Exception as err:
        cause = _user_error(err)
        if cause is err:
            raise
        if cause is not None:
            raise cause from None
        if isinstance(err, ray.exceptions.RayError):
            raise SCRError(f"the Ray run failed ({_first_line(err)}); rerun the same command to resume") from None
        raise


def _user_error(err: BaseException | None) -> BaseException | None:
    """The exception our code raised inside Ray, found through Ray's wrappers, or None."""
    import ray.exceptions

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, ray.exceptions.RayTaskError):
            err = err.cause
            continue
        if not isinstance(err, ray.exceptions.RayError) and type(err).__module__.split(".")[0] != "ray":
            return err
        err = err.__cause__ or err.__context__
    return None


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """``ConfigError`` unless ``HOST:PORT`` accepts a connection (other forms, e.g. ``local``, ``auto`` or
    ``ray://…``, are left to Ray)."""
    host, _, port = address.rpartition(":")
    if not host or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({err.strerror or err}); start it with "
                          "`ray start --head`, or check --ray-address / RAY_ADDRESS") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
