"""``--engine ray``: ``caption-folder`` and ``eval`` on a pool of Ray actors give the one-process run's files;
an actor process killed mid-run is recreated and its batch retried (every image exactly once); a driver
killed mid-run leaves a folder the same command completes.

One local Ray cluster for the whole file, on loopback (127.0.0.2: Ray's default address is the
machine's network one), started here with ``ray.init`` and stopped with ``ray.shutdown`` (never ``ray
stop``, which would end every cluster on the machine). The commands run as separate drivers joining it
with ``--ray-address``, on the bundled model (no ``--model``) unless a test needs a slower one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from tests.extras import need_extra

ROOT = Path(__file__).resolve().parents[1]
# one torch thread everywhere (Ray gives an actor of 1 CPU one too): the numerics of one process
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
POOL = "MapWorker(MapBatches(BatchWorker))"


@pytest.fixture(scope="module")
def cluster():
    """The address of a 2-CPU Ray cluster on 127.0.0.2 owned by this test process."""
    need_extra("ray")
    import ray

    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a token written by another local ray.init would lock drivers out
    temp = tempfile.mkdtemp(prefix="scr-ray-")  # short: Ray's socket paths must fit in 107 characters
    try:
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.2", _temp_dir=temp,
                 log_to_driver=False, object_store_memory=256 * 1024 * 1024)
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        if auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "scr_core", *map(str, args)]


def run(command: list[str], code: int = 0) -> subprocess.CompletedProcess:
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert out.returncode == code, out.stderr[-3000:]
    return out


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def complete_lines(path: Path) -> list[dict]:
    """The records of a file another process is writing (a last line without its newline skipped)."""
    if not path.is_file():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def to_do(stderr: str) -> int:
    """What the run had left to do, from its ``-v`` log ("rank 0 of 1: D done before, T to do")."""
    return int(re.search(r"rank 0 of 1: \d+ done before, (\d+) to do", stderr).group(1))


def on_ray(address: str, actors: int = 2) -> list[str]:
    return ["--engine", "ray", "--ray-address", address, "--ray-actors", str(actors)]


def image_folder(root: Path, count: int, broken: bool = True) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (64 + 8 * (i % 5), 64), (40 * (i % 6), 200 - 9 * i % 200, 30 + 17 * i % 200)).save(
            root / ("sub" if i % 2 else ".") / f"img{i:02d}.png")
    if broken:
        (root / "broken.png").write_bytes(b"not a png")
    return root


def without_source(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "source"}


def pool_actors() -> list[dict]:
    """The actor pool's actors of this cluster, from the GCS actor table (Ray's state API: the
    ``ray.util.state`` client needs the dashboard, which this cluster does not run)."""
    from ray._private import state

    return [a for a in state.actors().values() if a["ActorClassName"] == POOL]


def own_process(pid: int) -> psutil.Process:
    """``pid`` as a process of the cluster this test started (never another one on the machine)."""
    process = psutil.Process(pid)
    assert process in psutil.Process(os.getpid()).children(recursive=True), f"{pid} is not ours"
    return process


def start(command: list[str], log: Path) -> subprocess.Popen:
    """The command in the background, its stderr into ``log`` (a pipe nobody reads could fill and stall it)."""
    with open(log, "w") as sink:
        return subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=sink)


def wait_for_records(proc: subprocess.Popen, out: Path, count: int) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and len(complete_lines(out)) < count:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before it could be interrupted"


# -- equal to one process ----------------------------------------------------------------------------
def test_caption_folder_on_ray_equals_one_process_and_resumes(cluster, tmp_path):
    images = image_folder(tmp_path / "images", 7)
    copy = tmp_path / "copy"
    shutil.copytree(images, copy)
    args = ["--max-new-tokens", "8", "--batch-size", "2", "--txt"]
    run(cli("caption-folder", images, "--out", tmp_path / "one.jsonl", *args))
    ray_run = run(cli("caption-folder", copy, "--out", tmp_path / "ray.jsonl", *args, *on_ray(cluster)))
    assert "7 of 8 images captioned" in ray_run.stdout and "unreadable: broken.png" in ray_run.stderr
    one = lines(tmp_path / "one.jsonl")
    assert [json.loads(line.replace(str(copy), str(images)))  # the error names the file in its own folder
            for line in (tmp_path / "ray.jsonl").read_text().splitlines()] == one
    assert one[0]["image"] == "broken.png" and "cannot read image" in one[0]["error"]  # reported, not fatal
    assert all(r["caption"] for r in one[1:])
    for record in one[1:]:
        txt = Path(record["image"]).with_suffix(".txt")
        assert (copy / txt).read_text() == (images / txt).read_text() == record["caption"] + "\n"
    summaries = [json.loads((tmp_path / f"{name}.summary.json").read_text()) for name in ("one", "ray")]
    assert without_source(summaries[1]) == json.loads(json.dumps(without_source(summaries[0])).replace(
        str(images), str(copy)))
    assert json.loads((tmp_path / "ray.run.json").read_text())["device"] == "cpu"

    # the same command again captions nothing; other settings are refused before any work
    again = run(cli("-v", "caption-folder", copy, "--out", tmp_path / "ray.jsonl", *args, *on_ray(cluster)))
    assert to_do(again.stderr) == 0
    changed = run(cli("caption-folder", copy, "--out", tmp_path / "ray.jsonl", "--max-new-tokens", "9",
                      "--batch-size", "2", *on_ray(cluster)), code=2)
    assert "other settings" in changed.stderr and "max_new_tokens" in changed.stderr
    assert len(changed.stderr.strip().splitlines()) == 1, changed.stderr


def test_eval_on_ray_equals_one_process(cluster, tmp_path):
    from scr_core.testbed.report import write_test_set

    pope = write_test_set(tmp_path / "bench", 4001, 6) / "pope"
    args = ["eval", "pope", "--data", pope, "--method", "vanilla", "--limit", "4", "--batch-size", "3"]
    run(cli(*args, "--out", tmp_path / "one"))
    run(cli(*args, "--out", tmp_path / "ray", *on_ray(cluster)))
    drop = lambda records: [{k: v for k, v in r.items() if k != "latency_ms"} for r in records]  # noqa: E731
    one = lines(tmp_path / "one" / "predictions.jsonl")
    assert len(one) == 12 and drop(lines(tmp_path / "ray" / "predictions.jsonl")) == drop(one)
    scores = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "ray")]
    assert scores[1]["scores"] == scores[0]["scores"] and scores[0]["entropy_analysis"]
    assert scores[1]["entropy_analysis"] == scores[0]["entropy_analysis"]


# -- faults ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_run(tiny_llava_dir, tmp_path_factory):
    """A folder whose run lasts long enough to be interrupted (a random model writes every one of its
    tokens), and the one-process run's records of it."""
    root = tmp_path_factory.mktemp("faults")
    images = image_folder(root / "images", 12, broken=False)
    args = ["--model", tiny_llava_dir, "--k", "4", "--max-new-tokens", "32", "--batch-size", "1"]
    run(cli("caption-folder", images, "--out", root / "one.jsonl", *args))
    return images, args, lines(root / "one.jsonl")


