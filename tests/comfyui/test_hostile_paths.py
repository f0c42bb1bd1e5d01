"""Paths and images a hostile workflow posts, against a real server: strips a processor would blow up, captions
beside anything but an image, models from the upload folders, NUL bytes and over-long names, a folder swapped for
a link during a run; and the owner's own links, which must keep working. The session server allows one dataset
folder (``comfy.allowed``); a second server here has the owner's links and choices set up before it starts."""

from __future__ import annotations

import shutil
import time

import pytest
from PIL import Image

from .server import ComfyServer, PeakRSS, comfyui_dir
from .test_hostile import error_of, folder_to_captions, loading, saving
from .test_server import failure, twin


def caption_of(image_name: str) -> dict:
    prompt = twin("scr_caption")
    prompt["1"]["inputs"]["image"] = image_name
    return prompt


def caption_folder(folder: str, **inputs) -> dict:
    prompt = twin("scr_folder_captions")
    prompt["3"]["inputs"].update({"folder": folder, "max_new_tokens": 4, **inputs})
    return prompt


def test_extreme_aspect_ratios_are_refused_in_one_line_in_bounded_memory(comfy):
    """Unchecked, the testbed's CLIP processor makes a 288,000x96 float array of a 3000x1 PNG (+330 MB) and a
    2,880,000x96 one of a 30000x1 PNG (+3.3 GB)."""
    assert comfy.run(twin("scr_caption"))["status"]["status_str"] == "success"  # the model loaded
    baseline = comfy.rss()
    for width, height in ((3000, 1), (1, 30000)):
        name = f"strip{width}x{height}.png"
        Image.new("RGB", (width, height), (200, 10, 10)).save(comfy.base / "input" / name)
        with PeakRSS(comfy) as peak:
            message = error_of(comfy.run(caption_of(name)))
        assert f"is {width}x{height}, an aspect ratio of {max(width, height):,}:1; up to 200:1" in message
        assert peak.bytes - baseline < 100 * 2**20, (name, baseline, peak.bytes)
    folder = comfy.allowed / "strips"  # Caption Folder: the strip is reported, the picture captioned
    folder.mkdir()
    Image.new("RGB", (3000, 1)).save(folder / "strip.png")
    Image.new("RGB", (64, 48), (30, 120, 200)).save(folder / "picture.png")
    entry = comfy.run(caption_folder(str(folder)))
    assert entry["status"]["status_str"] == "success", failure(entry)
    report = entry["outputs"]["3"]["text"][0]
    assert "1 caption(s) written, 0 skipped (caption file exists), 1 failed" in report
    assert "strip.png: image is 3000x1, an aspect ratio of 3,000:1" in report
    assert sorted(p.name for p in folder.glob("*.txt")) == ["picture.txt"]


def test_save_captions_writes_beside_image_files_only_never_over_the_source(comfy):
    notes = comfy.base / "input" / "notes.txt"
    notes.write_text("my notes\n")
    assert "is not an image file" in error_of(comfy.run(saving(str(notes))))
    model = comfy.allowed / "a-model"  # a model folder inside SCR_ALLOWED_FOLDERS
    model.mkdir()
    (model / "merges.txt").write_text("a b\n")
    (model / "config.json").write_text("{}\n")
    for path, fragment in ((model / "merges.txt", "is not an image file"), (model / "config.json", "is not an image"),
                           (model / "README.png", "does not exist"), (model / "config.png", "does not exist")):
        assert fragment in error_of(comfy.run(saving(str(path))))
    assert notes.read_text() == "my notes\n" and (model / "merges.txt").read_text() == "a b\n"
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "merges.txt"]


