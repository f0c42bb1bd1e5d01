"""Turn whatever the user passes (path, PIL image, array) into an RGB PIL image, or say why not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InputError

def load_image(image) -> Image.Image:
    """RGB image from a path, a PIL image (any mode) or an HxW / HxWxC array (uint8 or 0..1 floats).

    Transparent pixels are composited onto white, which is what a viewer shows.
    """
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise InputError(f"image file not found: {path}")
        try:
            with Image.open(path) as opened:
                opened.load()
                image = opened.copy()
        except (UnidentifiedImageError, OSError) as err:
            raise InputError(f"cannot read image {path}: {err}") from err
    elif isinstance(image, np.ndarray):
        image = _from_array(image)
    elif not isinstance(image, Image.Image):
        raise InputError(f"expected an image path, PIL image or numpy array, got {type(image).__name__}")
    if image.width == 0 or image.height == 0:
        raise InputError(f"image has zero size ({image.width}x{image.height})")
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or "A" in image.getbands():
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() if array.size and array.max() > 0 else 1.0
        image = Image.fromarray((array / peak * 255).clip(0, 255).astype(np.uint8))
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InputError(f"image array must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if 0 in array.shape:
        raise InputError(f"image has zero size (array shape {array.shape})")
    if array.dtype != np.uint8:
        array = (np.clip(np.asarray(array, dtype=np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
    return Image.fromarray(array)
