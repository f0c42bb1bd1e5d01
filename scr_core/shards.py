"""Data-parallel runs under ``accelerate launch`` / ``torchrun``: deterministic shards, a resumable
prediction file per rank, and one merged file written by rank 0 after the others finish.

Why this shape: the work is cut into the batches a single process would make (fixed by the task
order and the batch size, never by what is left to do), and batch ``b`` goes to rank ``b mod
world``. Left padding makes a prompt's numerics depend on its batch, so keeping every batch whole
is what makes the merged output equal to a one-process run. Each rank appends to its own file
(``predictions.rank1-of-2.jsonl`` beside ``predictions.jsonl``), flushed and fsynced batch by
batch; a restarted rank (any world size) counts every record in the merged file and every rank
file as done, and reruns only the batches it owns that are not complete (a batch cut by a crash
is rerun whole and only its missing records are written). Rank 0 then merges all records, in
batch order, into the one file, atomically, and removes the rank files.
Single-process runs use the same code with one rank; torch.distributed is only touched (through
accelerate) when the launcher started several processes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .datafiles import json_object, read_text
from .errors import DataError, storage_error
from .outputs import write_atomically

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """This process's place in the run: ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls, cpu: bool = True) -> Shard:
        """The shard of a process started by ``accelerate launch`` or ``torchrun`` (one process: 0 of 1).

        cpu: the model runs on the CPU (then the process group uses gloo; on GPUs accelerate's choice).
        """
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        state = PartialState(cpu=cpu)
        return cls(state.process_index, state.num_processes, state.local_process_index)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def owns(self, batch_index: int) -> bool:
        return batch_index % self.world == self.rank

    def barrier(self) -> None:
        """Wait for every rank (no-op in a one-process run)."""
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()

    def file(self, merged: Path) -> Path:
        """This rank's prediction file: the merged file itself in a one-process run."""
        merged = Path(merged)
        if self.world == 1:
            return merged
        return merged.with_name(f"{merged.stem}.rank{self.rank}-of-{self.world}{merged.suffix}")


def launched_shard(device: str) -> tuple[Shard, str]:
    """(this process's shard, the device it should load the model on): with several processes a
    bare ``cuda`` (or ``auto``) becomes ``cuda:<local rank>``, one GPU per process."""
    cpu = device == "cpu" or device.startswith("cpu:")
    shard = Shard.current(cpu=cpu)
    if shard.world > 1 and device in ("cuda", "auto"):
        device = f"cuda:{shard.local_rank}"
    return shard, device


def rank_files(merged: Path) -> list[Path]:
    """Rank files of any world size beside ``merged`` (left by an interrupted multi-process run)."""
    merged = Path(merged)
    return sorted(merged.parent.glob(f"{merged.stem}.rank*-of-*{merged.suffix}"))


def read_records(path: Path, key: str, required: Sequence[str], fix: str, repair: bool = True) -> dict[Any, dict]:
    """Records written so far, by ``key``'s JSON value (a string id, an integer start); a truncated last
    line (a crash mid-write) is dropped (and cut from the file with ``repair``: only by the process that
    writes the file next).

    Every other line must be a JSON object with ``required`` fields, else ``DataError`` naming the
    file and the line (``fix`` says what to do).
    """
    if not path.is_file():
        return {}
    done, lines = {}, read_text(path, "predictions file").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                if repair:
                    log.warning("dropping a half-written last line of %s", path)
                    path.write_text("".join(ln + "\n" for ln in lines[:-1]))
                break
            raise DataError(f"{path}: line {number} is not JSON; {fix}") from None
        record = json_object(record, required, path, number, fix)
        done[record[key]] = record
    return done


def read_all(merged: Path, key: str, required: Sequence[str], fix: str, own: Path | None = None) -> dict[str, dict]:
    """Records of the merged file and of every rank file; only ``own`` (every file when None) is repaired."""
    done: dict[str, dict] = {}
    for path in [Path(merged), *rank_files(merged)]:
        done.update(read_records(path, key, required, fix, repair=own is None or path == own))
    return done


Work = Callable[[list], list[dict]]
# Runs the batches still to do and yields (batch, its records) as each is done, in any order:
# one after another in this process (``one_by_one``), or by Ray actors (``scr_core.ray_engine``).
Execute = Callable[[list[list]], Iterable[tuple[list, list[dict]]]]


def one_by_one(work: Work) -> Execute:
    """``work`` on each batch in turn, in this process."""
    return lambda batches: ((batch, work(list(batch))) for batch in batches)


def run_shards(batches: Sequence[Sequence], key_of: Callable[[Any], str], execute: Execute, merged: Path,
               shard: Shard, key: str, required: Sequence[str], fix: str, progress: bool = True,
               desc: str = "") -> dict[str, dict] | None:
    """Do this rank's unfinished batches (``execute``: here, ``one_by_one(work)``, or on a Ray engine; one
    record per item, carrying ``key``), then merge on rank 0: returns every record by key on rank 0, None
    on the others."""
    merged = Path(merged)
    own = shard.file(merged)
    done = read_all(merged, key, required, fix, own=own)
    mine = [(b, batch) for b, batch in enumerate(batches) if shard.owns(b)
            and any(key_of(item) not in done for item in batch)]
    todo = sum(sum(key_of(item) not in done for item in batch) for _, batch in mine)
    log.info("rank %d of %d: %d done before, %d to do", shard.rank, shard.world, len(done), todo)
    with tqdm(total=todo, disable=not progress or not shard.main, desc=desc) as bar:
        for batch, results in execute([list(batch) for _, batch in mine]):
            kept = [(item, record) for item, record in zip(batch, results)
                    if key_of(item) not in done]  # a batch cut short earlier: rerun whole, keep the old records
            append_durably(own, "".join(json.dumps(record) + "\n" for _, record in kept))
            done.update((key_of(item), record) for item, record in kept)
            bar.update(len(kept))
    shard.barrier()
    if not shard.main:
        return None
    records = read_all(merged, key, required, fix)
    ordered = [records[key_of(item)] for batch in batches for item in batch if key_of(item) in records]
    write_atomically(merged, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in ordered)))
    for path in rank_files(merged):
        path.unlink()
    return {r[key]: r for r in ordered}


def append_durably(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` and fsync it (unbuffered: a failed write leaves nothing to flush later);
    a full disk is one ``StorageError`` line, and the cut last line is dropped when the run resumes."""
    data = memoryview(text.encode("utf-8"))
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    handle = os.open(path, flags, 0o666)
    try:
        while data:
            data = data[os.write(handle, data):]
        os.fsync(handle)
    except OSError as err:
        full = storage_error(err, path)
        if full is None:
            raise
        raise full from None
    finally:
        os.close(handle)


def batches_of(items: Sequence, batch_size: int, group: Callable[[Any], object] | None = None) -> list[list]:
    """``items`` cut into batches of ``batch_size`` in order, within groups of equal ``group(item)``
    (first appearance order): the batches a one-process run makes."""
    groups: dict[object, list] = {}
    for item in items:
        groups.setdefault(group(item) if group else None, []).append(item)
    return [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]
