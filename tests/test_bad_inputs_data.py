"""Bad images and bad eval inputs: one clear SCRError each (never a traceback), and hostile but
valid images load upright, RGB, at the right size. Torch-free: the eval runs use a fake pipeline."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFile

from scr_core.cli import main
from scr_core.config import SCRConfig
from scr_core.errors import ConfigError, DataError, InputError
from scr_core.eval.runner import read_predictions, run
from scr_core.images import MAX_IMAGE_PIXELS, load_image
from scr_core.testbed.benchmarks import write_benchmarks
from scr_core.testbed.scenes import generate_scenes

ROOT = Path(__file__).resolve().parents[1]


# -- images that cannot be used ------------------------------------------------------------------

def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` (gray, 8 bit) with almost no pixel data:
    what a decompression bomb looks like before decoding, without allocating it here."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))
    return path


def palette_bomb(path: Path) -> Path:
    """A ~10 KB palette PNG of 9000x9000 (81 MP, under PIL's own warning limit of ~89 MP)."""
    Image.new("P", (9000, 9000)).save(path)
    return path


def truncated_png(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return palette_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


def written(name: str, data: bytes):
    def write(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name
    return write


BAD_IMAGES = [
    # (name, make the input from (tmp_path, the 81 MP palette PNG), expected error, message fragment)
    ("missing file", lambda d, bomb: d / "nope.png", InputError, "image file not found"),
    ("truncated PNG", lambda d, bomb: truncated_png(d / "half.png"), InputError, "cannot read image"),
    ("directory", lambda d, bomb: d, InputError, "is a folder, not an image file"),
    ("zero-byte file", lambda d, bomb: written("empty.jpg", b"")(d), InputError, "empty (0 bytes)"),
    ("text file", lambda d, bomb: written("notes.png", b"hello")(d), InputError, "cannot identify image file"),
    ("81 MP palette PNG", lambda d, bomb: bomb, InputError, "9000x9000 = 81,000,000 pixels"),
    ("100 MP header (PIL warns)", lambda d, bomb: png_header(d / "w.png", 10_000, 10_000), InputError,
     "too large: Image size (100000000 pixels)"),
    ("196 MP header (PIL refuses)", lambda d, bomb: png_header(d / "e.png", 14_000, 14_000), InputError,
     "too large: Image size (196000000 pixels)"),
    ("81 MP array", lambda d, bomb: np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (9000, 9000, 3)), InputError,
     "more than the limit of 64,000,000"),
    ("81 MP PIL image (lazy)", lambda d, bomb: Image.open(bomb), InputError, "9000x9000 = 81,000,000"),
    ("wrong type", lambda d, bomb: 42, InputError, "expected an image path"),
]


@pytest.mark.parametrize("name, make, error, fragment", BAD_IMAGES, ids=[row[0] for row in BAD_IMAGES])
def test_unusable_images_raise_one_clear_error(name, make, error, fragment, tmp_path, bomb, monkeypatch):
    bad = make(tmp_path, bomb)

    def no_decoding(self):
        raise AssertionError("the pixels were decoded before the size was checked")

    if " MP " in name:  # too large: refused from the header alone
        monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(error, match=re.escape(fragment)):
        load_image(bad)


def test_the_limit_is_below_pils_bomb_warning():
    """Ours must trip first, or PIL's warning (an error under -W error) would come before our message."""
    assert MAX_IMAGE_PIXELS < Image.MAX_IMAGE_PIXELS


def test_an_over_limit_png_is_refused_from_its_header_in_little_memory(bomb):
    """Peak resident memory of a fresh process (tracemalloc would not see PIL's C buffers):
    decoding the 81 MP palette PNG to RGB would take hundreds of MB."""
    script = (
        "import resource, time\n"
        "from scr_core.images import load_image\n"
        "from scr_core.errors import InputError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "start = time.perf_counter()\n"
        f"try:\n    load_image({str(bomb)!r})\nexcept InputError:\n    pass\n"
        "else:\n    raise SystemExit('not refused')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, time.perf_counter() - start)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    grown_kb, seconds = done.stdout.split()
    assert int(grown_kb) < 20_000  # KB on Linux
    assert float(seconds) < 1.0


# -- hostile but valid images --------------------------------------------------------------------

def exif_rotated(path: Path) -> Path:
    """A 320x240 JPEG (left half red, right half blue) tagged orientation 6: shown turned 90° clockwise."""
    image = Image.new("RGB", (320, 240), (255, 0, 0))
    image.paste((0, 0, 255), (160, 0, 320, 240))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path.with_suffix(".jpg"), exif=exif, quality=95)
    return path.with_suffix(".jpg")


def animated_gif(path: Path) -> Path:
    frames = [Image.new("RGB", (12, 8), color) for color in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(path.with_suffix(".gif"), save_all=True, append_images=frames[1:], duration=50, loop=0)
    return path.with_suffix(".gif")


def saved(image: Image.Image, name: str, **kwargs):
    def write(path: Path) -> Path:
        image.save(path.with_name(name), **kwargs)
        return path.with_name(name)
    return write


def transparent_palette() -> Image.Image:
    image = Image.new("P", (9, 7), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    image.paste(0, (0, 0, 3, 7))  # index 0 (black) is transparent: should show white
    image.info["transparency"] = 0
    return image


def red(p) -> bool:
    return p[0] > 200 and p[1] < 60 and p[2] < 60


def blue(p) -> bool:
    return p[2] > 200 and p[0] < 60 and p[1] < 60


VALID_IMAGES = [
    # (name, writer(path) -> file, expected (width, height), {(x, y): predicate of the pixel})
    ("1x1", saved(Image.new("RGB", (1, 1), (9, 8, 7)), "one.png"), (1, 1), {(0, 0): lambda p: p == (9, 8, 7)}),
    ("16-bit gray PNG", saved(Image.fromarray(np.full((6, 10), 40000, np.uint16)), "gray16.png"), (10, 6),
     {(3, 3): lambda p: p[0] == p[1] == p[2] > 0}),
    ("CMYK JPEG", saved(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "cmyk.jpg", quality=95), (30, 20),
     {(15, 10): red}),
    ("animated GIF", animated_gif, (12, 8), {(5, 5): red}),
    ("EXIF orientation 6", exif_rotated, (240, 320), {(120, 40): red, (120, 280): blue}),
    ("LA PNG", saved(Image.new("LA", (10, 6), (0, 0)), "la.png"), (10, 6), {(2, 2): lambda p: p == (255, 255, 255)}),
    ("P with transparency", saved(transparent_palette(), "ptrans.png", transparency=0), (9, 7),
     {(1, 1): lambda p: p == (255, 255, 255), (6, 3): lambda p: p == (255, 0, 0)}),
    ("1-bit", saved(Image.new("1", (7, 5), 1), "bits.png"), (7, 5), {(3, 3): lambda p: p == (255, 255, 255)}),
]


@pytest.mark.parametrize("as_pil", [False, True], ids=["path", "PIL image"])
@pytest.mark.parametrize("name, write, size, pixels", VALID_IMAGES, ids=[row[0] for row in VALID_IMAGES])
def test_hostile_but_valid_images_load_upright_in_rgb(name, write, size, pixels, as_pil, tmp_path):
    path = write(tmp_path / "image")
    source = Image.open(path) if as_pil else path
    rgb = load_image(source)
    assert rgb.mode == "RGB" and rgb.size == size
    for xy, check in pixels.items():
        assert check(rgb.getpixel(xy)), (xy, rgb.getpixel(xy))


def test_a_pil_image_passed_in_is_not_changed(tmp_path):
    opened = Image.open(exif_rotated(tmp_path / "r.jpg"))
    assert load_image(opened).size == (240, 320)
    assert opened.size == (320, 240) and opened.getexif().get(0x0112) == 6


# -- eval: bad settings and bad run folders ------------------------------------------------------

class FakePipe:
    """Gives one answer to everything: enough for the runner, no model."""

    def __init__(self, answer: str = "yes") -> None:
        self.answer, self.calls = answer, 0

    def generate(self, images, prompts, scr=None, diagnose=False, **kwargs):
        self.calls += 1
        return [SimpleNamespace(text=self.answer, diagnosis=None) for _ in prompts]


@pytest.fixture(scope="module")
def pope_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    write_benchmarks(generate_scenes(3, seed=5), root, seed=0)
    return root / "pope"


def eval_argv(pope_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "pope", "--data", str(pope_dir), "--out", str(out), *extra]


@pytest.mark.parametrize("flags, fragment", [
    (["--limit", "0"], "limit (--limit) must be a positive number of tasks (got 0)"),
    (["--limit", "-1"], "limit (--limit) must be a positive number of tasks (got -1)"),
    (["--batch-size", "0"], "batch size (--batch-size) must be a positive number of tasks (got 0)"),
    (["--batch-size", "-4"], "batch size (--batch-size) must be a positive number of tasks (got -4)"),
])
def test_eval_sizes_are_refused_before_the_model_loads_or_a_folder_exists(flags, fragment, pope_dir, tmp_path,
                                                                         capsys, monkeypatch):
    import scr_core.cli

    def no_model(args):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(scr_core.cli, "_pipeline", no_model)
    out = tmp_path / "run"
    assert main(eval_argv(pope_dir, out, *flags)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"limit": 0}, "limit"), ({"limit": -1}, "limit"), ({"limit": 1.5}, "limit"),
    ({"batch_size": 0}, "batch size"), ({"batch_size": True}, "batch size"),
])
def test_run_refuses_bad_sizes_before_creating_anything(kwargs, fragment, pope_dir, tmp_path):
    pipe = FakePipe()
    with pytest.raises(ConfigError, match=f"the {fragment} .* must be a positive number"):
        run("pope", pope_dir, pipe, "scr", tmp_path / "run", **kwargs, progress=False)
    assert not (tmp_path / "run").exists() and pipe.calls == 0


def prediction(task_id: str) -> str:
    return json.dumps({"id": task_id, "text": "yes", "entropy": None, "latency_ms": 1.0})


BAD_PREDICTIONS = [
    # (lines of predictions.jsonl, message fragment)
    ([prediction("random/1"), json.dumps({"text": "yes"}), prediction("random/2")], "line 2 has no field 'id'"),
    ([prediction("random/1"), json.dumps({"text": "yes"})], "line 2 has no field 'id'"),  # valid last line
    ([json.dumps(["random/1", "yes"])], "line 1 is a JSON array, expected an object"),
    ([prediction("random/1"), "17"], "line 2 is a JSON number"),
    ([json.dumps({"id": "random/1"})], "line 1 has no field 'text'"),
    (['{"id": "random/1", "te', prediction("random/2")], "line 1 is not JSON"),
]


@pytest.mark.parametrize("lines, fragment", BAD_PREDICTIONS)
def test_malformed_prediction_lines_name_the_file_and_line(lines, fragment, tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    with pytest.raises(DataError, match=f"predictions.jsonl: {fragment}"):
        read_predictions(path)


def test_a_half_written_last_line_is_still_dropped(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text(prediction("random/1") + "\n" + '{"id": "random/2", "te')
    assert list(read_predictions(path)) == ["random/1"]
    assert path.read_text() == prediction("random/1") + "\n"


def test_resume_over_a_malformed_line_is_a_cli_error(pope_dir, tmp_path, capsys, monkeypatch):
    import scr_core.cli

    monkeypatch.setattr(scr_core.cli, "_pipeline", lambda args: FakePipe())
    out = tmp_path / "run"
    assert main(eval_argv(pope_dir, out, "--limit", "2")) == 0
    with open(out / "predictions.jsonl", "a") as sink:
        sink.write('{"text": "no"}\n')
    capsys.readouterr()
    assert main(eval_argv(pope_dir, out, "--limit", "2")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 7 has no field 'id'" in err and "Traceback" not in err


def test_resume_with_another_batch_size_is_refused(pope_dir, tmp_path):
    out = tmp_path / "run"
    run("pope", pope_dir, FakePipe(), "scr", out, limit=2, batch_size=2, progress=False)
    assert json.loads((out / "run.json").read_text())["batch_size"] == 2
    with pytest.raises(ConfigError, match="other settings .*batch_size: recorded 2, now 3"):
        run("pope", pope_dir, FakePipe(), "scr", out, limit=2, batch_size=3, progress=False)
    with pytest.raises(ConfigError, match=r"config\.k: recorded 32, now 8"):
        run("pope", pope_dir, FakePipe(), "scr", out, SCRConfig(k=8), limit=2, batch_size=2, progress=False)
    assert run("pope", pope_dir, FakePipe(), "scr", out, limit=2, batch_size=2, progress=False)["n"] == 6


# -- eval: compare keeps every run ---------------------------------------------------------------

def table_rows(table: str) -> list[str]:
    return [line.split("|")[1].strip() for line in table.splitlines()[2:] if line.startswith("|")]


def test_compare_keeps_runs_that_share_a_method(pope_dir, tmp_path, capsys):
    for name, method, k in (("v", "vanilla", 32), ("scr32", "scr", 32), ("scr8", "scr", 8)):
        run("pope", pope_dir, FakePipe(), method, tmp_path / name, SCRConfig(k=k), limit=2, progress=False)
    table_file = tmp_path / "t.md"
    argv = ["compare", *(str(tmp_path / n) for n in ("v", "scr32", "scr8")), "--out", str(table_file)]
    assert main(argv) == 0
    rows = table_rows(table_file.read_text())
    assert rows == ["vanilla", "scr (k=32)", "scr (k=8)"]
    assert "(+0.0)" in table_file.read_text()  # deltas against vanilla


def test_compare_labels_by_run_settings_and_folder(pope_dir, tmp_path):
    run("pope", pope_dir, FakePipe(), "vanilla", tmp_path / "v", limit=2, progress=False)
    run("pope", pope_dir, FakePipe(), "scr", tmp_path / "a", limit=2, progress=False)
    run("pope", pope_dir, FakePipe(), "scr", tmp_path / "b", limit=2, progress=False)
    run("pope", pope_dir, FakePipe(), "scr", tmp_path / "c", limit=2, batch_size=4, progress=False)
    out = tmp_path / "t.md"
    runs = [str(tmp_path / n) for n in ("v", "a", "b", "c")]
    assert main(["compare", *runs, str(tmp_path / "a"), "--out", str(out)]) == 0
    assert table_rows(out.read_text()) == ["vanilla (batch_size=8)", runs[1], runs[2], "scr (batch_size=4)"]


def test_compare_takes_deltas_against_the_closest_baseline_run(pope_dir, tmp_path):
    for name, method, answer, batch_size in (("v8", "vanilla", "yes", 8), ("v4", "vanilla", "no", 4),
                                             ("s8", "scr", "yes", 8), ("s4", "scr", "yes", 4)):
        run("pope", pope_dir, FakePipe(answer), method, tmp_path / name, limit=2, batch_size=batch_size,
            progress=False)
    out = tmp_path / "t.md"
    assert main(["compare", *(str(tmp_path / n) for n in ("s8", "v8", "s4", "v4")), "--out", str(out)]) == 0
    rows = {cells[0]: cells[1] for cells in (line.split("|")[1:3] for line in out.read_text().splitlines()[2:]
                                           if line.startswith("|"))}
    first_metric = {label.strip(): cell.split() for label, cell in rows.items()}  # "0.0 (+0.0)" -> two words
    assert list(first_metric) == ["vanilla (batch_size=8)", "vanilla (batch_size=4)", "scr (batch_size=8)",
                                  "scr (batch_size=4)"]
    for batch_size in (8, 4):  # each SCR run against the vanilla run with its batch size
        base, = first_metric[f"vanilla (batch_size={batch_size})"]
        value, delta = first_metric[f"scr (batch_size={batch_size})"]
        assert float(delta.strip("()")) == pytest.approx(float(value) - float(base))
    assert first_metric["vanilla (batch_size=8)"] != first_metric["vanilla (batch_size=4)"]  # "yes" vs "no"


def test_comparison_table_with_several_baselines():
    from scr_core.eval.report import comparison_table

    results = {"a": {"x": 5.0}, "v1": {"x": 1.0}, "b": {"x": 7.0}, "v2": {"x": 2.0}}
    table = comparison_table(results, baseline=["v1", "v2"], against={"a": "v1", "b": "v2"})
    assert table.splitlines()[2:] == ["| v1 | 1.0 |", "| v2 | 2.0 |", "| a | 5.0 (+4.0) |", "| b | 7.0 (+5.0) |"]
    with pytest.raises(ValueError, match="baseline 'v3' not among"):
        comparison_table(results, baseline=["v1"], against={"a": "v3"})


def test_compare_without_a_summary_is_a_cli_error(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "summary.json not found" in err and "Traceback" not in err
