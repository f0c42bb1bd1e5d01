"""Empty or degenerate captions are counted and named (``scr_core.caption_quality``): the rule, and
``caption-folder``'s summary and stderr on the bundled testbed, which answers the training preset with
nothing (a real output of the model, not a planted one)."""

from __future__ import annotations

import json

import pytest

from scr_core.caption_quality import MAX_LISTED, degenerate_captions, degenerate_line, degenerate_reason
from scr_core.cli import main
from scr_core.defaults import TESTBED_CHECKPOINT


@pytest.mark.parametrize("caption, reason", [
    ("", "empty"), ("   \n", "empty"), (None, "empty"), (".", "no letters"), ("1, 2 ... 3!", "no letters"),
    ("and and and", "a repeated word"), ("And, and. AND", "a repeated word"),
    ("and and next and and and and above above above above and and and and and and with with with with and and and",
     "a loop of few words"),  # the testbed's answer to the tags preset
    ("a cat and a fork.", None), ("ohwx", None), ("cat cat", None), ("ein Hund und eine Katze", None),
    ("a red cup on a white plate beside a fork and a knife on a wooden table", None),
])
def test_the_rule(caption, reason):
    assert degenerate_reason(caption) == reason


def test_the_report_line_counts_and_names_the_files():
    found = degenerate_captions([("a.txt", "a cup."), ("b.txt", "."), ("c.txt", "")])
    assert found == [("b.txt", "no letters"), ("c.txt", "empty")]
    line = degenerate_line(found, 3)
    assert line.startswith("warning: 2 of 3 caption(s) are empty or degenerate") and "b.txt (no letters)" in line
    assert degenerate_line([], 3) == ""
    many = [(f"{i}.txt", "empty") for i in range(MAX_LISTED + 5)]
    assert degenerate_line(many, 20).endswith("and 5 more") and "\n" not in degenerate_line(many, 20)


@pytest.mark.skipif(not (TESTBED_CHECKPOINT / "config.json").is_file(), reason="the testbed is not bundled")
def test_caption_folder_reports_the_empty_captions_it_wrote(tmp_path, capsys):
    from scr_core.demo import DEMO_SCENE, testbed_scene

    folder = tmp_path / "scenes"
    folder.mkdir()
    for index in (7, 9):
        testbed_scene(DEMO_SCENE[0], index).image.save(folder / f"s{index}.png")
    out = tmp_path / "captions.jsonl"
    code = main(["caption-folder", str(folder), "--out", str(out), "--txt", "--no-scr", "--preset", "training",
                 "--max-new-tokens", "8"])
    err = capsys.readouterr().err
    assert code == 0, err
    summary = json.loads((tmp_path / "captions.summary.json").read_text())
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [{"image": r["image"], "reason": degenerate_reason(r["caption"])} for r in records
                if degenerate_reason(r["caption"])]
    assert expected and summary["degenerate"] == expected  # the testbed answers this preset with nothing
    assert f"warning: {len(expected)} of 2 caption(s) are empty or degenerate" in err
    assert "note: the bundled testbed model follows only the descriptive preset" in err
    code = main(["caption-folder", str(folder), "--out", str(tmp_path / "good.jsonl"), "--no-scr",
                 "--max-new-tokens", "16"])
    err = capsys.readouterr().err
    assert code == 0 and "degenerate" not in err and "note:" not in err
    assert json.loads((tmp_path / "good.summary.json").read_text())["degenerate"] == []


def test_prefix_and_suffix_join_a_caption_with_commas():
    from scr_core.caption_folder import with_prefix, with_suffix

    assert with_suffix(with_prefix(" ohwx, ", "a cup."), ", best quality ") == "ohwx, a cup, best quality"
    assert with_suffix("a cup.", "  ") == "a cup." and with_prefix("", "a cup.") == "a cup."


def test_mirrored_targets_keep_the_source_names_and_stay_inside(tmp_path):
    from scr_core.caption_folder import mirrored_targets
    from scr_core.errors import InputError

    base = tmp_path / "out"
    base.mkdir()
    assert mirrored_targets(["a.png", "sub/b.jpg"], base) == [base.resolve() / "a.txt", base.resolve() / "sub" / "b.txt"]
    assert (base / "sub").is_dir()
    (base / "escape").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(InputError, match="leads outside"):
        mirrored_targets(["escape/deeper/c.png"], base)
    assert not (tmp_path / "elsewhere").exists()  # refused before any folder was made out there
    for bad in ("../x.png", "/abs/x.png"):
        with pytest.raises(InputError, match="not a name inside"):
            mirrored_targets([bad], base)
    with pytest.raises(InputError, match="same file"):
        mirrored_targets(["a.png", "a.jpg"], base)


@pytest.mark.skipif(not (TESTBED_CHECKPOINT / "config.json").is_file(), reason="the testbed is not bundled")
def test_caption_folder_txt_dir_mirrors_the_source_and_adds_the_suffix(tmp_path, capsys):
    from scr_core.demo import DEMO_SCENE, testbed_scene

    source = tmp_path / "scenes"
    (source / "sub").mkdir(parents=True)
    testbed_scene(DEMO_SCENE[0], 7).image.save(source / "a.png")
    testbed_scene(DEMO_SCENE[0], 9).image.save(source / "sub" / "b.png")
    txt_dir = tmp_path / "captions"
    args = ["caption-folder", str(source), "--out", str(tmp_path / "c.jsonl"), "--no-scr", "--max-new-tokens", "12",
            "--txt", "--txt-dir", str(txt_dir), "--prefix", "ohwx", "--suffix", "best quality"]
    assert main(args) == 0, capsys.readouterr().err
    records = {json.loads(line)["image"]: json.loads(line)["caption"] for line in
               (tmp_path / "c.jsonl").read_text().splitlines()}
    written = {p.relative_to(txt_dir).as_posix(): p.read_text() for p in txt_dir.rglob("*.txt")}
    assert sorted(written) == ["a.txt", "sub/b.txt"] and not list(source.rglob("*.txt"))
    for name, caption in records.items():
        assert written[name.replace(".png", ".txt")] == f"ohwx, {caption.rstrip().removesuffix('.')}, best quality\n"
    capsys.readouterr()
    assert main(["caption-folder", str(source), "--out", str(tmp_path / "d.jsonl"), "--suffix", "x"]) == 2
    assert "--txt-dir and --suffix apply to the .txt files: add --txt" in capsys.readouterr().err
