"""Turn whatever the user passes (path, PIL image, array) into an RGB PIL image, or say why not.

The image comes out as a viewer shows it: upright (the EXIF orientation of phone photos is
applied, as ComfyUI's LoadImage does), transparent pixels on white, the first frame of an
animation. Sizes are checked before any pixel is decoded (see ``MAX_IMAGE_PIXELS``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import InputError
from .path_text import check_path_text

#: Largest image accepted, in pixels (width x height), 64 MP: a 48 MP phone photo fits, an
#: 8000x8000 scan fits. No VLM processor uses more than a few megapixels (LLaVA 336², Qwen2-VL
#: at most ~12.8 MP by default) and every one resizes anyway, so more pixels only cost memory:
#: an RGB copy takes 4 bytes a pixel. It sits below PIL's own decompression-bomb limit
#: (``Image.MAX_IMAGE_PIXELS``, ~89 MP), so a bomb is refused here with a clear message, from the
#: file header, before PIL decodes (or warns about) it.
MAX_IMAGE_PIXELS = 64_000_000


def load_image(image) -> Image.Image:
    """RGB image from a path, a PIL image (any mode) or an HxW / HxWxC array (uint8 or 0..1 floats).

    Transparent pixels are composited onto white, which is what a viewer shows; the EXIF
    orientation is applied (paths and PIL images); a file's first frame is used (a PIL image
    passed in keeps the frame it is at). More than ``MAX_IMAGE_PIXELS`` pixels is an ``InputError``.
    """
    if isinstance(image, (str, Path)):
        image = _read(Path(image))
    elif isinstance(image, np.ndarray):
        image = _from_array(image)
    elif isinstance(image, Image.Image):
        check_size(image.size, "image")
        image = _upright(image)
    else:
        raise InputError(f"expected an image path, PIL image or numpy array, got {type(image).__name__}")
    if image.width == 0 or image.height == 0:
        raise InputError(f"image has zero size ({image.width}x{image.height})")
    return to_rgb(image)


def check_size(size: tuple[int, int], what: str) -> None:
    """InputError if ``size`` (width, height) has more than ``MAX_IMAGE_PIXELS`` pixels."""
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"{what} is {width}x{height} = {width * height:,} pixels, more than the limit of "
                         f"{MAX_IMAGE_PIXELS:,} (scr_core.images.MAX_IMAGE_PIXELS); downscale it first "
                         "(the model's processor resizes to a few megapixels anyway)")


def check_file(path: Path, what: str) -> None:
    """``InputError`` unless ``path`` is a non-empty file (``what``: "image", "video")."""
    if path.is_dir():
        article = "an" if what[0] in "aeiou" else "a"
        raise InputError(f"{path} is a folder, not {article} {what} file")
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{what} file {path} is empty (0 bytes)")



def _read(path: Path) -> Image.Image:
    """The file's first frame, upright, detached from the file; the size is checked before decoding."""
    check_path_text(path, "image path")
    check_file(path, "image")
    try:
        with _open(path) as opened:  # lazy: only the header is read so far
            check_size(opened.size, f"image {path}")
            opened.load()
            return _upright(opened, copy=True)
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as err:
        raise InputError(f"cannot read image {path}: {err}") from err


def _open(path: Path) -> Image.Image:
    """``Image.open`` with PIL's decompression-bomb warning/error turned into an ``InputError``.

    PIL checks the header size against its own limit inside ``open``; above it, there is no
    image to check ours on, so its message is passed on with ours.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise InputError(f"image {path} is too large: {err} The limit here is {MAX_IMAGE_PIXELS:,} pixels "
                             "(scr_core.images.MAX_IMAGE_PIXELS); downscale it first") from None


def _upright(image: Image.Image, copy: bool = False) -> Image.Image:
    """The image turned by its EXIF orientation tag (phone cameras store the sensor's rows and
    the tag; viewers apply it). ``copy``: return a new image even when it is already upright."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError):  # unreadable EXIF: the pixels are still usable
        orientation = 1
    if orientation in range(2, 9):
        return ImageOps.exif_transpose(image)  # a new image, the tag removed
    return image.copy() if copy else image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB of any PIL mode; transparency onto white; 16-bit and float images scaled to their peak."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        alpha = "transparency" in image.info or "A" in getattr(image.palette, "mode", "")
        image = image.convert("RGBA" if alpha else "RGB")
    if "A" in image.getbands():
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))  # the same pixels as alpha_composite, less memory
        return white
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.array(image, dtype=np.float64)
        peak = array.max() if array.size and array.max() > 0 else 1.0
        array /= peak  # in place: a 64 MP float copy is 512 MB
        array *= 255
        image = Image.fromarray(array.clip(0, 255, out=array).astype(np.uint8))
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InputError(f"image array must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if 0 in array.shape:
        raise InputError(f"image has zero size (array shape {array.shape})")
    check_size((array.shape[1], array.shape[0]), f"image array of shape {array.shape}")
    if array.dtype != np.uint8:
        array = (np.clip(np.asarray(array, dtype=np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def group_images(images, load=load_image) -> list[list]:
    """One list of RGB images per prompt, from an image, a list of images or a list of lists; ``load`` reads
    each item (``scr_core.video.group_media`` passes one that reads clips too)."""
    if images is None:
        raise InputError("no image given")
    if not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise InputError("no image given")
    grouped = [list(item) if isinstance(item, (list, tuple)) else [item] for item in images]
    if any(not group for group in grouped):
        raise InputError("every prompt needs at least one image")
    return [[load(img) for img in group] for group in grouped]
