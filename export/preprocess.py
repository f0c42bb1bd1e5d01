"""Processor work the runtime does without torch: numpy versions of what transformers computes
with torch for Qwen2-VL (the image placeholder expansion, the vision rotary ids, the per-image
attention segments and the 3-D M-RoPE position ids of the decoder)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .folder_config import ProcessorRule


def vision_rotary_ids(grid_thw: np.ndarray, merge: int) -> np.ndarray:
    """(h, w) patch coordinates in the vision tower's merge-block order (``get_vision_position_ids``)."""
    rows = []
    for t, h, w in np.asarray(grid_thw).tolist():
        hgrid, wgrid = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        block = (h // merge, merge, w // merge, merge)
        hpos = hgrid.reshape(block).transpose(0, 2, 1, 3).ravel()
        wpos = wgrid.reshape(block).transpose(0, 2, 1, 3).ravel()
        rows.append(np.tile(np.stack([hpos, wpos], axis=-1), (t, 1)))
    return np.concatenate(rows).astype(np.int64)


def vision_segments(grid_thw: np.ndarray) -> np.ndarray:
    """``cu_seqlens``: where each frame's patches start and end (every image attends to itself only)."""
    grid = np.asarray(grid_thw, dtype=np.int64)
    lengths = np.repeat(grid[:, 1] * grid[:, 2], grid[:, 0])
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def window_inputs(grid_thw: np.ndarray, merge: int, window_size: int, patch_size: int) -> dict:
    """Qwen2.5-VL's window attention inputs (``get_vision_window_index``): the permutation of merged
    tokens into windows, its inverse, and the window boundaries in patches."""
    window = window_size // merge // patch_size
    unit = merge ** 2
    order, bounds, offset = [], [0], 0
    for t, h, w in np.asarray(grid_thw).tolist():
        gh, gw = h // merge, w // merge
        index = np.arange(t * gh * gw).reshape(t, gh, gw)
        pad_h, pad_w = window - gh % window, window - gw % window
        padded = np.pad(index, ((0, 0), (0, pad_h), (0, pad_w)), constant_values=-100)
        nh, nw = (gh + pad_h) // window, (gw + pad_w) // window
        padded = padded.reshape(t, nh, window, nw, window).transpose(0, 1, 3, 2, 4).reshape(t, nh * nw, window,
                                                                                             window)
        lengths = (padded != -100).sum(axis=(2, 3)).ravel()
        flat = padded.ravel()
        order.append(flat[flat != -100] + offset)
        bounds.extend((np.cumsum(lengths) * unit + bounds[-1]).tolist())
        offset += t * gh * gw
    window_index = np.concatenate(order).astype(np.int64)
    cu = np.asarray(bounds, dtype=np.int64)
    cu = cu[np.concatenate([[True], cu[1:] != cu[:-1]])]  # unique_consecutive
    return {"window_index": window_index, "cu_window_seqlens": cu, "reverse_index": np.argsort(window_index)}


def expand_image_tokens(texts: list[str], counts, image_token: str, prefix: str = "", suffix: str = "") -> list[str]:
    """Each image placeholder → ``prefix`` + ``count`` placeholders + ``suffix``, images in order
    (what ``Qwen2VLProcessor`` and ``InternVLProcessor`` do)."""
    counts = iter(counts)
    marker = "\0image\0"
    out = []
    for text in texts:
        pieces = text.split(image_token)
        built = pieces[0]
        for piece in pieces[1:]:
            built += prefix + marker * int(next(counts)) + suffix + piece
        out.append(built.replace(marker, image_token))
    return out


def mrope_positions(input_ids: np.ndarray, attention_mask: np.ndarray, grid_thw: np.ndarray, image_token_id: int,
                    merge: int) -> tuple[np.ndarray, np.ndarray]:
    """(position_ids[3, B, S], rope_delta[B]) as ``Qwen2VLModel.get_rope_index`` builds them for images."""
    batch, seq = input_ids.shape
    positions = np.zeros((3, batch, seq), dtype=np.int64)
    deltas = np.zeros(batch, dtype=np.int64)
    grids = iter(np.asarray(grid_thw).tolist())
    for b in range(batch):
        keep = attention_mask[b].astype(bool)
        kinds = (input_ids[b][keep] == image_token_id).astype(int)
        parts, current = [], 0
        for kind, group in itertools.groupby(kinds.tolist()):
            length = len(list(group))
            if kind == 0:
                parts.append(np.tile(np.arange(length) + current, (3, 1)))
                current += length
                continue
            used = 0
            while used < length:  # adjacent images form one run of image tokens
                t, h, w = next(grids)
                gh, gw = h // merge, w // merge
                tt, hh, ww = np.meshgrid(np.arange(t), np.arange(gh), np.arange(gw), indexing="ij")
                parts.append(np.stack([tt.ravel() + current, hh.ravel() + current, ww.ravel() + current]))
                current += max(gh, gw)
                used += t * gh * gw
        merged = np.concatenate(parts, axis=1)
        positions[:, b, keep] = merged
        deltas[b] = merged.max() + 1 - keep.sum()
    return positions, deltas


class Preprocessor:
    """The model's processor, loaded without torch (PIL image processor, numpy tensors), following the
    export's processor rule (``FamilyExport.processor_rule``: data, no family names here).

    Without ``expand`` the folder's ``AutoProcessor`` runs whole. With it, the image processor and the
    tokenizer load alone (the families whose ``AutoProcessor`` needs torchvision) and the placeholders are
    expanded here: ``count`` names the image-processor output that sizes each image (``image_grid_thw``:
    one placeholder per merged patch; ``num_patches``: ``tokens_per_patch`` per tile). ``vision_grid`` adds
    the vision tower's rotary ids and segments (and windows, with ``window_size``).
    """

    def __init__(self, folder, rule: ProcessorRule) -> None:
        from scr_core.template_guard import warm_up
        from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

        warm_up()  # the template renderer's process starts while the processor loads
        self.rule = rule
        self.expand = rule.expand
        backend = rule.backend
        if self.expand is not None:
            self.images = AutoImageProcessor.from_pretrained(folder, backend=backend)
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            template = folder / "chat_template.jinja"
            self.template = template.read_text() if template.is_file() else None
            self.processor = None
        else:
            self.processor = AutoProcessor.from_pretrained(folder, backend=backend)
            self.tokenizer = getattr(self.processor, "tokenizer", self.processor)

    @property
    def image_processor(self):
        """The image processor alone (``scr_core.processor_size`` reads its resize settings)."""
        return self.images if self.processor is None else getattr(self.processor, "image_processor", None)

    def reserved_tokens(self) -> set[str]:
        """The adapter's reserved tokens, as the export recorded them."""
        return set(self.rule.reserved_tokens)

    def format(self, prompt: str, num_images: int) -> str:
        """The chat template around ``num_images`` images followed by the prompt (as the adapters do), in
        ``template_guard``'s bounded process (a folder's template is as untrusted as a checkpoint's)."""
        from scr_core.prompts import chat_messages
        from scr_core.template_guard import render_chat

        messages = chat_messages(prompt, num_images)
        if self.processor is not None:
            return render_chat(self.processor, messages, self.rule.chat_template or None)
        return render_chat(self.tokenizer, messages, self.template)

    def __call__(self, images: list, texts: list[str]) -> dict:
        if self.processor is not None:
            return dict(self.processor(images=images, text=texts, return_tensors="np", padding=True,
                                       padding_side="left"))
        pixels = dict(self.images(images=images, return_tensors="np", **(self.rule.image_kwargs or {})))
        expand = self.expand
        assert expand is not None  # no processor: the rule expands the placeholders
        if expand.count == "num_patches":
            per_patch = expand.tokens_per_patch
            assert per_patch is not None  # Expand.read requires the count's size
            counts = [n * per_patch for n in np.asarray(pixels.pop("num_patches")).tolist()]
        else:
            merge_size = expand.merge_size
            assert merge_size is not None  # Expand.read requires the count's size
            counts = (np.asarray(pixels["image_grid_thw"]).prod(axis=1) // merge_size ** 2).tolist()
        texts = expand_image_tokens(texts, counts, expand.image_token, expand.prefix or "", expand.suffix or "")
        out = {**dict(self.tokenizer(texts, return_tensors="np", padding=True, padding_side="left")), **pixels}
        grid_rule = self.rule.vision_grid
        if grid_rule is not None:
            grid, merge = pixels["image_grid_thw"], grid_rule.merge_size
            out.update(vision_position_ids=vision_rotary_ids(grid, merge), cu_seqlens=vision_segments(grid))
            if grid_rule.window_size is not None:
                assert grid_rule.patch_size is not None  # VisionGrid.read requires it with a window
                out.update(window_inputs(grid, merge, grid_rule.window_size, grid_rule.patch_size))
        return out

    def decode(self, tokens) -> list[str]:
        return self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
