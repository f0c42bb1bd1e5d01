"""Short synthetic clips (a square moving across a gradient) written as ``.mp4`` (PyAV) or animated ``.gif``
(Pillow): what the video tests, the benchmark and the examples read, since no clip can be downloaded here."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image


def moving_square(frames: int = 24, width: int = 96, height: int = 64) -> np.ndarray:
    """``frames`` x height x width x 3 uint8: a red square sliding left to right over a blue-green gradient."""
    ys, xs = np.mgrid[0:height, 0:width]
    background = np.stack([np.zeros_like(xs), 255 * xs // max(width - 1, 1), 255 * ys // max(height - 1, 1)], -1)
    side = max(4, min(width, height) // 4)
    clip = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        frame = background.copy()
        left = (t * (width - side)) // max(frames - 1, 1)
        top = (height - side) // 2
        frame[top:top + side, left:left + side] = (230, 30, 30)
        clip[t] = frame
    return clip


def write_clip(path: str | Path, frames: np.ndarray | None = None, fps: int = 8) -> Path:
    """Write ``frames`` (default ``moving_square()``) to ``path``: ``.gif`` through Pillow, anything else as
    H.264 (``.mp4``, ``.mkv``, ``.mov``) or VP9 (``.webm``) through PyAV."""
    path = Path(path)
    frames = moving_square() if frames is None else frames
    if path.suffix.lower() == ".gif":
        pictures = [Image.fromarray(f) for f in frames]
        pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=round(1000 / fps), loop=0)
        return path
    import av

    codec = "libvpx-vp9" if path.suffix.lower() == ".webm" else "libx264"
    with av.open(str(path), mode="w") as container:
        stream = cast(av.VideoStream, container.add_stream(codec, rate=fps))  # a video codec: a video stream
        stream.width, stream.height = frames.shape[2] - frames.shape[2] % 2, frames.shape[1] - frames.shape[1] % 2
        stream.pix_fmt = "yuv420p"
        for array in frames:
            pixels = np.ascontiguousarray(array[:stream.height, :stream.width])
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
