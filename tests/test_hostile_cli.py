"""The command line against hostile input, as a user who wants to break it would try it: strips that a processor
would blow up (refused in one line, in a bounded amount of memory, measured in a separate process), caption
files only beside images, a folder in a caption's place, a prefix with control characters or a megabyte of
text, a full disk, and paths no file system takes. Each is one ``error: …`` line or a per-file report."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from scr_core.cli import main
from scr_core.errors import StorageError, exit_code
from scr_core.shards import append_durably

ROOT = Path(__file__).resolve().parents[1]


def run_measured(args: list[str], tmp_path: Path, limit_file_bytes: int | None = None) -> tuple[int, str, int]:
    """(exit code, stderr, peak resident bytes) of ``python -m scr_core ARGS`` in its own process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}

    def limit_files():  # the storage refuses writes past this size ("File too large"), as a full disk does
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    err_path = tmp_path / f"stderr-{len(list(tmp_path.glob('stderr-*')))}.txt"
    with open(err_path, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "scr_core", *args], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=err,
                                   preexec_fn=limit_files if limit_file_bytes else None)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, err_path.read_text(), usage.ru_maxrss * 1024  # ru_maxrss: KiB on Linux


def one_error_line(err: str, fragment: str) -> None:
    """The run ended in one ``error:`` line holding ``fragment`` (an info line such as ``model: …`` may precede it)."""
    lines = err.strip().splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:] and fragment in lines[-1], err
    assert "Traceback" not in err and "please report it" not in err, err


@pytest.mark.parametrize("family", ["testbed", "qwen2_vl"])
def test_extreme_aspect_ratios_are_refused_in_one_line_with_low_memory(family, family_dir, tmp_path):
    """Unchecked, the testbed's CLIP processor (shortest edge 96) makes a 288,000x96 float array of the
    3000x1 PNG (+330 MB) and a 2,880,000x96 one of the 30000x1 (+3.3 GB); Qwen2-VL's raises a raw ValueError."""
    model = [] if family == "testbed" else ["--model", str(family_dir(family)), "--no-scr"]
    normal = tmp_path / "normal.png"
    Image.new("RGB", (64, 48), (30, 120, 200)).save(normal)
    code, err, normal_peak = run_measured(["caption", str(normal), "--max-new-tokens", "2", *model], tmp_path)
    assert code == 0, err
    for width, height in ((3000, 1), (30000, 1)):
        strip = tmp_path / f"strip{width}.png"
        Image.new("RGB", (width, height), (200, 10, 10)).save(strip)
        assert strip.stat().st_size < 500  # a tiny upload
        code, err, peak = run_measured(["caption", str(strip), "--max-new-tokens", "2", *model], tmp_path)
        assert code == 2
        one_error_line(err, f"is {width}x{height}, an aspect ratio of {width:,}:1; up to 200:1 is accepted")
        assert peak < normal_peak + 50 * 2**20, (width, peak, normal_peak)


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for index, name in enumerate(("a.png", "b.png", "c.jpg")):
        Image.new("RGB", (40 + 8 * index, 32), (60 * index, 90, 160)).save(folder / name)
    return folder


def caption_folder(source, out, *extra, model) -> int:
    return main(["caption-folder", str(source), "--out", str(out), "--txt", "--max-new-tokens", "3",
                 "--batch-size", "2", "--model", str(model), *extra])


def test_txt_files_go_beside_images_only_never_over_a_listed_text_file(dataset, tiny_llava_dir, tmp_path, capsys):
    (dataset / "notes.txt").write_text("my notes\n")
    (dataset / "merges.txt").write_text("a b\n")
    (dataset / "list.txt").write_text("a.png\nnotes.txt\nmerges.txt\n")
    assert caption_folder(dataset / "list.txt", tmp_path / "caps.jsonl", model=tiny_llava_dir) == 0
    assert (dataset / "notes.txt").read_text() == "my notes\n" and (dataset / "merges.txt").read_text() == "a b\n"
    assert (dataset / "a.txt").read_text().strip()
    summary = json.loads((tmp_path / "caps.summary.json").read_text())
    assert summary["txt_written"] == 1 and sorted(u["image"] for u in summary["unreadable"]) == ["merges.txt",
                                                                                                "notes.txt"]


