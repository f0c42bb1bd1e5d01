"""What one posted workflow may make the server hold or spend, in one place (pure): the owner sets each
bound with an ``SCR_*`` environment variable, and sizes are read from image headers, never by decoding.

- ``SCR_MAX_BATCH_PIXELS``: pixels decoded for one model run. A batch of images over it is cut into
  smaller runs (one image at least; each image also obeys ``images.MAX_IMAGE_PIXELS``), so
  ``batch_size`` sets speed, never how many megapixels sit in memory at once. A video clip is one model
  run: its sampled frames together must fit (``check_clip_pixels``; the ComfyUI nodes pass the budget
  to ``video.read_clip``, which checks before decoding), else it is refused in one line.
- ``SCR_MAX_FOLDER_PIXELS`` (``allowed.folder_pixel_budget``): pixels that Load Image Folder outputs
  hold at once — every folder load of a prompt together, and what ComfyUI's cache keeps of them after
  the run (``nodes.held``).
- ``SCR_DOWNLOAD_SECONDS``, ``SCR_DOWNLOAD_MAX_GB``, ``SCR_DOWNLOAD_STALL_SECONDS``: a hub download's
  total time, size and silence (``nodes.download``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .env import env_number
from .errors import InputError

BATCH_PIXELS_ENV = "SCR_MAX_BATCH_PIXELS"
#: One image at the per-image limit (``images.MAX_IMAGE_PIXELS``): a batch never decodes more than the
#: largest single image may.
DEFAULT_BATCH_PIXELS = 64_000_000




def batch_pixel_budget(env: Mapping[str, str] = os.environ) -> int:
    return int(env_number(BATCH_PIXELS_ENV, DEFAULT_BATCH_PIXELS, env))


def check_clip_pixels(pixels: int, frames: int, name: str, budget: int) -> None:
    """One ``InputError`` line when a clip's ``frames`` sampled frames (``pixels`` in all) exceed ``budget``,
    the pixels of one model run: a clip cannot be split across runs as a batch of images is."""
    if pixels > budget:
        raise InputError(f"clip {name}: its {frames} sampled frames hold {pixels:,} pixels, more than the "
                         f"{budget:,} of one model run ({BATCH_PIXELS_ENV}); sample fewer frames or downscale it")


def header_pixels(path: str | Path) -> int:
    """width x height from the file's header (nothing decoded); 0 when it cannot be read (the decode
    then reports why, per image)."""
    from .images import _open

    try:
        with _open(Path(path)) as opened:
            return opened.size[0] * opened.size[1]
    except Exception:
        return 0


def pixel_runs(pixels: Sequence[int], budget: int, most: int = 0) -> list[range]:
    """Consecutive index ranges of ``pixels`` whose sums stay within ``budget`` (an image over it alone),
    of at most ``most`` items each (0 = any number): the model runs of a batch."""
    runs, start, total = [], 0, 0
    for index, size in enumerate(pixels):
        if index > start and (total + size > budget or (most and index - start >= most)):
            runs.append(range(start, index))
            start, total = index, 0
        total += size
    if start < len(pixels):
        runs.append(range(start, len(pixels)))
    return runs
