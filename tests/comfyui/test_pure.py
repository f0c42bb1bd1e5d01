"""The pack's pure parts, without ComfyUI: IMAGE tensors <-> PIL, list handling, the folder and path rules,
the schema checks (the chat-template limits: tests/test_template_guard.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodes.checks import problem
from nodes.convert import first, images_to_pils, pils_to_tensor, tensor_to_pils
from scr_core.allowed import (allowed_folders, check_model_folder, check_pixel_budget, downloads_allowed,
                              folder_pixel_budget, owner_folders)
from scr_core.caption_files import caption_targets, list_images, safe_subfolder, write_captions
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


def test_symlinks_are_resolved_before_the_folder_rule(image_folder, tmp_path):
    allowed = allowed_folders([image_folder], env={})
    inner = image_folder / "link.png"
    inner.symlink_to(image_folder / "a.jpg")
    assert caption_targets([str(inner)], "beside images", tmp_path / "out", allowed=allowed) == \
        [(image_folder / "a.txt").resolve()]
    outside = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(outside)
    (image_folder / "escape.png").symlink_to(outside)
    with pytest.raises(InputError, match="outside the folders"):
        caption_targets([str(image_folder / "escape.png")], "beside images", tmp_path / "out", allowed=allowed)
    with pytest.raises(InputError, match="outside the folders"):
        list_images(image_folder, allowed=allowed)  # the listed file leads out
    (image_folder / "escape.png").unlink()
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


def test_output_subfolder_symlink_out_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "escape").symlink_to(tmp_path)
    with pytest.raises(InputError, match="outside"):
        safe_subfolder(out, "escape")
    assert safe_subfolder(out, "captions/set1") == (out / "captions" / "set1").resolve()


def test_output_folder_mode_names_by_image_stem(tmp_path):
    targets = caption_targets(["/anywhere/cat.png", ""], "output folder", tmp_path / "out", "caps")
    assert [t.name for t in targets] == ["cat.txt", "caption_00001.txt"]
    with pytest.raises(InputError, match="same file"):
        caption_targets(["/a/cat.png", "/b/cat.jpg"], "output folder", tmp_path / "out")
    with pytest.raises(InputError, match="extension"):
        caption_targets(["x.png"], "output folder", tmp_path / "out", extension="/x")


def test_pixel_runs_cut_a_batch_by_pixels_and_count():
    from scr_core.budgets import env_number, pixel_runs

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