def test_a_folder_in_a_captions_place_is_reported_and_the_others_are_written(dataset, tiny_llava_dir, tmp_path,
                                                                             capsys):
    (dataset / "b.txt").mkdir()
    assert caption_folder(dataset, tmp_path / "caps.jsonl", "--overwrite-txt", model=tiny_llava_dir) == 0
    err = capsys.readouterr().err
    assert f"not written: {dataset.resolve() / 'b.txt'}: {dataset.resolve() / 'b.txt'} is a folder" in err
    assert "Traceback" not in err and (dataset / "a.txt").is_file() and (dataset / "c.txt").is_file()
    summary = json.loads((tmp_path / "caps.summary.json").read_text())
    assert summary["txt_written"] == 2 and [f["image"] for f in summary["txt_failed"]] == ["b.png"]


def test_the_prefix_is_sanitised_and_a_huge_one_refused_before_the_model_loads(dataset, tiny_llava_dir, tmp_path,
                                                                               capsys, monkeypatch):
    assert caption_folder(dataset, tmp_path / "caps.jsonl", "--prefix", "ohwx\x00\nstyle\r,", model=tiny_llava_dir) == 0
    texts = [p.read_text() for p in sorted(dataset.glob("*.txt"))]
    assert len(texts) == 3 and all(t.startswith("ohwx style, ") and t.count("\n") == 1 for t in texts)
    import scr_core.pipeline as pipeline

    monkeypatch.setattr(pipeline.SCRPipeline, "from_pretrained", lambda *a, **k: pytest.fail("the model loaded"))
    capsys.readouterr()
    assert caption_folder(dataset, tmp_path / "again.jsonl", "--prefix", "x" * 2**20, model=tiny_llava_dir) == 2
    one_error_line(capsys.readouterr().err, "the prefix is 1,048,576 characters, more than 200")


def test_a_full_disk_is_one_line_and_the_run_resumes(dataset, tiny_llava_dir, tmp_path):
    for index in range(27):
        Image.new("RGB", (48, 40), (9 * index, 60, 90)).save(dataset / f"more{index:02d}.png")
    out = tmp_path / "caps.jsonl"
    args = ["caption-folder", str(dataset), "--out", str(out), "--max-new-tokens", "3", "--batch-size", "4",
            "--model", str(tiny_llava_dir)]
    code, err, _ = run_measured(args, tmp_path, limit_file_bytes=2500)  # room for about 12 of 30 records
    assert code == 2
    one_error_line(err, f"cannot write {out}: File too large; free some space")
    kept = out.read_text().splitlines()
    assert 0 < len(kept) < 20
    code, err, _ = run_measured(args, tmp_path)  # space again: the run resumes
    assert code == 0, err
    assert len(out.read_text().splitlines()) == 30


def test_a_write_the_disk_refuses_is_one_line_naming_the_file(capsys):
    with pytest.raises(StorageError, match="cannot write /dev/full: No space left on device; free some space"):
        append_durably(Path("/dev/full"), "a record\n")

    def fills_the_disk():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.onnx")

    assert exit_code(fills_the_disk) == 2
    assert capsys.readouterr().err == ("error: cannot write /data/out.onnx: No space left on device; free some space "
                                       "(or write somewhere else) and run again: what was written is kept\n")


@pytest.mark.parametrize("name, fragment", [("x" * 300 + ".png", "has a name longer than 255 bytes"),
                                            ("dir/" * 1100 + "a.png", "more than the 4,096 a path may have")])
def test_paths_no_file_system_takes_are_one_line(name, fragment, dataset, tiny_llava_dir, tmp_path, capsys):
    assert main(["caption", str(tmp_path / name), "--model", str(tiny_llava_dir)]) == 2
    one_error_line(capsys.readouterr().err, fragment)
    assert main(["caption-folder", str(tmp_path / name), "--out", str(tmp_path / "c.jsonl")]) == 2
    one_error_line(capsys.readouterr().err, fragment)
    listing = dataset / "list.txt"
    listing.write_text(f"a.png\n{name}\n")
    assert main(["caption-folder", str(listing), "--out", str(tmp_path / "c.jsonl")]) == 2
    one_error_line(capsys.readouterr().err, f"{listing} line 2: '")
