"""Reading clips (scr_core.video): every container the CLI accepts, sampling by count and rate, frames given as
a list or array, and one InputError line for what cannot be read. No model: these are the decoder's rules."""

import numpy as np
import pytest
from PIL import Image

from scr_core.errors import InputError
from scr_core.testbed.clips import moving_square, write_clip
from scr_core.video import Clip, SamplingDefaults, is_clip, read_clip, sample_indices

QWEN_LIKE = SamplingDefaults(fps=2.0, min_frames=4, max_frames=768, per_slice=2)


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mov", ".mkv", ".gif"])
def test_every_container_reads_with_the_family_defaults(tmp_path, suffix):
    path = write_clip(tmp_path / f"clip{suffix}", moving_square(24), fps=8)
    assert is_clip(path)
    clip = read_clip(path, QWEN_LIKE)
    assert clip.total_frames == 24 and clip.source_fps == pytest.approx(8.0, rel=0.05)
    # 24 frames at 8 fps = 3 s; 2 fps -> 6 frames (a GIF's 120 ms delays: 8.33 fps -> 5 -> 4), a multiple of 2
    assert len(clip.frames) in (4, 6) and len(clip.frames) % 2 == 0
    assert clip.indices[0] == 0 and clip.indices[-1] == 23
    assert all(f.mode == "RGB" and f.size == (96, 64) for f in clip.frames)


def test_the_sampled_frames_are_the_source_frames(tmp_path):
    """The square's position in each kept frame is where the writer put it in that frame number."""
    source = moving_square(24)
    clip = read_clip(write_clip(tmp_path / "clip.gif", source), SamplingDefaults(num_frames=5))
    for frame, index in zip(clip.frames, clip.indices):
        assert np.abs(np.asarray(frame, dtype=int) - source[index]).mean() < 8


def test_count_rate_and_both():
    clip = Clip("x.mp4")
    assert sample_indices(100, 10.0, Clip("x.mp4", frames=5), SamplingDefaults()) == [0, 25, 50, 74, 99]
    assert len(sample_indices(100, 10.0, Clip("x.mp4", frames=5), QWEN_LIKE)) == 4  # whole slices of 2
    assert len(sample_indices(100, 10.0, Clip("x.mp4", fps=1.0), SamplingDefaults())) == 10
    assert len(sample_indices(100, 10.0, Clip("x.mp4", fps=1.0, frames=4), SamplingDefaults())) == 4
    assert len(sample_indices(100, 10.0, clip, QWEN_LIKE)) == 20  # 10 s at the family's 2 fps
    assert len(sample_indices(3, 10.0, clip, QWEN_LIKE)) == 2  # never more than the clip, a multiple of 2
    assert sample_indices(1, 10.0, clip, QWEN_LIKE) == [0]
    assert sample_indices(9, None, Clip("x.mp4", frames=1), QWEN_LIKE) == [4]  # one frame: the middle one
    with pytest.raises(InputError, match="no frame rate"):
        sample_indices(9, None, Clip("x.mp4", fps=2.0), QWEN_LIKE)


def test_frames_as_a_list_or_an_array_are_a_clip():
    frames = moving_square(10)
    assert is_clip(frames) and not is_clip(frames[0])
    assert read_clip(frames).indices == tuple(range(10))  # handed-over frames are taken as they are
    listed = read_clip(Clip([Image.fromarray(f) for f in frames], frames=3))
    assert listed.indices == (0, 4, 9) and listed.frames[0].size == (96, 64)


def test_a_still_gif_is_an_image(tmp_path):
    path = tmp_path / "still.gif"
    Image.fromarray(moving_square(1)[0]).save(path)
    assert not is_clip(path)


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"not a video" * 50, "cannot read video")])
def test_an_unreadable_clip_is_one_input_error(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        read_clip(path)
    assert "\n" not in str(err.value)


def test_a_missing_file_and_bad_options_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_clip(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match="frames must be"):
        Clip("x.mp4", frames=0)
    with pytest.raises(InputError, match="fps must be"):
        Clip("x.mp4", fps=-1)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_an_open_stream_reads_as_its_file_does(tmp_path, suffix):
    """ComfyUI's VIDEO of an upload is a BytesIO: sampled with the family's defaults like the file, lazily."""
    import io

    path = write_clip(tmp_path / f"clip{suffix}", moving_square(24), fps=8)
    from_file = read_clip(path, QWEN_LIKE)
    from_stream = read_clip(Clip(io.BytesIO(path.read_bytes())), QWEN_LIKE)
    assert from_stream.indices == from_file.indices and from_stream.total_frames == 24
    assert [np.asarray(f).tobytes() for f in from_stream.frames] == [np.asarray(f).tobytes() for f in from_file.frames]
    assert from_stream.name == "(in memory)" and not is_clip(io.BytesIO(b""))
    with pytest.raises(InputError, match=r"cannot read video \(in memory\): ") as err:
        read_clip(Clip(io.BytesIO(b"not a video" * 50)))
    assert "\n" not in str(err.value)


def test_max_pixels_refuses_a_clip_before_decoding(tmp_path):
    """A clip is one model run: its sampled frames together must fit the budget, whatever it is given as."""
    import io

    frames = moving_square(12)  # 96 x 64 = 6,144 pixels a frame
    path = write_clip(tmp_path / "clip.mp4", frames, fps=8)
    for source in (path, io.BytesIO(path.read_bytes()), frames, [Image.fromarray(f) for f in frames]):
        assert len(read_clip(Clip(source, frames=4), max_pixels=4 * 6144).frames) == 4
        with pytest.raises(InputError, match=r"its 4 sampled frames hold 24,576 pixels, more than the 24,575 of one"):
            read_clip(Clip(source, frames=4), max_pixels=4 * 6144 - 1)
