"""The pack's pure parts, without ComfyUI: IMAGE tensors <-> PIL, list handling, Save Captions' path rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nodes.convert import first, images_to_pils, pils_to_tensor, tensor_to_pils
from nodes.paths import caption_targets, list_images, safe_subfolder, write_captions
from scr_core.errors import InputError


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


def test_captions_beside_loaded_images_only(image_folder, tmp_path):
    loaded = [str(p) for p in list_images(image_folder)]
    targets = caption_targets(loaded, "beside images", tmp_path / "out")
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
        with pytest.raises(InputError, match="not loaded by Load Image Folder"):
            caption_targets([bad], "beside images", tmp_path / "out")


def test_symlink_to_a_loaded_image_resolves_to_it(image_folder, tmp_path):
    list_images(image_folder)
    link = tmp_path / "link.png"
    link.symlink_to(image_folder / "a.jpg")
    assert caption_targets([str(link)], "beside images", tmp_path / "out") == [(image_folder / "a.txt").resolve()]


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
