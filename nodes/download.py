"""A hub download that cannot hold ComfyUI's queue, the disk or a connection: it runs in a child process
(this file run as a script) while the node polls ComfyUI's interrupt flag every 0.2 s, goes into a
staging folder beside the target and is renamed into place only when complete.

A thread cannot be stopped, so a cancelled thread kept its socket and kept writing into deleted files;
a process is killed, which closes its connections and files at once, and then the staging folder is
removed (the child also ends itself when its server is gone). The node ends the download on Cancel,
when the staging folder has not grown for ``SCR_DOWNLOAD_STALL_SECONDS`` (60), when it has run
``SCR_DOWNLOAD_SECONDS`` (3600: a hub that trickles a few bytes a second is never silent) and when the
repo is larger than ``SCR_DOWNLOAD_MAX_GB`` (40), from the repo's file listing before anything is
fetched and from the bytes on disk while it runs. Staging folders a killed server left behind are
removed when the pack starts (``remove_stale_downloads``); a finished download holds
``DOWNLOADED_MARK``, which keeps it out of Load ONNX VLM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

POLL_SECONDS = 0.2
STALL_ENV, SECONDS_ENV, SIZE_ENV = "SCR_DOWNLOAD_STALL_SECONDS", "SCR_DOWNLOAD_SECONDS", "SCR_DOWNLOAD_MAX_GB"
DEFAULT_STALL, DEFAULT_SECONDS, DEFAULT_GB = 60, 3600, 40
DOWNLOADED_MARK = ".scr_downloaded.json"
STAGING = ".{name}.download-{tag}"
_TOTAL, _ERROR = "SCR-TOTAL ", "SCR-ERROR "


def staging_folder(target: Path) -> Path:
    return target.parent / STAGING.format(name=target.name, tag=uuid.uuid4().hex[:8])


def remove_stale_downloads(roots) -> list[Path]:
    """Remove the staging folders (``.<owner>--<name>.download-*``) under ``roots``: a server that starts
    downloads nothing, so they are what a killed one left. Returns what was removed."""
    removed = []
    for root in roots:
        for stale in Path(root).glob(STAGING.format(name="*", tag="*")):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
                removed.append(stale)
    return removed


def _size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*") if folder.is_dir() else ():
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:  # a temporary file renamed meanwhile
            pass
    return total


def _child_error(text: str, fallback: str) -> str:
    """The child's error line, else the last line it printed (e.g. a traceback's)."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(_TOTAL)]
    marked = [line[len(_ERROR):] for line in lines if line.startswith(_ERROR)]
    return (marked or lines or [fallback])[-1]


class _Child:
    """The download process and what it has printed so far (read without blocking)."""

    def __init__(self, repo_id: str, staging: Path, cap: int) -> None:
        env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        self.process = subprocess.Popen([sys.executable, __file__, repo_id, str(staging), str(cap)],
                                        stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert self.process.stdout is not None  # stdout=PIPE
        self.stdout = self.process.stdout
        os.set_blocking(self.stdout.fileno(), False)
        self.text = ""
        self.total: int | None = None

    def read(self) -> None:
        chunk = self.stdout.read() or b""
        self.text = (self.text + chunk.decode("utf-8", "replace"))[-8000:]
        for line in self.text.splitlines():
            if line.startswith(_TOTAL) and self.total is None:
                self.total = int(line[len(_TOTAL):])

    def end(self) -> None:
        """Kill it (its sockets and open files close with it) and wait for it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stdout.close()


def download(repo_id: str, target: Path) -> Path:
    """``repo_id`` downloaded into the new folder ``target``; ComfyUI's interrupt stops it (the staging
    folder is removed); any failure is one ``ModelLoadError`` line."""
    import comfy.model_management as mm
    import comfy.utils

    from scr_core import ModelLoadError
    from scr_core.env import env_number

    stall, limit = env_number(STALL_ENV, DEFAULT_STALL), env_number(SECONDS_ENV, DEFAULT_SECONDS)
    cap = int(env_number(SIZE_ENV, DEFAULT_GB) * 1e9)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(target)
    child = _Child(repo_id, staging, cap)

    def give_up(why: str) -> None:
        raise ModelLoadError(f"cannot download {repo_id}: {why}")

    def over_cap() -> None:
        if child.total is not None and child.total > cap:
            give_up(f"the repo holds {child.total / 1e9:.2f} GB, more than {cap / 1e9:g} GB ({SIZE_ENV})")

    try:  # whatever ends it early (a limit, Cancel, an error) ends the child and removes the staging folder
        started = size_at = time.monotonic()
        size, checked, bar = 0, started, None
        while child.process.poll() is None:
            time.sleep(POLL_SECONDS)
            child.read()
            mm.throw_exception_if_processing_interrupted()
            over_cap()
            now = time.monotonic()
            if now - started > limit:
                give_up(f"it took longer than {limit:g} s ({SECONDS_ENV}); try again later")
            if now - checked > 2:
                checked, now_size = now, _size(staging)
                if now_size > cap:
                    give_up(f"it passed {cap / 1e9:g} GB ({SIZE_ENV})")
                if child.total:  # bytes so far of the repo's, on the Load VLM node
                    bar = bar or comfy.utils.ProgressBar(child.total)
                    bar.update_absolute(min(now_size, child.total), child.total)
                if now_size != size:
                    size, size_at = now_size, now
                elif now - size_at > stall:
                    give_up(f"the hub sent nothing for {stall:g} s ({STALL_ENV}); try again later")
        child.read()
        child.end()
        over_cap()  # the child stopped there itself
        if child.process.returncode != 0:
            give_up(_child_error(child.text, f"the download process ended with {child.process.returncode}"))
    except BaseException:
        child.end()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not (staging / "config.json").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelLoadError(f"{repo_id} holds no config.json: not a checkpoint folder")
    shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
    (staging / DOWNLOADED_MARK).write_text(json.dumps({"repo_id": repo_id}) + "\n")
    try:
        if target.exists():
            raise FileExistsError(f"{target} appeared during the download")
        os.rename(staging, target)  # atomic; refuses a folder that appeared meanwhile
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelLoadError(f"cannot move the download of {repo_id} to {target}: {err}") from None
    return target


def _exit_with(parent: int) -> None:
    """End the child when its server is gone (killed, crashed), so no orphan keeps the transfer going."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(3)


def _main(repo_id: str, staging: str, cap: str) -> int:
    """The child: print the repo's size (``SCR-TOTAL n``, when the hub lists it), then download unless it
    is over ``cap`` bytes; an error is its last line."""
    from huggingface_hub import HfApi, constants, snapshot_download

    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    try:
        total = sum(getattr(f, "size", 0) or 0 for f in HfApi().list_repo_tree(repo_id, recursive=True))
        print(f"{_TOTAL}{total}", flush=True)
        if total > int(cap):
            return 2
    except Exception:  # no listing: the size is then watched on disk only
        pass
    try:
        snapshot_download(repo_id, local_dir=staging, etag_timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except Exception as err:  # network, auth, missing repo: the node reports the last line
        print(_ERROR + ((str(err).strip().splitlines() or [type(err).__name__])[0]), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    here = Path(__file__).resolve().parent  # the pack's modules (shared, memory, ...) must not shadow others
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.exit(_main(*sys.argv[1:4]))
