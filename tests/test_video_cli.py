"""The command line on video clips: caption, diagnose (a heatmap strip) and answer take a clip with --frames /
--fps; caption-folder captions a folder of clips and images (.txt beside each, prefix, resumable, a corrupt
clip one entry in the reports); bad clips are one line, never a traceback."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from scr_core.cli import main
from scr_core.testbed.clips import moving_square, write_clip


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    from scr_core.testbed.tiny_families import build

    return str(build("qwen2_vl", tmp_path_factory.mktemp("tiny") / "qwen2_vl"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "square.mp4", moving_square(24, 96, 64), fps=8)


def test_caption_diagnose_and_answer_a_clip(qwen, clip, tmp_path, capsys):
    assert main(["caption", str(clip), "--model", qwen, "--frames", "4", "--max-new-tokens", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["plan"]["grids"]) == 2  # 4 frames, 2 per slice
    heatmap = tmp_path / "strip.png"
    assert main(["diagnose", str(clip), "--model", qwen, "--fps", "4", "--heatmap", str(heatmap)]) == 0
    out = capsys.readouterr().out
    assert out.count("clip slice") == 6 and "frames 0-1" in out  # 3 s at 4 fps = 12 frames, 6 slices
    with Image.open(heatmap) as strip:
        assert strip.width > 6 * 64
    assert main(["answer", str(clip), "Is there a red square?", "--model", qwen, "--frames", "2"]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("argv, message", [
    (["--frames", "0"], "frames must be an integer >= 1"),
    (["--slice-k", "40"], "slice_k=40 does not fit"),
])
def test_bad_sampling_is_one_line(qwen, clip, capsys, argv, message):
    assert main(["caption", str(clip), "--model", qwen, *argv]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_corrupt_clip_and_frames_on_an_image_are_one_line(qwen, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 100)
    assert main(["caption", str(broken), "--model", qwen]) != 0
    err = capsys.readouterr().err
    assert "cannot read video" in err and "Traceback" not in err and err.count("\n") == 1
    picture = tmp_path / "still.png"
    Image.fromarray(moving_square(1)[0]).save(picture)
    assert main(["caption", str(picture), "--model", qwen, "--frames", "4"]) != 0
    assert "sample video clips" in capsys.readouterr().err


def test_caption_folder_of_clips_and_images(qwen, tmp_path, capsys):
    folder = tmp_path / "dataset"
    (folder / "sub").mkdir(parents=True)
    write_clip(folder / "a.mp4", moving_square(16, 96, 64), fps=8)
    write_clip(folder / "sub" / "b.gif", moving_square(12, 64, 64), fps=6)
    Image.fromarray(moving_square(1, 128, 128)[0]).save(folder / "c.png")  # 8x8: room for K = 32
    (folder / "d.webm").write_bytes(b"corrupt" * 40)
    out = tmp_path / "captions.jsonl"
    argv = ["caption-folder", str(folder), "--out", str(out), "--model", qwen, "--txt", "--prefix", "ohwx",
            "--max-new-tokens", "3", "--frames", "4"]
    assert main(argv) == 0
    records = {r["image"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {"a.mp4", "sub/b.gif", "c.png", "d.webm"}
    assert records["a.mp4"]["frames"] == 4 and len(records["a.mp4"]["plan"]["grids"]) == 2
    assert "frames" not in records["c.png"] and len(records["c.png"]["plan"]["grids"]) == 1
    assert records["d.webm"]["caption"] is None and records["d.webm"]["error"].startswith("cannot read clip")
    for name in ("a", "sub/b", "c"):
        text = (folder / f"{name}.txt").read_text()
        assert text.startswith("ohwx, ")
    assert not (folder / "d.txt").exists()
    summary = json.loads(out.with_name("captions.summary.json").read_text())
    assert summary["captioned"] == 3 and [u["image"] for u in summary["unreadable"]] == ["d.webm"]
    assert "unreadable: d.webm" in capsys.readouterr().err
    # resumable: a second run captions nothing again; other sampling is refused
    before = out.read_text()
    assert main(argv) == 0 and out.read_text() == before
    assert main([*argv[:-2], "--frames", "6"]) != 0
    assert "Traceback" not in capsys.readouterr().err
