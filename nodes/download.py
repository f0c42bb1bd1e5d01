"""A hub download that cannot hold ComfyUI's queue: it runs in a daemon thread while the node polls
ComfyUI's interrupt flag every 0.2 s, goes into a staging folder beside the target and is renamed
into place only when complete. huggingface_hub's requests time out (``HF_HUB_ETAG_TIMEOUT``,
``HF_HUB_DOWNLOAD_TIMEOUT``), but not every API call does, so the node also gives up when the staging
folder has not grown for ``SCR_DOWNLOAD_STALL_SECONDS`` (60 by default); the abandoned daemon thread
removes what it wrote when its request ends."""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from pathlib import Path

POLL_SECONDS = 0.2
STALL_ENV = "SCR_DOWNLOAD_STALL_SECONDS"


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def download(repo_id: str, target: Path) -> Path:
    """``repo_id`` downloaded into the new folder ``target``; ComfyUI's interrupt stops it (the staging
    folder is removed); any failure is one ``ModelLoadError`` line."""
    import comfy.model_management as mm
    import comfy.utils
    from huggingface_hub import HfApi, constants, snapshot_download

    from scr_core import ModelLoadError

    staging = target.parent / f".{target.name}.download-{uuid.uuid4().hex[:8]}"
    cancelled, outcome = threading.Event(), {}

    def work() -> None:
        try:
            try:  # the repo's size, for the node's progress bar (none if the hub does not list it)
                files = HfApi().list_repo_tree(repo_id, recursive=True)
                outcome["total"] = sum(getattr(f, "size", 0) or 0 for f in files)
            except Exception:
                pass
            snapshot_download(repo_id, local_dir=staging, etag_timeout=constants.HF_HUB_ETAG_TIMEOUT)
            outcome["done"] = True
        except BaseException as err:  # network, auth, missing repo: reported by the node
            outcome["error"] = err
        finally:
            if cancelled.is_set():
                shutil.rmtree(staging, ignore_errors=True)

    target.parent.mkdir(parents=True, exist_ok=True)
    worker = threading.Thread(target=work, name=f"scr-download-{repo_id}", daemon=True)
    worker.start()
    stall = float(os.environ.get(STALL_ENV, "") or 60)
    size, grown, checked = 0, time.monotonic(), time.monotonic()
    bar = None
    while worker.is_alive():
        worker.join(POLL_SECONDS)
        if mm.processing_interrupted():
            cancelled.set()
            shutil.rmtree(staging, ignore_errors=True)
            mm.throw_exception_if_processing_interrupted()
        if time.monotonic() - checked > 2:
            checked, now_size = time.monotonic(), _size(staging)
            if outcome.get("total"):  # bytes so far of the repo's, on the Load VLM node
                bar = bar or comfy.utils.ProgressBar(outcome["total"])
                bar.update_absolute(min(now_size, outcome["total"]), outcome["total"])
            if now_size != size:
                size, grown = now_size, checked
            elif checked - grown > stall and worker.is_alive():
                cancelled.set()
                shutil.rmtree(staging, ignore_errors=True)
                raise ModelLoadError(f"cannot download {repo_id}: the hub sent nothing for {stall:g} s "
                                     f"({STALL_ENV}); try again later")
    if "error" in outcome:
        shutil.rmtree(staging, ignore_errors=True)
        err = outcome["error"]
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelLoadError(f"cannot download {repo_id}: {first_line}")
    if not (staging / "config.json").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelLoadError(f"{repo_id} holds no config.json: not a checkpoint folder")
    shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
    try:
        if target.exists():
            raise FileExistsError(f"{target} appeared during the download")
        os.rename(staging, target)  # atomic; refuses a folder that appeared meanwhile
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelLoadError(f"cannot move the download of {repo_id} to {target}: {err}") from None
    return target
