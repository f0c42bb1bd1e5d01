"""Inputs that used to pass silently or give a raw exception: file modes, λ overflow, a non-list file
given to caption-folder, crafted scr_config.json files, and exports killed midway."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scr_core import ConfigError, InputError, ModelLoadError, SCRConfig
from scr_core.caption_files import CaptionMode, caption_targets, list_images, write_captions
from scr_core.cli import main as cli_main
from scr_core.config import check_lam

ROOT = Path(__file__).resolve().parent.parent


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- 1. file modes ---------------------------------------------------------------------------
def test_captions_get_ordinary_modes(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    target = caption_targets([str(p) for p in list_images(tmp_path)], "beside images", output_dir=".")
    previous = os.umask(0o022)
    try:
        write_captions(["first"], target)
        assert stat.S_IMODE(target[0].stat().st_mode) == 0o644
        write_captions(["second"], target, overwrite=True)
        assert stat.S_IMODE(target[0].stat().st_mode) == 0o644
        assert target[0].read_text() == "second\n"
        os.umask(0o077)
        write_captions(["third"], target, overwrite=True)
        assert stat.S_IMODE(target[0].stat().st_mode) == 0o600
    finally:
        os.umask(previous)


def test_caption_mode_is_one_checked_value(tmp_path):
    """Save Captions' widget value and caption-folder's mode are one value; any other text is refused with
    the modes named (it used to mean "beside")."""
    from PIL import Image

    tmp_path = tmp_path.resolve()
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    assert [CaptionMode(mode.value) for mode in CaptionMode] == [CaptionMode.BESIDE_IMAGES, CaptionMode.OUTPUT_FOLDER]
    assert [mode.value for mode in CaptionMode] == ["beside images", "output folder"]  # the node's options
    image = str(tmp_path / "a.png")
    beside = caption_targets([image], CaptionMode.BESIDE_IMAGES, output_dir=tmp_path / "out")
    assert beside == caption_targets([image], "beside images", output_dir=tmp_path / "out") == [tmp_path / "a.txt"]
    assert caption_targets([image], "output folder", tmp_path / "out", "caps") == [tmp_path / "out" / "caps" / "a.txt"]
    for bad in ("beside image", "Output folder", "", None):
        with pytest.raises(InputError, match=r"caption mode .* is not one of: beside images, output folder"):
            caption_targets([image], bad, tmp_path / "refused", "caps")
    assert not (tmp_path / "refused").exists()  # refused before any folder is made


# -- 2. λ that overflows the hooks' numbers ----------------------------------------------------
@pytest.mark.parametrize("lam", [1e308, 1e-50])
def test_lam_overflowing_float32_is_refused(lam):
    with pytest.raises(ConfigError, match="lam="):
        SCRConfig(lam=lam)


def test_lam_checked_in_the_model_dtype():
    check_lam(1e5, "float32")  # fine in float32
    with pytest.raises(ConfigError, match="float16"):
        check_lam(1e5, "float16")  # 1e5 - 1 overflows fp16 (max 65504)
    with pytest.raises(ConfigError, match="float16"):
        check_lam(1e-8, "torch.float16")


def test_cli_refuses_overflowing_lam(tmp_path, capsys):
    assert cli_main(["caption", str(tmp_path / "x.png"), "--lam", "1e308"]) == 2
    assert "lam=" in one_error_line(capsys.readouterr().err)


# -- 3. caption-folder given a file that is not a list of images -----------------------------
def test_caption_folder_refuses_a_file_listing_no_images(tmp_path, capsys):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    for source in (secret, binary):
        assert cli_main(["caption-folder", str(source), "--out", str(tmp_path / "c.jsonl")]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "lists no images" in line and "bash" not in line and "nologin" not in line


# -- exported folders ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory) -> Path:
    from scr_core.testbed.tiny import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny") / "llava", seed=0, num_layers=4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_llava) -> Path:
    from export.exporter import ExportOptions, export

    return export(ExportOptions(model=tiny_llava, out=tmp_path_factory.mktemp("onnx") / "llava"))


def crafted(tmp_path: Path, exported: Path, change) -> Path:
    folder = tmp_path / "crafted"
    shutil.copytree(exported, folder)
    config = json.loads((folder / "scr_config.json").read_text())
    change(config)
    (folder / "scr_config.json").write_text(json.dumps(config))
    return folder


def _set(*keys, value):
    def change(config):
        tree = config
        for key in keys[:-1]:
            tree = tree[key]
        tree[keys[-1]] = value
    return change


CRAFTED = {
    "k_text": (_set("scr", "k", value="abc"), "scr.k"),
    "lam_list": (_set("scr", "lam", value=[1.1]), "scr.lam"),
    "decoder_list": (_set("model", "decoder", value=[1, 2]), "model.decoder"),
    "vision_string": (_set("model", "vision", value="vision.onnx"), "model.vision"),
    "nul_name": (_set("model", "embedding", "filename", value="emb\0edding.onnx"), "model.embedding.filename"),
    "long_name": (_set("model", "vision", "filename", value="v" * 5000 + ".onnx"), "model.vision.filename"),
    "climbing_name": (_set("model", "decoder", "head", "filename", value="../elsewhere/decoder_head.onnx"),
                      "model.decoder.head.filename"),
    "model_list": (_set("model", value=["x"]), "model"),
    "zero_grid": (_set("model", "layout", "grid", value=[0, 0]), "model.layout.grid"),  # was a ZeroDivisionError
    "negative_context": (_set("model", "context_length", value=-5), "model.context_length"),  # was accepted
    "unknown_layout": (_set("model", "layout", "kind", value="rows"), "model.layout.kind"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_config_is_one_error(case, tmp_path, exported, capsys):
    from export.run import main as run_main
    from export.runtime import OnnxVLM

    change, field = CRAFTED[case]
    folder = crafted(tmp_path, exported, change)
    with pytest.raises(ModelLoadError, match="scr_config.json"):
        OnnxVLM(folder, provider="cpu")
    assert run_main([str(tmp_path / "none.png"), "--model", str(folder), "--provider", "cpu"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert field in line, line


def test_graph_name_outside_the_folder_is_refused(tmp_path, exported, capsys):
    from export.runtime import OnnxVLM

    other = tmp_path / "other"
    shutil.copytree(exported, other)
    folder = crafted(tmp_path, exported, _set("model", "vision", "filename", value=str(other / "vision.onnx")))
    for provider in ("cpu", "auto"):
        with pytest.raises(ModelLoadError, match="plain .onnx file name"):
            OnnxVLM(folder, provider=provider)
    link = crafted(tmp_path / "l", exported, _set("model", "vision", "filename", value="linked.onnx"))
    (link / "linked.onnx").symlink_to(other / "vision.onnx")
    with pytest.raises(ModelLoadError, match="outside"):
        OnnxVLM(link, provider="cpu")


def test_a_chat_template_that_loops_in_an_exported_folder_is_stopped(tmp_path, exported):
    from export.runtime import OnnxVLM
    from PIL import Image

    loops = "{% for a in range(100000) %}{% for b in range(100000) %}{{ '' }}{% endfor %}{% endfor %}"
    folder = crafted(tmp_path, exported, _set("model", "processor", "chat_template", value=loops))
    started = time.monotonic()
    # stopped by the time or the memory bound of the renderer's process, whichever it reaches first
    with pytest.raises(ModelLoadError, match="chat template (took|needed) more than"):
        OnnxVLM(folder, provider="cpu").caption(Image.new("RGB", (32, 32)), max_new_tokens=2)
    assert time.monotonic() - started < 30


def test_auto_provider_with_missing_select_graph(tmp_path, exported):
    from export.runtime import OnnxVLM

    folder = crafted(tmp_path, exported, lambda config: None)
    (folder / "select.onnx").unlink()
    with pytest.raises(ModelLoadError, match="select.onnx is missing"):
        OnnxVLM(folder, provider="auto")


def files_and_modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


def test_every_exported_file_follows_the_umask(exported):
    umask = os.umask(0)
    os.umask(umask)
    modes = files_and_modes(exported)
    assert {"decoder_head.onnx.data", "scr_config.json", "tokenizer.json"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)
    assert stat.S_IMODE(exported.stat().st_mode) == 0o777 & ~umask


def test_a_quiet_run_prints_only_what_was_asked(exported, tmp_path):
    """A real ``python -m export.run`` where torch is installed (it hides it): the caption on stdout, the
    timings line on stderr, and nothing of transformers' ("PyTorch was not found", twice, before)."""
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (200, 40, 40)).save(image)
    command = [sys.executable, "-m", "export.run", "--model", str(exported), str(image), "--provider", "cpu",
               "--max-new-tokens", "3"]
    plain = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and "PyTorch" not in plain.stderr + plain.stdout, plain.stderr
    assert one_error_line(plain.stderr).endswith("| CPUExecutionProvider") and plain.stdout.strip()
    shown = subprocess.run([*command, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and shown.stderr == "" and json.loads(shown.stdout)["token_ids"]


# -- 4. the exporter's output folder ---------------------------------------------------------------
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_never_deletes_a_checkpoint_or_a_users_files(tmp_path, tiny_llava, exported, monkeypatch, capsys):
    """``python -m export.onnx --model home/tiny --out home --overwrite`` deleted the checkpoint and the notes
    beside it: --overwrite replaces an earlier export only, never the checkpoint or a folder around or in it."""
    from export.onnx import main as export_main

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_llava, tmp_path / "home" / "tiny")
    (tmp_path / "home" / "notes.txt").write_text("my notes")
    shutil.copytree(exported, tmp_path / "home" / "tiny" / "onnx")  # an export, but inside the checkpoint
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"not an export")
    before = _snapshot(tmp_path)
    for out, message in (("home", "holds the checkpoint home/tiny"), ("home/tiny", "is the checkpoint"),
                         ("home/tiny/onnx", "lies inside the checkpoint"), ("photos", "is not an SCR export")):
        assert export_main(["--model", "home/tiny", "--out", out, "--overwrite"]) == 2, out
        assert message in one_error_line(capsys.readouterr().err)
    assert _snapshot(tmp_path) == before


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, tiny_llava):
    """The kernel refuses the export's writes past 64 KiB (RLIMIT_FSIZE: EFBIG, the write error a full disk
    gives as ENOSPC): one line, no traceback, no folder and no staging folder left."""
    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "export.onnx", "--model", str(tiny_llava), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, preexec_fn=small_files,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert line.startswith("error: cannot write the export into") and "File too large" in line, line
    assert "nothing was written" in line and list(tmp_path.iterdir()) == []