def test_owner_links_under_models_input_and_output_work(comfy, tmp_path_factory):
    drive = tmp_path_factory.mktemp("model-drive")
    shutil.copytree(comfy.base / "models" / "LLM" / "tiny-random-llava", drive / "llava")
    (comfy.base / "models" / "LLM" / "linked-llava").symlink_to(drive / "llava", target_is_directory=True)
    entry = comfy.run(loading("linked-llava"))
    assert entry["status"]["status_str"] == "success", failure(entry)

    photos = tmp_path_factory.mktemp("photo-drive")
    Image.new("RGB", (32, 24), (10, 200, 10)).save(photos / "holiday.png")
    (comfy.base / "input" / "photos").symlink_to(photos, target_is_directory=True)
    entry = comfy.run(folder_to_captions("photos"))
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert (photos / "holiday.txt").read_text() == "a caption\n"

    shared = tmp_path_factory.mktemp("shared-output")
    (comfy.base / "output").mkdir(exist_ok=True)
    (comfy.base / "output" / "shared").symlink_to(shared, target_is_directory=True)
    entry = comfy.run(saving("/anywhere/cat.png", "output folder", "shared"))
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert (shared / "cat.txt").read_text() == "a caption\n"

    for climbing in ("photos/../../models", "photos/.."):
        assert "'..' is not followed" in error_of(comfy.run(folder_to_captions(climbing)))


@pytest.mark.parametrize("text, fragment", [("a\x00b", "contains a NUL byte"),
                                            ("x" * 300, "has a name longer than 255 bytes")])
def test_nul_bytes_and_over_long_names_are_one_line(comfy, text, fragment):
    assert fragment in error_of(comfy.run(folder_to_captions(text)))
    assert fragment in error_of(comfy.run(saving(str(comfy.base / "input" / f"{text}.png"))))
    assert fragment in error_of(comfy.run(saving(f"/anywhere/{text}.png", "output folder")))
    assert fragment in error_of(comfy.run(loading(text)))


def ended_with(entry: dict, fragment: str) -> None:
    """Caption Folder either stopped at the batch in one line or reported the file and went on."""
    if entry["status"]["status_str"] == "error":
        assert fragment in error_of(entry)
    else:
        assert fragment in entry["outputs"]["3"]["text"][0]


def test_a_folder_in_a_captions_place_is_one_line_and_the_rest_are_written(comfy):
    folder = comfy.allowed / "blocked"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (48, 40)).save(folder / name)
    (folder / "a.txt").mkdir()
    blocked = folder.resolve() / "a.txt"
    message = error_of(comfy.run(saving(str(folder / "a.png"))))
    assert f"0 of 1 caption file(s) written; {blocked}: {blocked} is a folder" in message
    entry = comfy.run(caption_folder(str(folder), skip_existing=False, overwrite=True))
    ended_with(entry, f"{blocked} is a folder")
    assert (folder / "b.txt").read_text().strip() and blocked.is_dir()


def test_a_required_input_posted_as_null_is_one_line(comfy):
    prompt = twin("scr_caption")
    prompt["2"]["inputs"]["dtype"] = None
    status, body = comfy.queue(prompt)  # refused by validation, before anything runs
    errors = body["node_errors"]["2"]["errors"]
    assert status == 400 and [e["details"] for e in errors] == ["dtype: 'None' not in ['auto', 'fp16', 'bf16', 'fp32']"]


def test_the_prefix_is_sanitised_and_a_megabyte_of_it_refused(comfy):
    folder = comfy.allowed / "prefixed"
    folder.mkdir()
    Image.new("RGB", (48, 40), (90, 30, 200)).save(folder / "one.png")
    entry = comfy.run(caption_folder(str(folder), prefix="ohwx\x00\nstyle\r,"))
    assert entry["status"]["status_str"] == "success", failure(entry)
    text = (folder / "one.txt").read_text()
    assert text.startswith("ohwx style, ") and text.count("\n") == 1
    (folder / "one.txt").unlink()
    message = error_of(comfy.run(caption_folder(str(folder), prefix="x" * 2**20)))
    assert "the prefix is 1,048,576 characters, more than 200" in message and not (folder / "one.txt").exists()


def test_a_folder_swapped_for_a_link_during_a_run_sends_nothing_outside(comfy, tmp_path_factory):
    folder = comfy.allowed / "swapped"
    folder.mkdir()
    outside = tmp_path_factory.mktemp("outside")
    for index in range(40):
        Image.new("RGB", (48, 40), (6 * index, 60, 90)).save(folder / f"img{index:02d}.png")
        shutil.copy(folder / f"img{index:02d}.png", outside)  # readable there too: only the writes are in question
    status, body = comfy.queue(caption_folder(str(folder), batch_size=1, max_new_tokens=48))
    assert status == 200, body
    deadline = time.time() + 300
    while not list(folder.glob("*.txt")) and time.time() < deadline:
        time.sleep(0.02)
    folder.rename(folder.with_name("swapped-away"))  # the folder swapped for a link, mid-run
    folder.symlink_to(outside, target_is_directory=True)
    entry = comfy.wait(body["prompt_id"])
    assert not list(outside.glob("*.txt"))  # not one caption outside the allowed folders
    ended_with(entry, "is not the folder that was checked")


