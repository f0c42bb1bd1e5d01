"""Data-parallel ``eval`` and ``caption-folder``: two CPU processes on the gloo backend (torchrun and
accelerate launch) give the same merged output as one process; a run killed mid-way resumes
without recomputing or losing anything. Also ``caption-folder`` on its own (unreadable images,
``--txt`` rules, resume)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}  # one thread each: same numerics


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "scr_core", *map(str, args)]


def torchrun(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "scr_core", *map(str, args)]


def accelerate(*args) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
            "-m", "scr_core", *map(str, args)]


def run(command: list[str]) -> subprocess.CompletedProcess:
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def complete_lines(path: Path) -> list[dict]:
    """The records of a file another process may be writing (a last line without its newline skipped)."""
    text = path.read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def without_latency(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "latency_ms"} for r in records]


@pytest.fixture(scope="module")
def pope_data(tmp_path_factory):
    from scr_core.testbed.report import write_test_set

    return write_test_set(tmp_path_factory.mktemp("scale-pope"), 4001, 8) / "pope"  # 48 questions


def eval_args(data, model, out, *extra):
    return ["eval", "pope", "--data", data, "--model", model, "--method", "scr", "--k", "4", "--batch-size", "2",
            "--limit", "6", "--out", out, *extra]


def test_eval_two_processes_equal_one_and_resume_after_a_kill(pope_data, tiny_llava_dir, tmp_path):
    run(cli(*eval_args(pope_data, tiny_llava_dir, tmp_path / "one")))
    one = lines(tmp_path / "one" / "predictions.jsonl")
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert len(one) == 18

    # two ranks with torchrun (gloo): the same merged predictions, in the same order, and summary
    run(torchrun(*eval_args(pope_data, tiny_llava_dir, tmp_path / "two")))
    assert without_latency(lines(tmp_path / "two" / "predictions.jsonl")) == without_latency(one)
    two_summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert {**two_summary, "latency_ms_mean": None} == {**summary, "latency_ms_mean": None}
    assert not list((tmp_path / "two").glob("predictions.rank*"))  # merged and cleaned up

    # kill both ranks once the first answers are on disk, then run the same command again
    out = tmp_path / "killed"
    proc = subprocess.Popen(torchrun("-v", *eval_args(pope_data, tiny_llava_dir, out)), cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(len(complete_lines(p)) for p in out.glob("predictions.rank*")) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before it could be killed"
    ranks = psutil.Process(proc.pid).children(recursive=True)  # the launcher's workers, by their ids
    proc.send_signal(signal.SIGKILL)
    for process in ranks:
        process.send_signal(signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(ranks, timeout=30)
    before = {r["id"]: r for p in out.glob("predictions.rank*") for r in complete_lines(p)}
    assert 2 <= len(before) < 18 and not (out / "summary.json").exists(), "the kill came too late"
    resumed = run(torchrun("-v", *eval_args(pope_data, tiny_llava_dir, out)))
    merged = lines(out / "predictions.jsonl")
    assert without_latency(merged) == without_latency(one)  # nothing lost, same answers
    for record in merged:  # nothing recomputed: the earlier records are kept as written (their latency too)
        if record["id"] in before:
            assert record == before[record["id"]]
    # each rank logs "rank R of N: D done before, T to do"; the other rank's progress bar may share the line
    todo = sum(int(t) for t in re.findall(r"rank \d+ of \d+: \d+ done before, (\d+) to do", resumed.stderr))
    assert todo == 18 - len(before)
    assert json.loads((out / "summary.json").read_text())["scores"] == summary["scores"]


@pytest.fixture
def image_tree(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]
    for i, colour in enumerate(colours):
        Image.new("RGB", (64 + 8 * i, 64), colour).save(root / ("sub" if i % 2 else ".") / f"img{i}.png")
    (root / "broken.png").write_bytes(b"not a png")
    return root


def caption_args(source, model, out, *extra):
    return ["caption-folder", source, "--out", out, "--model", model, "--k", "4", "--max-new-tokens", "4",
            "--batch-size", "2", *extra]


def test_caption_folder_two_processes_equal_one(image_tree, tiny_llava_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(image_tree, copy)
    one = run(cli(*caption_args(image_tree, tiny_llava_dir, tmp_path / "one.jsonl", "--txt")))
    assert "5 of 6 images captioned" in one.stdout and "unreadable: broken.png" in one.stderr
    records = lines(tmp_path / "one.jsonl")
    assert [r["image"] for r in records] == ["broken.png", "img0.png", "img2.png", "img4.png",
                                             "sub/img1.png", "sub/img3.png"]
    assert records[0]["caption"] is None and "cannot read image" in records[0]["error"]
    assert all(r["caption"] and r["plan"]["grids"][0]["sources"] >= 1 and r["entropy"] > 0 for r in records[1:])
    assert (image_tree / "sub" / "img1.txt").read_text() == records[4]["caption"] + "\n"
    assert not (image_tree / "broken.txt").exists()
    summary = json.loads((tmp_path / "one.summary.json").read_text())
    assert summary["unreadable"][0]["image"] == "broken.png" and summary["captioned"] == 5

    run(accelerate(*caption_args(copy, tiny_llava_dir, tmp_path / "two.jsonl", "--txt")))
    two = [json.loads(line.replace(str(copy), str(image_tree)))
           for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert two == records  # the error message names the file in its own folder
    for name in ("img0", "img2", "img4", "sub/img1", "sub/img3"):
        assert (copy / f"{name}.txt").read_text() == (image_tree / f"{name}.txt").read_text()


def test_caption_folder_prefix_goes_into_the_txt_files_only(image_tree, tiny_llava_dir, tmp_path):
    from scr_core.caption_folder import with_prefix

    assert with_prefix(" ohwx, ", "a cup.") == "ohwx, a cup." and with_prefix("", "a cup.") == "a cup."
    run(cli(*caption_args(image_tree, tiny_llava_dir, tmp_path / "p.jsonl", "--txt", "--prefix", "ohwx")))
    records = {r["image"]: r for r in lines(tmp_path / "p.jsonl")}
    assert (image_tree / "img0.txt").read_text() == f"ohwx, {records['img0.png']['caption']}\n"


def test_caption_folder_resumes_and_never_overwrites(image_tree, tiny_llava_dir, tmp_path):
    from scr_core.caption_folder import caption_folder
    from scr_core.errors import InputError
    from scr_core.pipeline import SCRPipeline

    pipe = SCRPipeline.from_pretrained(tiny_llava_dir)
    out = tmp_path / "caps.jsonl"
    full = caption_folder(pipe, image_tree, out, max_new_tokens=4, batch_size=2, progress=False)
    records = lines(out)
    # a crash: the last batch's records lost, the one before cut mid-line
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:3]) + text[3][:10])
    again = caption_folder(pipe, image_tree, out, max_new_tokens=4, batch_size=2, progress=False)
    assert lines(out) == records and again == full
    with pytest.raises(Exception, match="other settings"):
        caption_folder(pipe, image_tree, out, max_new_tokens=5, batch_size=2, progress=False)

    (image_tree / "img0.txt").write_text("mine\n")  # a caption of the user's own is never replaced
    with pytest.raises(InputError, match="img0.txt exists"):
        caption_folder(pipe, image_tree, tmp_path / "new.jsonl", txt=True, max_new_tokens=4, progress=False)
    assert not (tmp_path / "new.jsonl").exists() and (image_tree / "img0.txt").read_text() == "mine\n"
    bad = subprocess.run(cli("caption-folder", image_tree, "--out", tmp_path / "x.txt"), cwd=ROOT,
                         capture_output=True, text=True, env=ENV)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and ".jsonl" in bad.stderr


def test_a_batch_over_the_pixel_budget_is_captioned_in_smaller_runs_with_the_same_captions(image_tree, pipe,
                                                                                             monkeypatch):
    """``SCR_MAX_BATCH_PIXELS`` cuts a batch by the images' header sizes: the broken file costs nothing and is
    reported, the others go one run each here, and greedy captions do not change."""
    from scr_core.caption_folder import caption_batch, list_items

    items = list_items(image_tree)
    whole = caption_batch(pipe, items, scr=None, prompt=None, max_new_tokens=4)
    runs = []
    generate = pipe.generate
    monkeypatch.setattr(pipe, "generate", lambda images, *a, **k: runs.append(len(images)) or generate(images, *a, **k))
    monkeypatch.setenv("SCR_MAX_BATCH_PIXELS", str(64 * 64 + 80 * 64))  # broken, img0 and img2, then one each
    split = caption_batch(pipe, items, scr=None, prompt=None, max_new_tokens=4)
    assert split == whole and [r["image"] for r in split if r["caption"] is None] == ["broken.png"]
    assert runs == [2, 1, 1, 1], runs
