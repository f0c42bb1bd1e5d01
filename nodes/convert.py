"""ComfyUI IMAGE tensors <-> PIL images, and batches/lists of them (pure; no ComfyUI import).

ComfyUI's IMAGE is a float tensor (B, H, W, C) in 0..1, RGB; images of different sizes travel
as a list of such tensors. Every image of every batch is used: never just the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from scr_core import InputError


def tensor_to_pils(image) -> list[Image.Image]:
    """All images of one IMAGE batch (B, H, W, C) — or one (H, W, C) image — as RGB PIL images."""
    array = image.detach().cpu().float().numpy() if hasattr(image, "detach") else np.asarray(image, np.float32)
    _check_shape(array)
    if array.ndim == 3:
        array = array[None]
    pixels = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return [Image.fromarray(p[..., :3]) for p in pixels]


def _check_shape(image) -> None:
    if image.ndim not in (3, 4) or image.shape[-1] not in (1, 3, 4) or 0 in image.shape:
        raise InputError(f"expected an IMAGE of shape (batch, height, width, channels), got {tuple(image.shape)}")


class Pictures(Sequence):
    """The pictures of a list of IMAGE batches, in order, as RGB PIL images converted only when taken (a
    model run at a time), so captioning a list never holds a second copy of every picture; ``pixels``
    gives their sizes without converting any."""

    def __init__(self, images: Iterable) -> None:
        images = list(images)
        for batch in images:
            _check_shape(batch)
        self.spots = [(batch[index] if batch.ndim == 4 else batch) for batch in images
                      for index in range(batch.shape[0] if batch.ndim == 4 else 1)]
        if not self.spots:
            raise InputError("no image given")

    def __len__(self) -> int:
        return len(self.spots)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return tensor_to_pils(self.spots[index])[0]

    def pixels(self) -> list[int]:
        return [int(image.shape[0] * image.shape[1]) for image in self.spots]


def images_to_pils(images: Iterable) -> Pictures:
    """A list of IMAGE batches (ComfyUI list input) flattened to one PIL image per picture, in order."""
    return Pictures(images)


def pils_to_tensor(pictures: Sequence):
    """Same-size RGB pictures (PIL images or uint8 arrays) as one IMAGE batch (B, H, W, 3) in 0..1."""
    import torch

    arrays = [np.asarray(p.convert("RGB") if isinstance(p, Image.Image) else p, dtype=np.uint8) for p in pictures]
    if not arrays:
        raise InputError("no image to convert")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise InputError(f"images of different sizes cannot form one batch: {sorted(shapes)}")
    return torch.from_numpy(np.stack(arrays).astype(np.float32) / 255.0)


def first(value, default=None):
    """A widget value of a list-input node (ComfyUI passes every input as a list there)."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else default
    return value
