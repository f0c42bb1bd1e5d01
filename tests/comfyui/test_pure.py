"""The pack's pure parts, without ComfyUI: IMAGE tensors <-> PIL, list handling, the folder and path rules,
the schema checks (the chat-template limits: tests/test_template_guard.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodes.checks import problem, require
from nodes.convert import first, images_to_pils, pils_to_tensor, tensor_to_pils
from nodes.samples import CLIP_FILE, SCENE_FILE, SCENE_FOLDER, install_samples
from scr_core.allowed import (allowed_folders, check_allowed, check_model_folder, check_pixel_budget,
                              downloads_allowed, folder_pixel_budget, owner_folders)
from scr_core.caption_files import caption_targets, list_images, safe_subfolder, write_caption_files, write_captions
from scr_core.caption_folder import clean_prefix, with_prefix
from scr_core.errors import InputError, ModelLoadError


def test_image_tensor_round_trip():
    rng = np.random.default_rng(0)
    pixels = (rng.random((2, 5, 7, 3)) * 255).astype(np.uint8)
    batch = torch.from_numpy(pixels.astype(np.float32) / 255)
    pictures = tensor_to_pils(batch)
    assert [p.size for p in pictures] == [(7, 5), (7, 5)]
    assert np.array_equal(np.asarray(pictures[1]), pixels[1])
    assert torch.allclose(pils_to_tensor(pictures), batch, atol=1 / 510)
    assert tensor_to_pils(batch[0])[0].size == (7, 5)  # one (H, W, C) image
    gray = tensor_to_pils(torch.full((1, 3, 3, 1), 0.5))[0]
    assert gray.mode == "RGB" and gray.getpixel((0, 0)) == (128, 128, 128)


def test_lists_of_batches_keep_every_image():
    batches = [torch.zeros(2, 4, 4, 3), torch.ones(1, 6, 3, 3)]
    pictures = images_to_pils(batches)
    assert [p.size for p in pictures] == [(4, 4), (4, 4), (3, 6)]
    assert pictures.pixels() == [16, 16, 18] and [p.size for p in pictures[1:]] == [(4, 4), (3, 6)]
    with pytest.raises(InputError, match="different sizes"):
        pils_to_tensor(pictures)
    with pytest.raises(InputError, match="batch, height, width"):
        tensor_to_pils(torch.zeros(4, 4))
    assert first([5]) == 5 and first(5) == 5 and first([], 1) == 1


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "a.jpg", "sub/c.png", "notes.txt"):
        path = folder / name
        if name.endswith(".txt"):
            path.write_text("x")
        else:
            Image.new("RGB", (4, 4)).save(path)
    return folder


def test_list_images_sorted_filtered_limited(image_folder):
    assert [p.name for p in list_images(image_folder)] == ["a.jpg", "b.png"]
    assert [p.name for p in list_images(image_folder, recursive=True)] == ["a.jpg", "b.png", "c.png"]
    assert [p.name for p in list_images(image_folder, "*.png", recursive=True, limit=1)] == ["b.png"]
    with pytest.raises(InputError, match="no images"):
        list_images(image_folder, "*.gif")
    with pytest.raises(InputError, match="not found"):
        list_images(image_folder / "missing")


def test_captions_beside_images_inside_the_allowed_folders_only(image_folder, tmp_path):
    allowed = allowed_folders([image_folder], env={})
    loaded = [str(p) for p in list_images(image_folder, allowed=allowed)]
    targets = caption_targets(loaded, "beside images", tmp_path / "out", allowed=allowed)
    assert [t.name for t in targets] == ["a.txt", "b.txt"] and targets[0].parent == image_folder.resolve()
    write_captions(["one", "two"], targets)
    assert (image_folder / "a.txt").read_text() == "one\n"
    with pytest.raises(InputError, match="exists"):
        write_captions(["new", "new"], targets)
    assert (image_folder / "b.txt").read_text() == "two\n"  # nothing overwritten, nothing half-written
    write_captions(["new", "new"], targets, overwrite=True)
    assert (image_folder / "b.txt").read_text() == "new\n"
    stranger = tmp_path / "elsewhere.png"
    Image.new("RGB", (2, 2)).save(stranger)
    for bad in (str(stranger), "/etc/passwd", str(image_folder / ".." / "elsewhere.png")):
        with pytest.raises(InputError, match="outside the folders this server allows.*SCR_ALLOWED_FOLDERS="):
            caption_targets([bad], "beside images", tmp_path / "out", allowed=allowed)
    with pytest.raises(InputError, match="does not exist"):
        caption_targets([str(image_folder / "gone.png")], "beside images", tmp_path / "out", allowed=allowed)


def test_owner_links_are_followed_and_climbing_is_refused(image_folder, tmp_path):
    """Links already on disk are the owner's (a posted workflow cannot make one): followed. ``..`` is not."""
    allowed = allowed_folders([image_folder], env={})
    inner = image_folder / "link.png"
    inner.symlink_to(image_folder / "a.jpg")  # named as listed, in the image's real folder
    assert caption_targets([str(inner)], "beside images", tmp_path / "out", allowed=allowed) == \
        [(image_folder / "link.txt").resolve()]
    drive = tmp_path / "photo-drive"
    drive.mkdir()
    Image.new("RGB", (2, 2)).save(drive / "p.png")
    (image_folder / "drive").symlink_to(drive, target_is_directory=True)
    listed = list_images(image_folder / "drive", allowed=allowed)
    assert listed == [image_folder / "drive" / "p.png"]  # paths come back as listed
    assert caption_targets([str(p) for p in listed], "beside images", tmp_path / "out", allowed=allowed) == \
        [drive.resolve() / "p.txt"]
    for climbing in (image_folder / "drive" / ".." / "a.jpg", image_folder / ".." / "photo-drive" / "p.png"):
        with pytest.raises(InputError, match="outside the folders.*'..' is not followed"):
            caption_targets([str(climbing)], "beside images", tmp_path / "out", allowed=allowed)
    with pytest.raises(InputError, match="outside the folders"):
        caption_targets([str(drive / "p.png")], "beside images", tmp_path / "out", allowed=allowed)  # not via the link
    (tmp_path / "door").symlink_to(image_folder, target_is_directory=True)  # leads inside: judged by where it leads
    assert caption_targets([str(tmp_path / "door" / "a.jpg")], "beside images", tmp_path / "out", allowed=allowed) \
        == [image_folder.resolve() / "a.txt"]
    (image_folder / "sub" / "out").symlink_to(tmp_path, target_is_directory=True)  # a symlinked folder: not walked
    assert [p.name for p in list_images(image_folder, recursive=True, allowed=allowed)] == \
        ["a.jpg", "b.png", "link.png", "c.png"]
    with pytest.raises(InputError, match="outside the folders"):
        list_images(tmp_path, allowed=allowed)
    with pytest.raises(InputError, match="outside the folders"):
        list_images("/", recursive=True, allowed=allowed)