# -- 5. exports killed midway ----------------------------------------------------------------------
def test_stale_staging_of_a_dead_export_is_removed(tmp_path):
    from export.exporter import remove_stale_staging

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f".out.tmp-{dead}-abc"
    live = tmp_path / f".out.tmp-{os.getpid()}-def"
    other = tmp_path / f".other.tmp-{dead}-ghi"
    for folder in (stale, live, other):
        folder.mkdir()
        (folder / "vision.onnx").write_bytes(b"partial")
    remove_stale_staging(tmp_path, "out")
    assert not stale.exists() and live.exists() and other.exists()


def test_sigterm_during_export_cleans_up(tmp_path, tiny_llava):
    out = tmp_path / "llava-onnx"
    child = subprocess.Popen([sys.executable, "-m", "export.onnx", "--model", str(tiny_llava), "--out", str(out)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not any(p.is_file() for p in tmp_path.glob(".llava-onnx.tmp-*/*.onnx")):
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 143, err
    assert "interrupted" in one_error_line(err)
    assert not out.exists() and not list(tmp_path.glob(".llava-onnx.*"))


def test_run_cli_with_an_over_long_model_path(tmp_path, capsys):
    from export.run import main as run_main

    assert run_main([str(tmp_path / "x.png"), "--model", str(tmp_path / ("a" * 5000)), "--provider", "cpu"]) == 2
    assert "File name too long" in one_error_line(capsys.readouterr().err)


def test_the_exporter_reads_layer_ranges_with_the_library_grammar(capsys):
    from export.onnx import parser

    args = parser().parse_args(["--out", "x", "--hook-layers", "0-3,8", "--diag-layers", "8-10"])
    assert args.hook_layers == (0, 1, 2, 3, 8) and args.diag_layers == (8, 9, 10)
    with pytest.raises(SystemExit):
        parser().parse_args(["--out", "x", "--hook-layers", "5-2"])
    assert "reversed" in capsys.readouterr().err
