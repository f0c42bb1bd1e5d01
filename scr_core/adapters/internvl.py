"""InternVL (transformers-native ``InternVLForConditionalGeneration``: InternViT -> pixel shuffle -> MLP -> LLM).

Each image is cut into ``n`` tiles of ``image_size`` px (448 for the real models), plus a
thumbnail of the whole image when ``n > 1``. Every tile (and the thumbnail) goes through the
vision tower on its own and becomes a grid of ``image_size / patch_size * downsample_ratio``
tokens per side (448 / 14 * 0.5 = 16, i.e. 256 ``<IMG_CONTEXT>`` tokens; a tiny test model
has whatever its config gives). In the sequence an image is ``<img>`` + the tiles' tokens one
tile after another (row-major tiles, thumbnail last) + ``</img>``.

SCR treats every tile as its own grid: sources and neighbours never cross a tile edge (tiles
are separate crops; the thumbnail is a different scale). One image keeps one K budget, split
over its tiles by ``source_budgets``:

    budget_i = largest-remainder rounding of  K · mass_i / Σ_j mass_j

where ``mass_i`` is the tile's total diagnostic attention (sum of its map), leftover units go
to the largest fractional parts (ties: the earlier tile), and each tile is capped by the most
sources its interior can hold (⌈(h−2)/2⌉·⌈(w−2)/2⌉ with the border excluded, since sources
are ≥ 2 apart); a capped tile's excess is split again over the other tiles. A one-tile image
gets all of K, exactly like every other family. Uniform-Smooth splits K with equal masses.

Tiling: ``max_tiles`` (default 1: one 448 px tile per image, ``crop_to_patches=False``, the
paper's single 16x16 grid). ``max_tiles > 1`` turns on the processor's dynamic tiling
(``crop_to_patches=True, max_patches=max_tiles``). Set it with
``SCRPipeline.from_pretrained(..., adapter_options={"max_tiles": 6})``, CLI ``--max-tiles 6``,
or ``InternVLAdapter(model, processor, max_tiles=6)``. Hooks on layers 0..15.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from ..layout import VisualGrid
from .base import Adapter, AdapterOption


class InternVLAdapter(Adapter):
    model_types = ("internvl",)
    unquantized_modules = ("model.vision_tower", "model.multi_modal_projector", "lm_head")
    paper_hook_layers = (0, 15)
    shares_k = True
    options = (AdapterOption("max_tiles", int, 1, "tiles per image (default 1; more turns on dynamic tiling "
                             "plus a thumbnail)", minimum=1),)
    max_tiles: int

    def grid_size(self) -> tuple[int, int]:
        """Tokens per tile side: (image_size / patch_size) · downsample_ratio."""
        config = self.model.config
        vision = config.vision_config
        size = vision.image_size if isinstance(vision.image_size, (list, tuple)) else (vision.image_size,) * 2
        patch = vision.patch_size if isinstance(vision.patch_size, (list, tuple)) else (vision.patch_size,) * 2
        ratio = config.downsample_ratio
        return int(size[0] // patch[0] * ratio), int(size[1] // patch[1] * ratio)

    def processor_kwargs(self) -> dict:
        return {"crop_to_patches": self.max_tiles > 1, "min_patches": 1, "max_patches": self.max_tiles}

    def layout_rule(self) -> dict:
        return {"kind": "spans", "start_token_id": int(self.processor.start_image_token_id),
                "end_token_id": int(self.processor.end_image_token_id),
                "image_token_id": int(self.model.config.image_token_id), "grid": list(self.grid_size())}

    def grid_regions(self, grids: Sequence[VisualGrid], image: Image.Image | None) -> list[tuple]:
        """Tiles cover the image row by row in the processor's canvas (its own arrangement rule);
        the thumbnail, last, covers the whole image."""
        tiles = len(grids) - 1
        if tiles < 1 or image is None:
            return [g.region for g in grids]
        from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

        size = self.processor.image_processor.size
        tile = (int(size["height"]), int(size["width"]))
        columns, rows = get_optimal_tiled_canvas((image.height, image.width), tile, 1, self.max_tiles)
        if columns * rows != tiles:
            return [g.region for g in grids]  # an arrangement we cannot reproduce: draw each grid whole
        regions = [(c / columns, r / rows, (c + 1) / columns, (r + 1) / rows)
                   for r in range(rows) for c in range(columns)]
        return regions + [grids[-1].region]
