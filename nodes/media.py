"""What a caption node captions, and in which model runs: its IMAGE input's pictures one by one (as
before), or clips — the IMAGE input's frames as one clip (``image_batch_is``: one clip) or core ComfyUI's
``VIDEO`` — sampled by the runner (``SCRPipeline.read_clip``: the family's sampling, or ``frames``/``fps``).

A posted workflow pays for the sampled frames only: a file-backed ``VIDEO`` (core Load Video's
``VideoFromFile``) is read from its stream source (a path, or an upload's BytesIO) by scr_core's lazy
reader, never through ``get_components()``, which decodes every frame into memory; only a ``VIDEO`` whose
frames are already in memory (``VideoFromComponents``) is read from its tensor. A clip is one model run, so
its sampled frames must fit ``SCR_MAX_BATCH_PIXELS`` together (checked before any frame is decoded or
converted), else it is refused in one line. No ComfyUI import at module level (unit-tested without it).
"""

from __future__ import annotations

from collections.abc import Sequence

from scr_core import Clip, InputError, SampledClip

from .convert import Pictures, images_to_pils

#: The ``image_batch_is`` options; the first (each picture its own caption) is what workflows saved before it do.
IMAGE_BATCH_IS = ("separate images", "one clip")


def caption_media(pipe, images: list | None, videos: list | None, image_batch_is: str | None = None,
                  frames: int | None = None, fps: float | None = None) -> Sequence:
    """One item per prompt: the pictures (``convert.Pictures``, converted a model run at a time), or the
    clips (``Clips``, each sampled when its model run takes it). ``images``: IMAGE batches; ``videos``:
    ``VIDEO`` values; exactly one of them is given (both, or neither, is one line). ``frames`` / ``fps``: 0
    or ``None`` = the family's sampling."""
    if images is None and videos is None:
        raise InputError("connect an image or a video")
    if images is not None and videos is not None:
        raise InputError("connect either image or video, not both: caption each with its own node")
    count, rate = frames or None, fps or None
    if images is None:
        return Clips(pipe, [video_clip(video, count, rate) for video in videos or ()])
    pictures = images_to_pils(images)
    if (image_batch_is or IMAGE_BATCH_IS[0]) == IMAGE_BATCH_IS[0]:
        if count or rate:
            raise InputError("frames and fps sample a clip: set image_batch_is to one clip, or connect a video")
        return pictures
    if rate:
        raise InputError("an IMAGE batch has no frame rate: sample it with frames, or connect a video (Load Video)")
    check_one_size(pictures)
    return Clips(pipe, [Clip(pictures, frames=count)])


class Clips(Sequence):
    """Clips sampled only when taken, a model run at a time (``sample``), so a list of videos never holds
    every clip's frames at once."""

    def __init__(self, pipe, clips: list) -> None:
        self.pipe, self.clips = pipe, clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return sample(self.pipe, self.clips[index])


def check_one_size(pictures: Pictures) -> None:
    """The frames of one clip share a size (a video processor stacks them)."""
    sizes = sorted({(int(s.shape[1]), int(s.shape[0])) for s in pictures.spots})
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sizes[:3])
        raise InputError(f"the frames of one clip must share a size, these have {len(sizes)} ({shown}); resize them "
                         "to one size first, or caption them as separate images")


def video_clip(video, frames: int | None, fps: float | None):
    """A ``VIDEO`` as a ``scr_core.Clip``: its stream source (a path or a BytesIO, read lazily), or for one
    made of frames in memory its frames (unconverted until sampled) at its frame rate."""
    from comfy_api.latest import InputImpl

    if isinstance(video, InputImpl.VideoFromComponents):
        parts = video.get_components()  # its tensor, already in memory: nothing is decoded
        rate = float(parts.frame_rate) if parts.frame_rate else None
        return Clip(images_to_pils([parts.images]), frames=frames, fps=fps, source_fps=rate)
    if not hasattr(video, "get_stream_source"):
        raise InputError(f"video: expected ComfyUI's VIDEO (e.g. from Load Video), got {type(video).__name__}")
    return Clip(video.get_stream_source(), frames=frames, fps=fps)


def sample(pipe, clip):
    """``clip``'s sampled frames as the runner's family samples them, within ``SCR_MAX_BATCH_PIXELS``; a
    runner without video (an ONNX export) gets the clip unread, and refuses it in one line."""
    from scr_core.budgets import batch_pixel_budget

    reader = getattr(pipe, "read_clip", None)
    return reader(clip, max_pixels=batch_pixel_budget()) if reader is not None else clip


def model_runs(items: Sequence, batch_size: int) -> list[range]:
    """The items' model runs: pictures ``batch_size`` at most, and at most ``SCR_MAX_BATCH_PIXELS`` pixels
    (``scr_core.budgets``), so a large batch_size never puts a folder's worth of pixels through the
    processor at once; a clip alone (clips of different lengths do not batch in every family; its own
    frames are held to the budget when sampled). ``items``: PIL images, ``convert.Pictures``, or ``Clips``."""
    from scr_core.budgets import batch_pixel_budget, pixel_runs

    if isinstance(items, Clips):
        return [range(index, index + 1) for index in range(len(items))]
    pixels = items.pixels() if hasattr(items, "pixels") else [p.width * p.height for p in items]
    return pixel_runs(pixels, batch_pixel_budget(), batch_size)


def label(item, index: int) -> str:
    """How a report names the prompt's item: ``image 0``, or ``clip 0 (8 frames)``."""
    if isinstance(item, SampledClip):
        return f"clip {index} ({len(item.frames)} frames)"
    return f"{'clip' if isinstance(item, Clip) else 'image'} {index}"
