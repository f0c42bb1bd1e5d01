"""Video clips: what a user passes (a path, or frames as a list or array), sampled and read as RGB frames.

Why here and torch-free: the CLI, the folder captioner and the ONNX runtime's refusal all need to tell a
clip from an image, and the pipeline needs the sampled frames; only the frames that are sampled are ever
kept (PyAV decodes the rest and drops them), so a long clip costs the memory of its samples.

Sampling (docs/method.md "Video clips"): ``frames`` (a count) and/or ``fps`` (a rate) from the user, else
the family's defaults (``SamplingDefaults``: its video processor's ``fps`` / ``num_frames`` /
``min_frames`` / ``max_frames`` where it has them). Frames are spread evenly over the clip, first and
last included, and their count is rounded down to a multiple of the family's frames per slice.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import numpy as np
from PIL import Image

from .budgets import check_clip_pixels, header_pixels
from .errors import DependencyError, InputError
from .images import check_file, check_size, group_images, load_image

#: Container suffixes read as clips (an animated ``.gif`` is a clip too, a still one an image).
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv")
GIF_SUFFIX = ".gif"


@dataclass(frozen=True)
class Clip:
    """A video clip to sample: a file path, an open binary stream of a video file (``io.BytesIO``: what
    ComfyUI's ``VIDEO`` gives for an upload), or frames (a list of images, or an array T x H x W x C).

    frames: how many frames to sample; fps: frames per second of video time to sample (with ``frames`` too:
    that rate, at most ``frames``); both ``None``: the family's defaults. source_fps: the frame rate of
    frames given as a list or array (files carry their own); frames given without ``frames`` or ``fps``
    are taken as they are.
    """

    source: object
    frames: int | None = None
    fps: float | None = None
    source_fps: float | None = None

    def __post_init__(self) -> None:
        if self.frames is not None and (isinstance(self.frames, bool) or not isinstance(self.frames, int)
                                        or self.frames < 1):
            raise InputError(f"frames must be an integer >= 1 (got {self.frames!r})")
        for name in ("fps", "source_fps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise InputError(f"{name} must be a number > 0 (got {value!r})")

    @property
    def name(self) -> str:
        if isinstance(self.source, (str, Path)):
            return str(self.source)
        return "(in memory)" if is_stream(self.source) else "frames"


def is_stream(source) -> TypeGuard[io.IOBase]:
    """Whether ``source`` is an open binary stream of a video file (read like a file, never as frames)."""
    return isinstance(source, io.IOBase)


def _is_file(source) -> bool:
    return isinstance(source, (str, Path)) or is_stream(source)


@dataclass(frozen=True)
class SamplingDefaults:
    """A family's sampling when the user gives neither a count nor a rate.

    fps / num_frames: the video processor's defaults (a rate or a count); min_frames / max_frames bound a
    count derived from a rate; per_slice: frames the model merges into one temporal slice (Qwen2-VL's
    ``temporal_patch_size``), the count is rounded down to a multiple of it.
    """

    fps: float | None = None
    num_frames: int | None = None
    min_frames: int = 1
    max_frames: int | None = None
    per_slice: int = 1


@dataclass(frozen=True)
class SampledClip:
    """The sampled frames of one clip (RGB, source size) and where they came from."""

    frames: tuple[Image.Image, ...]
    indices: tuple[int, ...]  # frame numbers in the source
    total_frames: int
    source_fps: float | None
    name: str = "frames"
    size: tuple[int, int] = field(default=(0, 0))  # (width, height) of the frames

    @property
    def times(self) -> tuple[float, ...] | None:
        """Seconds of each sampled frame (``None`` without a frame rate)."""
        if not self.source_fps:
            return None
        return tuple(i / self.source_fps for i in self.indices)

    @property
    def nbytes(self) -> int:
        """Bytes of the kept frames (RGB, 3 a pixel)."""
        return sum(f.width * f.height * 3 for f in self.frames)


def is_clip(item) -> bool:
    """Whether ``item`` is a clip: a ``Clip``, a ``SampledClip``, a 4-D array (T x H x W x C), a path with a
    video suffix, or an animated GIF."""
    if isinstance(item, (Clip, SampledClip)):
        return True
    if isinstance(item, np.ndarray):
        return item.ndim == 4
    if isinstance(item, (str, Path)):
        path = Path(item)
        suffix = path.suffix.lower()
        return suffix in VIDEO_SUFFIXES or (suffix == GIF_SUFFIX and _animated_gif(path))
    return False


def as_clip(item) -> Clip:
    """``item`` (see ``is_clip``) as a ``Clip`` with the family's default sampling."""
    return item if isinstance(item, Clip) else Clip(item)


def _animated_gif(path: Path) -> bool:
    try:
        with Image.open(path) as opened:
            return bool(getattr(opened, "is_animated", False))
    except (OSError, SyntaxError, ValueError):
        return False  # unreadable: the image reader says why


def sample_indices(total: int, source_fps: float | None, clip: Clip, defaults: SamplingDefaults) -> list[int]:
    """Frame numbers to keep out of ``total``: the user's count and/or rate, else the family's defaults."""
    if total < 1:
        raise InputError(f"clip {clip.name} has no frames")

    def from_rate(rate: float) -> int:
        if not source_fps:
            raise InputError(f"clip {clip.name} has no frame rate, so it cannot be sampled at fps={rate}; "
                             "pass a frame count (frames=N, --frames N) or source_fps")
        count = max(1, math.floor(total / source_fps * rate))
        count = max(count, defaults.min_frames)
        return min(count, defaults.max_frames) if defaults.max_frames else count

    if clip.fps is not None:
        count = from_rate(clip.fps)
        if clip.frames is not None:
            count = min(count, clip.frames)
    elif clip.frames is not None:
        count = clip.frames
    elif not _is_file(clip.source):
        count = total  # frames handed over are already the clip's samples
    elif defaults.num_frames:
        count = defaults.num_frames
    elif defaults.fps:
        count = from_rate(defaults.fps)
    else:
        count = total
    count = min(count, total)
    if count >= defaults.per_slice:
        count -= count % defaults.per_slice
    if count == 1:
        return [(total - 1) // 2]  # one frame: the middle one
    return sorted(set(np.linspace(0, total - 1, count).round().astype(int).tolist()))


def read_clip(item, defaults: SamplingDefaults = SamplingDefaults(), max_pixels: int | None = None) -> SampledClip:
    """The sampled frames of ``item`` (see ``is_clip``) as RGB PIL images; only those frames are kept.

    max_pixels: refuse (one ``InputError`` line, before any frame is decoded or converted) a clip whose
    sampled frames hold more pixels than this, the pixels of one model run (``budgets``); ``None``: no bound.
    """
    if isinstance(item, SampledClip):
        return item
    clip = as_clip(item)
    if is_stream(clip.source):
        return _read_file(clip.source, clip, defaults, max_pixels)
    if isinstance(clip.source, (str, Path)):
        return _read_file(Path(clip.source), clip, defaults, max_pixels)
    frames = clip.source
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise InputError(f"frames as an array must be T x H x W x C, got shape {frames.shape}")
    elif not isinstance(frames, Sequence) or isinstance(frames, (str, bytes)):
        raise InputError(f"a clip is a video file path or its frames (a list or a T x H x W x C array), "
                         f"got {type(frames).__name__}")
    if len(frames) == 0:
        raise InputError("the clip has no frames")
    indices = sample_indices(len(frames), clip.source_fps, clip, defaults)
    if max_pixels is not None:
        sizes = frames.pixels() if hasattr(frames, "pixels") else None  # e.g. ComfyUI IMAGE frames, unconverted
        check_clip_pixels(sum(sizes[i] if sizes is not None else _pixels(frames[i]) for i in indices),
                          len(indices), clip.name, max_pixels)
    kept = tuple(load_image(frames[i]) for i in indices)
    return SampledClip(kept, tuple(indices), len(frames), clip.source_fps, clip.name, kept[0].size)


def _pixels(frame) -> int:
    """Pixels of one frame as given (an image, an array or tensor H x W x C, or an image file's header)."""
    if isinstance(frame, Image.Image):
        return frame.width * frame.height
    if isinstance(frame, (str, Path)):
        return header_pixels(frame)
    shape = np.shape(frame)
    return int(shape[0] * shape[1]) if len(shape) >= 2 else 0


def _av():
    try:
        import av
    except ImportError:
        raise DependencyError("reading video clips needs PyAV, not installed here: pip install -r requirements.txt "
                              "(or pip install av)") from None
    return av


def _read_file(source: Path | io.IOBase, clip: Clip, defaults: SamplingDefaults,
               max_pixels: int | None = None) -> SampledClip:
    """Decode ``source`` (a file, or an open stream of one) once, front to back, keeping only the sampled
    frames."""
    av = _av()
    name = str(source) if isinstance(source, Path) else clip.name
    if isinstance(source, Path):
        check_file(source, "video")

    def opened():
        if is_stream(source):
            source.seek(0)
            return av.open(source)
        return av.open(str(source))

    try:
        with opened() as container:
            if not container.streams.video:
                raise InputError(f"{name} has no video stream")
            stream = container.streams.video[0]
            check_size((stream.codec_context.width, stream.codec_context.height), f"video {name}")
            rate = stream.average_rate or stream.guessed_rate
            source_fps = float(rate) if rate else None
            total = stream.frames or _count_frames(container, stream)
            indices = sample_indices(total, source_fps, clip, defaults)
            if max_pixels is not None:
                check_clip_pixels(len(indices) * stream.codec_context.width * stream.codec_context.height,
                                  len(indices), name, max_pixels)
        with opened() as container:  # a fresh demuxer: counting may have read to the end
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            wanted, last = set(indices), indices[-1]
            kept, kept_at = [], []
            for number, frame in enumerate(container.decode(stream)):
                if number in wanted:
                    kept.append(frame.to_image())  # RGB, source size; every other frame is dropped undecoded to RGB
                    kept_at.append(number)
                if number >= last:
                    break
    except InputError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError) as err:
        raise InputError(f"cannot read video {name}: {err}") from err
    if not kept:
        raise InputError(f"cannot read video {name}: no frame could be decoded")
    return SampledClip(tuple(kept), tuple(kept_at), max(total, kept_at[-1] + 1), source_fps, name, kept[0].size)


def _count_frames(container, stream) -> int:
    """Frames of a stream whose header does not say (WebM, MKV, GIF): its packets, read without decoding."""
    return sum(1 for packet in container.demux(stream) if packet.size)


def clip_picture(clip: SampledClip, frame: int) -> Image.Image:
    """Sampled frame ``frame`` (clamped: Qwen2-VL pads a clip's last slice by repeating its last frame)."""
    return clip.frames[min(max(frame, 0), len(clip.frames) - 1)]


def group_media(items, defaults: SamplingDefaults = SamplingDefaults()) -> list[list]:
    """One list per prompt of RGB images and ``SampledClip``s, from what ``group_images`` takes plus clips
    (``is_clip``) anywhere an image may be: each clip sampled with ``defaults`` unless it says otherwise."""
    return group_images(items, lambda item: read_clip(item, defaults) if is_clip(item) else load_image(item))


def holds_clip(items) -> bool:
    """Whether ``items`` (what a runner's ``images`` takes) holds a clip anywhere."""
    if isinstance(items, (list, tuple)):
        return any(holds_clip(item) for item in items)
    return is_clip(items)