def another_run_writes_the_captions_meanwhile(comfy, name: str) -> tuple[dict, dict]:
    """A Caption Folder run (skip_existing on) during which another run writes the remaining captions."""
    folder = comfy.allowed / name
    folder.mkdir()
    for index in range(30):
        Image.new("RGB", (48, 40), (8 * index, 60, 90)).save(folder / f"img{index:02d}.png")
    status, body = comfy.queue(caption_folder(str(folder), batch_size=1, max_new_tokens=48))
    assert status == 200, body
    deadline = time.time() + 300
    while not list(folder.glob("*.txt")) and time.time() < deadline:
        time.sleep(0.02)
    theirs = {}
    for image in sorted(folder.glob("*.png"))[5:]:
        theirs[image.with_suffix(".txt")] = f"the other run's caption of {image.name}\n"
        image.with_suffix(".txt").write_text(theirs[image.with_suffix(".txt")])
    return comfy.wait(body["prompt_id"]), theirs


def test_a_caption_another_run_wrote_meanwhile_is_never_overwritten(comfy):
    entry, theirs = another_run_writes_the_captions_meanwhile(comfy, "two-runs")
    assert {path: path.read_text() for path in theirs} == theirs
    if entry["status"]["status_str"] == "error":  # today's Caption Folder: one line, nothing overwritten
        assert "exists" in error_of(entry)


def test_skip_existing_skips_at_write_time_too(comfy):
    entry, theirs = another_run_writes_the_captions_meanwhile(comfy, "two-runs-skip")
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert {path: path.read_text() for path in theirs} == theirs


# -- the owner's set-up before the server starts ------------------------------------------------------
@pytest.fixture(scope="module")
def owned(tmp_path_factory, tiny_llava_dir):
    """A server whose owner allowed the whole ComfyUI base (with a stray leading space), linked input/scr_testbed
    to a photo drive and left a dangling link where a sample scene would go."""
    source = comfyui_dir()
    if source is None:
        pytest.skip("no ComfyUI source tree: set COMFYUI_DIR")
    base = tmp_path_factory.mktemp("owned-base")
    drive = tmp_path_factory.mktemp("photo-drive")
    (base / "models" / "LLM").mkdir(parents=True)
    (base / "input").mkdir()
    Image.new("RGB", (64, 48), (30, 120, 200)).save(base / "input" / "picture.png")
    (base / "input" / "scr_testbed").symlink_to(drive, target_is_directory=True)
    (base / "input" / "scr_testbed_scene.png").symlink_to(drive / "gone.png")
    shutil.copytree(tiny_llava_dir, base / "shared-models" / "llava")
    server = ComfyServer(source, base, env={"SCR_ALLOWED_FOLDERS": f" {base}"}).start()
    server.drive = drive
    yield server
    server.stop()


def test_sample_scenes_are_never_written_through_the_owners_links(owned):
    assert list(owned.drive.iterdir()) == []
    scene = owned.base / "input" / "scr_testbed_scene.png"
    assert scene.is_symlink() and not scene.exists()  # the dangling link is left as it was


def loading_beside(path: str) -> dict:
    prompt = loading(path)
    prompt["1"]["inputs"]["image"] = "picture.png"  # the owner's scr_testbed_scene.png is a dangling link here
    return prompt


def test_models_never_load_from_input_or_output_even_when_the_owner_allows_the_base(owned):
    entry = owned.run(loading_beside(str(owned.base / "shared-models" / "llava")))  # allowed: leading space stripped
    assert entry["status"]["status_str"] == "success", failure(entry)
    for folder in ("input", "output"):
        planted = owned.base / folder / "evil"
        shutil.copytree(owned.base / "shared-models" / "llava", planted)
        message = error_of(owned.run(loading_beside(str(planted))))
        assert f"inside ComfyUI's {folder} folder" in message and "never load from input, output or temp" in message