def test_a_killed_actor_is_recreated_and_every_image_captioned_once(cluster, slow_run, tmp_path):
    images, args, one = slow_run
    copy = tmp_path / "images"
    shutil.copytree(images, copy)
    out = tmp_path / "caps.jsonl"
    proc = start(cli("caption-folder", copy, "--out", out, "--txt", *args, *on_ray(cluster)), tmp_path / "log")
    wait_for_records(proc, out, 1)
    victim = next(a for a in pool_actors() if a["State"] == "ALIVE" and a["Pid"])
    own_process(victim["Pid"]).send_signal(signal.SIGKILL)
    assert len(complete_lines(out)) < len(one), "the kill came too late"
    assert proc.wait(timeout=240) == 0, (tmp_path / "log").read_text()[-3000:]
    assert lines(out) == one  # every image once, in order, as one process captions it
    for record in one:
        assert (copy / Path(record["image"]).with_suffix(".txt")).read_text() == record["caption"] + "\n"
    restarted = next(a for a in pool_actors() if a["ActorID"] == victim["ActorID"])
    assert restarted["NumRestarts"] >= 1  # Ray recreated the actor (max_restarts=-1) and retried its batch


def test_a_killed_driver_leaves_a_folder_the_same_command_completes(cluster, slow_run, tmp_path):
    images, args, one = slow_run
    copy = tmp_path / "images"
    shutil.copytree(images, copy)
    out = tmp_path / "caps.jsonl"
    command = cli("-v", "caption-folder", copy, "--out", out, "--txt", *args, *on_ray(cluster))
    proc = start(command, tmp_path / "log")
    wait_for_records(proc, out, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = complete_lines(out)
    assert 2 <= len(before) < len(one) and not (tmp_path / "caps.summary.json").exists(), "the kill came too late"
    assert not list(copy.rglob("*.txt")) and not list(copy.rglob("*.tmp*"))  # .txt files come at the end, whole
    resumed = run(command)
    assert to_do(resumed.stderr) == len(one) - len({r["image"] for r in before})
    assert lines(out) == one
    for record in one:
        assert (copy / Path(record["image"]).with_suffix(".txt")).read_text() == record["caption"] + "\n"


def test_an_unreachable_cluster_is_one_line(tmp_path):
    need_extra("ray")
    image_folder(tmp_path / "images", 1, broken=False)
    out = run(cli("caption-folder", tmp_path / "images", "--out", tmp_path / "c.jsonl", "--engine", "ray",
                  "--ray-address", "127.0.0.2:1"), code=2)  # nothing listens on port 1: refused at once
    assert out.stderr.startswith("error: cannot reach the Ray cluster at 127.0.0.2:1")
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "c.jsonl").exists()


# -- flags ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--ray-actors", "2"], "--ray-actors only apply with --engine ray"),
    (["--engine", "ray", "--device", "cuda:1"], "use --device cuda, not cuda:1"),
    (["--engine", "ray", "--ray-actors", "0"], "--ray-actors must be a positive number"),
], ids=["without-engine", "device-index", "no-actors"])
def test_bad_engine_flags_are_one_line_before_anything_starts(flags, message, tmp_path, capsys):
    from scr_core.cli import main

    if "--engine" in flags:
        need_extra("ray")
    image_folder(tmp_path / "images", 1, broken=False)
    assert main(["caption-folder", str(tmp_path / "images"), "--out", str(tmp_path / "c.jsonl"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.jsonl").exists()
