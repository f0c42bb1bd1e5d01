"""``processor_size``: what the real (tiny) processors make of an image's size, and the one-line bound that keeps
a 93-byte 3000x1 PNG from becoming a gigabyte array."""

from __future__ import annotations

import pytest
from PIL import Image
from transformers import AutoProcessor

from scr_core import InputError, default_model
from scr_core.processor_size import MAX_RESIZED_PIXELS, RESIZED_ENV, check_processable, resized_size


def _observed(image_processor, width: int, height: int) -> tuple[int, int]:
    """The size the processor really resizes to, read from its output with cropping off."""
    image = Image.new("RGB", (width, height), (120, 30, 30))
    if hasattr(image_processor, "merge_size"):  # Qwen2-VL: the patch grid of the resized image
        _, rows, cols = image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
        return int(cols) * image_processor.patch_size, int(rows) * image_processor.patch_size
    pixels = image_processor(images=[image], do_center_crop=False, return_tensors="pt")["pixel_values"]
    return pixels.shape[-1], pixels.shape[-2]


@pytest.mark.parametrize("family", ["testbed", "chameleon", "qwen2_vl", "internvl"])
def test_the_predicted_resize_is_what_the_real_processor_makes(family, family_dir):
    folder = default_model()[0] if family == "testbed" else family_dir(family)
    image_processor = AutoProcessor.from_pretrained(folder).image_processor
    for width, height in ((150, 2), (2, 90), (64, 48), (640, 480)):
        predicted, observed = resized_size(image_processor, width, height), _observed(image_processor, width, height)
        if family == "qwen2_vl":  # within smart_resize's rounding to the 16-pixel patch grid
            assert abs(predicted[0] - observed[0]) <= 16 and abs(predicted[1] - observed[1]) <= 16, (width, height)
        else:
            assert abs(predicted[0] - observed[0]) <= 1 and abs(predicted[1] - observed[1]) <= 1, (width, height)


def test_too_wide_or_too_large_after_the_resize_is_one_line(pipe, monkeypatch):
    for size, ratio in (((3000, 1), "3,000:1"), ((1, 30000), "30,000:1")):
        with pytest.raises(InputError, match=f"an aspect ratio of {ratio}; up to 200:1 is accepted"):
            pipe.caption(Image.new("RGB", size), max_new_tokens=1)
    with pytest.raises(InputError, match="zero size"):
        check_processable(None, (0, 5))
    wide = Image.new("RGB", (180, 1))  # 180:1 is accepted; the tiny LLaVA (112) resizes it to 20,160x112
    assert resized_size(pipe.image_processor, 180, 1) == (20160, 112)
    monkeypatch.setenv(RESIZED_ENV, "2_000_000")
    with pytest.raises(InputError, match=r"resize it to 20,160x112 = 2,257,920 pixels, more than the limit of "
                                         rf"2,000,000 \({RESIZED_ENV}\)"):
        pipe.caption(wide, max_new_tokens=1)
    monkeypatch.setenv(RESIZED_ENV, "lots")
    with pytest.raises(InputError, match=f"{RESIZED_ENV}='lots' must be a positive number"):
        pipe.caption(wide, max_new_tokens=1)
    monkeypatch.delenv(RESIZED_ENV)
    assert 20160 * 112 < MAX_RESIZED_PIXELS and pipe.caption(wide, max_new_tokens=1)[0].token_ids
