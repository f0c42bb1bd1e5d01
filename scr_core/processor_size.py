"""What a model's image processor will make of an image, from the image's size alone, and the bound on it.

A processor resizes before it crops or tiles, and the resize can dwarf the image: a 93-byte 3000x1 PNG
resized to LLaVA-1.5's shortest edge of 336 is a 1,008,000x336 array (+2.3 GB) that is then cropped to
336x336. Both runners check every image here before their processor runs (``RunnerBase.check_images``),
and caption-folder checks each image as it reads it, so one such image is reported and the others are
captioned. torch-free: the ONNX runtime uses it too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from .errors import InputError
from .env import env_number

#: The widest aspect ratio accepted (long side / short side): transformers' own limit for Qwen2-VL's
#: resize; beyond it a processor either refuses the image or stretches it into a strip nobody can read.
MAX_ASPECT_RATIO = 200
#: The most pixels a processor may resize one image to: 4096², the largest any supported family makes of a
#: picture by default (Qwen3-VL's ``longest_edge``); a float copy of it is 200 MB.
MAX_RESIZED_PIXELS = 4096 * 4096
RESIZED_ENV = "SCR_MAX_RESIZED_PIXELS"


def resized_size(image_processor, width: int, height: int) -> tuple[int, int] | None:
    """(width, height) ``image_processor`` resizes a ``width`` x ``height`` image to before it crops or tiles,
    read from its settings (the fast and the PIL processors share them), or ``None`` when its rule is unknown.

    Rules: Qwen2-VL's pixel-count range (``min_pixels``..``max_pixels``, stored as ``size.shortest_edge`` /
    ``longest_edge`` in transformers 5; within a rounding of ``smart_resize``); LLaVA-NeXT's "anyres"
    resolutions (at most the largest); a fixed ``height`` x ``width``; ``shortest_edge`` (capped by a
    ``longest_edge`` when given); ``longest_edge`` alone.
    """
    if image_processor is None:
        return None
    if not getattr(image_processor, "do_resize", True):
        return width, height
    size = getattr(image_processor, "size", None)
    if hasattr(image_processor, "temporal_patch_size") and hasattr(image_processor, "merge_size"):
        low = getattr(image_processor, "min_pixels", None) or _field(size, "shortest_edge") or 0
        high = getattr(image_processor, "max_pixels", None) or _field(size, "longest_edge")
        return _scaled(width, height, math.sqrt(min(max(width * height, low), high) / (width * height))) \
            if high else None
    pinpoints = getattr(image_processor, "image_grid_pinpoints", None)
    if pinpoints:
        rows, cols = max(pinpoints, key=lambda p: p[0] * p[1])
        return int(cols), int(rows)
    if _field(size, "height") and _field(size, "width"):
        return int(_field(size, "width")), int(_field(size, "height"))
    short, long = _field(size, "shortest_edge"), _field(size, "longest_edge")
    if short:
        scale = short / min(width, height)
        if long and max(width, height) * scale > long:
            scale = long / max(width, height)
    elif long:
        scale = long / max(width, height)
    else:
        return None
    return _scaled(width, height, scale)


def _field(size, key: str):
    """``size[key]`` of a processor's size (a dict, or transformers 5's ``SizeDict``), else ``None``."""
    if isinstance(size, Mapping):
        return size.get(key)
    return getattr(size, key, None)


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def resized_pixel_limit(env: Mapping[str, str] = os.environ) -> int:
    """``SCR_MAX_RESIZED_PIXELS`` (a positive integer) or ``MAX_RESIZED_PIXELS``."""
    return int(env_number(RESIZED_ENV, MAX_RESIZED_PIXELS, env))


def check_processable(image_processor, size: tuple[int, int], what: str = "image") -> None:
    """One ``InputError`` line when an image of ``size`` (width, height) is wider than ``MAX_ASPECT_RATIO`` or
    ``image_processor`` would resize it to more than ``SCR_MAX_RESIZED_PIXELS`` pixels."""
    width, height = size
    if min(width, height) < 1:
        raise InputError(f"{what} has zero size ({width}x{height})")
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise InputError(f"{what} is {width}x{height}, an aspect ratio of {ratio:,.0f}:1; up to {MAX_ASPECT_RATIO}:1 "
                         "is accepted (a processor would stretch it into a strip or refuse it); crop or pad it closer "
                         "to square")
    resized = resized_size(image_processor, width, height)
    limit = resized_pixel_limit()
    if resized is not None and resized[0] * resized[1] > limit:
        raise InputError(f"{what} is {width}x{height}; the model's processor would resize it to "
                         f"{resized[0]:,}x{resized[1]:,} = {resized[0] * resized[1]:,} pixels, more than the limit of "
                         f"{limit:,} ({RESIZED_ENV}); crop or pad it closer to square")