def test_owner_folders_come_from_the_environment(tmp_path):
    env = {"SCR_ALLOWED_FOLDERS": os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")])}
    assert owner_folders(env) == [(tmp_path / "a").resolve(), (tmp_path / "b").resolve()]
    assert allowed_folders([tmp_path / "in"], env)[0] == (tmp_path / "in").resolve()
    assert not downloads_allowed({}) and downloads_allowed({"SCR_ALLOW_DOWNLOADS": "1"})


def test_models_load_only_from_model_folders_never_from_input(tmp_path):
    models, inbox = tmp_path / "models" / "LLM", tmp_path / "input"
    (models / "m").mkdir(parents=True)
    (inbox / "planted").mkdir(parents=True)
    assert check_model_folder(models / "m", [models], env={}) == (models / "m").resolve()
    for bad in (inbox / "planted", models / ".." / ".." / "input" / "planted", Path("/etc")):
        with pytest.raises(ModelLoadError, match="outside the model folders"):
            check_model_folder(bad, [models], env={})
    assert check_model_folder(inbox / "planted", [models], env={"SCR_ALLOWED_FOLDERS": str(inbox)})


def test_a_folder_load_has_a_pixel_budget_read_from_headers(tmp_path):
    for index in range(3):
        Image.new("RGB", (100, 100)).save(tmp_path / f"{index}.png")
    paths = sorted(tmp_path.glob("*.png"))
    check_pixel_budget(paths, 30_000)
    with pytest.raises(InputError, match="more than 29,999 pixels in total.*caption-folder"):
        check_pixel_budget(paths, 29_999)
    assert folder_pixel_budget({}) == 256_000_000 and folder_pixel_budget({"SCR_MAX_FOLDER_PIXELS": "1000"}) == 1000
    with pytest.raises(InputError, match="positive"):
        folder_pixel_budget({"SCR_MAX_FOLDER_PIXELS": "lots"})


def test_schema_checks_name_the_allowed_values():
    class Spec:  # the attributes ComfyUI's V3 inputs carry
        def __init__(self, id, **attributes):
            self.id = id
            self.__dict__.update(attributes)

    inputs = [Spec("mode", options=["beside images", "output folder"]), Spec("k", min=1, max=8), Spec("text")]
    assert problem(inputs, {"mode": "output folder", "k": 3, "text": "anything"}) is None
    assert problem(inputs, {"mode": "bogus"}) == "mode 'bogus' is not one of: beside images, output folder"
    assert problem(inputs, {"mode": ["beside images", "../../x"]}).startswith("mode '../../x' is not one of")
    assert problem(inputs, {"k": 0}) == "k 0 is smaller than the minimum 1"
    assert problem(inputs, {"k": 9}) == "k 9 is bigger than the maximum 8"
    assert problem(inputs, {"k": "3"}) == "k '3' is not a number"
    assert problem(inputs, {"mode": None, "k": None}) is None  # links: checked again in execute


@pytest.mark.parametrize("subfolder, message", [
    ("/etc", "must be relative"), ("../up", "may not contain '..'"), ("a/../../up", "may not contain '..'"),
    ("C:\\\\Windows", "must be relative"),
])
def test_output_subfolder_cannot_escape(subfolder, message, tmp_path):
    with pytest.raises(InputError, match=message):
        safe_subfolder(tmp_path / "out", subfolder)


def test_output_subfolder_follows_an_owner_link(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "elsewhere").symlink_to(tmp_path)  # the owner's link (a posted workflow cannot make one)
    assert safe_subfolder(out, "elsewhere") == tmp_path.resolve()
    assert safe_subfolder(out, "captions/set1") == (out / "captions" / "set1").resolve()


def test_output_folder_mode_names_by_image_stem(tmp_path):
    targets = caption_targets(["/anywhere/cat.png", ""], "output folder", tmp_path / "out", "caps")
    assert [t.name for t in targets] == ["cat.txt", "caption_00001.txt"]
    with pytest.raises(InputError, match="same file"):
        caption_targets(["/a/cat.png", "/b/cat.jpg"], "output folder", tmp_path / "out")
    with pytest.raises(InputError, match="extension"):
        caption_targets(["x.png"], "output folder", tmp_path / "out", extension="/x")


def test_pixel_runs_cut_a_batch_by_pixels_and_count():
    from scr_core.budgets import pixel_runs
    from scr_core.env import env_number

    assert pixel_runs([3, 3, 3, 10, 1], 6) == [range(0, 2), range(2, 3), range(3, 4), range(4, 5)]
    assert pixel_runs([1, 1, 1, 1, 1], 100, most=2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert pixel_runs([], 5) == [] and pixel_runs([10], 5) == [range(0, 1)]  # an image over it goes alone
    assert env_number("X", 7, {}) == 7 and env_number("X", 7, {"X": "256_000_000"}) == 256e6
    for bad in ("0", "-1", "lots"):
        with pytest.raises(InputError, match="must be a positive number"):
            env_number("X", 7, {"X": bad})


def test_held_pixels_are_released_when_the_output_is_dropped():
    from nodes.held import held_pixels, hold, room

    before = held_pixels()
    image = torch.zeros(1, 10, 20, 3)
    hold(image, 200)
    assert held_pixels() == before + 200 and room(1000) == 1000 - before - 200
    cycle = [image]
    cycle.append(cycle)  # only a collection frees it: room() runs one
    del image, cycle
    assert room(1000) == 1000 - before and held_pixels() == before


def test_a_killed_servers_staging_folders_are_removed_and_nothing_else(tmp_path):
    from nodes.download import remove_stale_downloads, staging_folder

    stale = staging_folder(tmp_path / "owner--name")
    (stale / "sub").mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    kept = [tmp_path / "owner--name", tmp_path / ".hidden", tmp_path / "x.download-1"]
    for folder in kept:
        folder.mkdir()
    assert remove_stale_downloads([tmp_path, tmp_path / "missing"]) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def test_captions_go_beside_image_files_only_never_over_the_source(image_folder, tmp_path):
    allowed = allowed_folders([image_folder], env={})
    (image_folder / "README.txt").write_text("mine")
    for source in ("notes.txt", "README.txt", "merges.txt"):  # a .txt "image" would map to itself
        with pytest.raises(InputError, match="is not an image file"):
            caption_targets([str(image_folder / source)], "beside images", tmp_path / "out", allowed=allowed)
    with pytest.raises(InputError, match="does not exist"):
        caption_targets([str(image_folder / "README.png")], "beside images", tmp_path / "out", allowed=allowed)
    (image_folder / "x.png").symlink_to(image_folder / "x.txt")  # an image name leading to the caption's own file
    (image_folder / "x.txt").write_text("keep")
    with pytest.raises(InputError, match="would replace the image itself"):
        caption_targets([str(image_folder / "x.png")], "beside images", tmp_path / "out", allowed=allowed)
    with pytest.raises(InputError, match="extension"):
        caption_targets([str(image_folder / "a.jpg")], "beside images", tmp_path / "out", extension=".png")
    assert (image_folder / "notes.txt").read_text() == "x" and (image_folder / "x.txt").read_text() == "keep"


def test_each_write_lands_where_it_was_checked_or_nowhere(image_folder, tmp_path):
    allowed = allowed_folders([image_folder], env={})
    targets = caption_targets([str(image_folder / "b.png"), str(image_folder / "sub" / "c.png")], "beside images",
                              tmp_path / "out", allowed=allowed)
    outside = tmp_path / "outside"
    outside.mkdir()
    (image_folder / "sub").rename(tmp_path / "moved")  # the folder swapped for a link during the run
    (image_folder / "sub").symlink_to(outside, target_is_directory=True)
    done = write_caption_files(["one", "two"], targets)
    assert done.written == [targets[0]] and [t for t, _ in done.failed] == [targets[1]]
    assert "is not the folder that was checked" in done.failed[0][1] and "\n" not in done.failed[0][1]
    assert list(outside.iterdir()) == []
    (image_folder / "sub").unlink()
    (image_folder / "sub").mkdir()
    (image_folder / "sub" / "c.txt").symlink_to(outside / "planted.txt")  # a link in the caption's place
    done = write_caption_files(["three"], targets[1:], overwrite=True)
    assert done.written == targets[1:] and not (outside / "planted.txt").exists()
    assert not (image_folder / "sub" / "c.txt").is_symlink()  # replaced, never written through


def test_skip_means_skip_at_write_time_and_a_folder_in_the_way_is_reported(image_folder, tmp_path):
    allowed = allowed_folders([image_folder], env={})
    targets = caption_targets([str(image_folder / "a.jpg"), str(image_folder / "b.png")], "beside images",
                              tmp_path / "out", allowed=allowed)
    (image_folder / "a.txt").write_text("another run's caption\n")  # written after the targets were planned
    done = write_caption_files(["mine", "mine"], targets)
    assert done.skipped == [targets[0]] and done.written == [targets[1]] and not done.failed
    assert (image_folder / "a.txt").read_text() == "another run's caption\n"
    (image_folder / "b.txt").unlink()
    (image_folder / "b.txt").mkdir()
    done = write_caption_files(["new", "new"], targets, overwrite=True)
    assert done.written == [targets[0]] and done.failed == [(targets[1], f"{targets[1]} is a folder; nothing was "
                                                                          "written over it")]
    with pytest.raises(InputError, match=r"1 of 2 caption file\(s\) written; .*b.txt is a folder"):
        write_captions(["again", "again"], targets, overwrite=True)  # Save Captions: one line, the rest written


@pytest.mark.parametrize("posted, message", [
    ("/tmp/a\0b.png", "contains a NUL byte"), ("/tmp/" + "x" * 300 + ".png", "name longer than 255 bytes"),
    ("/tmp/" + "x/" * 2100, "more than the 4,096"), ("/tmp/\ud800.png", "not valid text"),
])
def test_posted_paths_with_nul_bytes_or_over_long_names_are_one_line(posted, message, image_folder, tmp_path):
    allowed = allowed_folders([image_folder], env={})
    for call in (lambda: list_images(posted, allowed=allowed), lambda: check_allowed(posted, allowed, "image"),
                 lambda: caption_targets([posted], "beside images", tmp_path, allowed=allowed),
                 lambda: caption_targets([posted], "output folder", tmp_path / "out")):
        with pytest.raises(InputError, match=message):
            call()
    with pytest.raises(InputError, match=message):
        check_model_folder(posted, [image_folder], env={})


def test_allowed_folder_entries_are_stripped_and_must_be_absolute(tmp_path):
    assert owner_folders({"SCR_ALLOWED_FOLDERS": f"  {tmp_path}  "}) == [tmp_path]
    for relative in ("data", "./data", " data/photos"):
        with pytest.raises(InputError, match=f"lists {relative.strip()!r}, which is not an absolute path"):
            owner_folders({"SCR_ALLOWED_FOLDERS": os.pathsep.join([str(tmp_path), relative])})


def test_models_never_load_from_the_upload_folders_whatever_the_allowed_list(tmp_path):
    base = tmp_path / "comfy"
    models, inbox, out, temp = (base / "models" / "LLM"), base / "input", base / "output", base / "temp"
    for folder in (models / "mine", inbox / "evil", out / "evil", temp / "evil"):
        folder.mkdir(parents=True)
    env = {"SCR_ALLOWED_FOLDERS": str(base)}  # the owner allowed the whole base, input/ included
    assert check_model_folder(models / "mine", [models], env, never=[inbox, out, temp]) == models / "mine"
    for planted in (inbox / "evil", out / "evil", temp / "evil"):
        with pytest.raises(ModelLoadError, match=f"inside ComfyUI's {planted.parent.name} folder.*never load"):
            check_model_folder(planted, [models], env, never=[inbox, out, temp])
    (models / "sneaky").symlink_to(inbox / "evil", target_is_directory=True)  # wherever a link leads
    with pytest.raises(ModelLoadError, match="inside ComfyUI's input folder"):
        check_model_folder(models / "sneaky", [models], env, never=[inbox, out, temp])
    shared = tmp_path / "model-drive" / "big"
    shared.mkdir(parents=True)
    (models / "linked").symlink_to(shared, target_is_directory=True)  # the owner's link: it loads
    assert check_model_folder(models / "linked", [models], {}, never=[inbox, out, temp]) == shared


def test_the_prefix_is_sanitised_and_capped():
    assert clean_prefix("ohwx\x00\nstyle,\t") == "ohwx style"
    assert with_prefix("a\u2028b", "a cup") == "a b, a cup"
    assert with_prefix("👩\u200d💻", "x") == "👩\u200d💻, x"  # a joiner is text, not a control
    with pytest.raises(InputError, match="prefix is 1,048,576 characters, more than 200"):
        clean_prefix("x" * 2**20)


def test_a_required_input_posted_as_null_is_one_line():
    class Spec:
        def __init__(self, id, **attributes):
            self.id, self.optional = id, False
            self.__dict__.update(attributes)

    inputs = [Spec("dtype", options=["auto", "fp16"]), Spec("preset", options=["a"], optional=True)]
    with pytest.raises(InputError, match="^dtype has no value; use one of: auto, fp16$"):
        require(inputs, {"dtype": None, "preset": None})
    require(inputs, {"dtype": "auto", "preset": None})  # an optional input left out is fine


def test_sample_scenes_are_never_written_through_a_link(tmp_path):
    inbox, drive = tmp_path / "input", tmp_path / "photo-drive"
    inbox.mkdir()
    drive.mkdir()
    (inbox / SCENE_FOLDER).symlink_to(drive, target_is_directory=True)  # the user's link to their photos
    (inbox / SCENE_FILE).symlink_to(tmp_path / "gone.png")  # a dangling link in the scene's place
    (inbox / CLIP_FILE).symlink_to(tmp_path / "gone.mp4")
    assert install_samples(inbox) == []
    assert list(drive.iterdir()) == [] and (inbox / SCENE_FILE).is_symlink() and not (tmp_path / "gone.png").exists()
    fresh = tmp_path / "fresh"
    written = install_samples(fresh)
    assert len(written) == 8 and all(p.is_file() and not p.is_symlink() for p in written)
    assert install_samples(fresh) == []  # never over what is there


def test_the_sample_clip_is_the_folder_scenes_one_after_another(tmp_path):
    from nodes.samples import CLIP_FPS, FOLDER_SCENES, FRAMES_A_SCENE
    from scr_core.video import Clip, read_clip

    install_samples(tmp_path)
    scenes = [np.asarray(Image.open(tmp_path / SCENE_FOLDER / f"scene_{i:02d}.png").convert("RGB"), dtype=int)
              for i in FOLDER_SCENES]
    clip = read_clip(Clip(tmp_path / CLIP_FILE, frames=len(scenes) * FRAMES_A_SCENE))
    assert clip.total_frames == len(scenes) * FRAMES_A_SCENE and clip.source_fps == pytest.approx(CLIP_FPS)
    for number, frame in zip(clip.indices, clip.frames):  # H.264 (yuv420p) is lossy: close, not equal
        assert np.abs(np.asarray(frame, dtype=int) - scenes[number // FRAMES_A_SCENE]).mean() < 6
