"""What the caption nodes caption (nodes.media), without a server: IMAGE batches as separate images or as one
clip, sampled by the bundled model's runner within the batch pixel budget, and one line for what does not fit.
The VIDEO input is exercised against the real server (test_clips.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.convert import Pictures
from nodes.media import caption_media, label, model_runs
from scr_core import SampledClip, SCRPipeline, default_model
from scr_core.errors import InputError
from scr_core.testbed.clips import moving_square


@pytest.fixture(scope="module")
def pipe():
    return SCRPipeline.from_pretrained(default_model()[0])


def batch(frames: int = 6, width: int = 96, height: int = 64) -> torch.Tensor:
    return torch.from_numpy(moving_square(frames, width, height).astype(np.float32) / 255)


def test_separate_images_are_the_pictures_as_before(pipe):
    items = caption_media(pipe, [batch(6)], None)
    assert isinstance(items, Pictures) and len(items) == 6
    assert [len(r) for r in model_runs(items, 4)] == [4, 2]


def test_one_clip_is_every_frame_or_the_frames_asked_for_and_a_run_of_its_own(pipe):
    frames = moving_square(6)
    whole = caption_media(pipe, [batch(3), batch(3)], None, "one clip")  # a list of batches: one clip, in order
    assert len(whole) == 1 and isinstance(whole[0], SampledClip) and whole[0].indices == tuple(range(6))
    clips = caption_media(pipe, [batch(6)], None, "one clip", frames=3)
    sampled = clips[0]
    assert sampled.indices == (0, 2, 5)  # evenly spread, first and last (scr_core.video.sample_indices)
    for index, frame in zip(sampled.indices, sampled.frames):
        assert np.array_equal(np.asarray(frame), frames[index])
    assert model_runs(clips, 4) == [range(0, 1)]  # a clip is a model run of its own
    assert label(sampled, 0) == "clip 0 (3 frames)" and label(object(), 1) == "image 1"


def test_a_clip_over_the_batch_pixel_budget_is_refused_before_any_frame_is_converted(pipe, monkeypatch):
    monkeypatch.setenv("SCR_MAX_BATCH_PIXELS", str(4 * 96 * 64))
    assert len(caption_media(pipe, [batch(8)], None, "one clip", frames=4)[0].frames) == 4
    with pytest.raises(InputError, match="its 5 sampled frames hold 30,720 pixels, more than the 24,576 of one "
                                         "model run .SCR_MAX_BATCH_PIXELS.; sample fewer frames"):
        caption_media(pipe, [batch(8)], None, "one clip", frames=5)[0]  # sampled when its run takes it


@pytest.mark.parametrize("images, videos, mode, frames, fps, message", [
    (None, None, "one clip", 0, 0, "connect an image or a video"),
    ([batch(2)], ["a video"], "one clip", 0, 0, "not both"),
    ([batch(2)], None, "separate images", 2, 0, "set image_batch_is to one clip"),
    ([batch(4)], None, "one clip", 0, 2.0, "an IMAGE batch has no frame rate"),
    ([batch(2), batch(2, 64, 64)], None, "one clip", 0, 0, r"must share a size, these have 2 \(64x64, 96x64\)"),
])
def test_what_cannot_be_captioned_is_one_line(pipe, images, videos, mode, frames, fps, message):
    with pytest.raises(InputError, match=message) as err:
        caption_media(pipe, images, videos, mode, frames, fps)
    assert "\n" not in str(err.value)


def test_caption_folder_reports_a_clip_over_the_budget_and_captions_the_rest(pipe, tmp_path):
    """What Caption Folder passes to caption_batch (nodes.folder_captions): a clip whose sampled frames do not fit
    the batch pixel budget is one entry of the report, never decoded, and the folder's other files are captioned."""
    from scr_core.caption_folder import Item, caption_batch
    from scr_core.testbed.clips import write_clip

    small, large = (write_clip(tmp_path / f"{name}.mp4", moving_square(8, side, side), fps=8)
                    for name, side in (("small", 64), ("large", 256)))
    records = caption_batch(pipe, [Item("small.mp4", small), Item("large.mp4", large)], scr=None, prompt=None,
                            max_new_tokens=2, sampling={"frames": 4, "fps": None, "max_pixels": 4 * 64 * 64})
    assert records[0]["caption"] is not None and records[0]["frames"] == 4
    assert records[1]["caption"] is None
    assert records[1]["error"].startswith("cannot read clip: clip ") and "its 4 sampled frames hold 262,144" in \
        records[1]["error"]
