"""Draw a diagnosis over the prompt's pictures: the image users look at to trust (or not) a plan.

Every grid of the prompt is drawn over its own picture at the picture's own aspect ratio (a
squared picture misplaces the map), tiles are put back together into one mosaic per image, and
all maps share one colour scale, shown under the panels, so panels can be compared.

numpy + PIL only (matplotlib for the colormap, imported lazily): the onnxruntime path, which
never imports torch, draws heatmaps too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import ConfigError, InputError
from .images import load_image
from .layout import FULL_REGION
from .outputs import write_atomically
from .plan import GridPlan
from .results import Diagnosis
from .video import SampledClip, clip_picture, read_clip

PANEL_GAP = 8  # px of white between panels, and between the panels and the colour bar
BAR_HEIGHT = 14  # px, the colour scale bar
LABEL_HEIGHT = 16  # px under the bar for the min / max values and what the colours mean
LEGEND_HEIGHT = 16  # px for the outline legend (red = sources, cyan = neighbours)
FOOTER_HEIGHT = PANEL_GAP + BAR_HEIGHT + LABEL_HEIGHT + LEGEND_HEIGHT  # what the footer adds under the panels
BAR_TITLE = "share of the text's attention"
LEGEND = (("source", "SOURCE"), ("neighbour", "NEIGHBOUR"))  # red: scaled by 1/λ; cyan: gets (λ-1)·h_source

SOURCE_COLOUR = (255, 40, 40)
NEIGHBOUR_COLOUR = (0, 220, 255)
_BACKGROUND = (255, 255, 255)
_TEXT_COLOUR = (40, 40, 40)


def render_heatmap(images, diagnosis: Diagnosis, *, size: int = 512, alpha: float = 0.55,
                   colormap: str = "inferno") -> np.ndarray:
    """RGB uint8 array (H, W, 3): every map of ``diagnosis`` over its own picture, plus a colour bar.

    ``images`` is the prompt's image (path, PIL image or array) or its sequence of images; a
    grid's ``image`` index picks one. Per image (in order), its tiles (grids whose ``region`` is
    not the whole image) form one mosaic panel and each whole-image grid is a panel of its own;
    panels keep the picture's aspect ratio (longer side ``size`` px) and sit left to right,
    top-aligned. One min..max normalisation over all maps, nearest-neighbour upsampling (one
    block per patch), sources outlined red and neighbours cyan. ``grids=()`` (older callers)
    means map i covers the whole of image i.

    A clip (a ``SampledClip``, e.g. ``batch.images[i]``'s) is drawn as a strip of its slices, each slice's
    map over the slice's first frame, panels of at most ``STRIP_PANEL`` px in rows of ``STRIP_ROW``.
    """
    from matplotlib import colormaps

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"size must be an integer >= 1 (pixels of a panel's longer side), got {size!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1] (0 = picture only, 1 = map only), got {alpha!r}")
    try:
        cmap = colormaps[colormap]
    except KeyError:
        raise ConfigError(f"colormap {colormap!r} is not a matplotlib colormap (try 'inferno' or 'viridis')") from None

    pictures = _as_list(images)
    maps, placements = _placements(diagnosis, len(pictures))

    finite = np.concatenate([m[np.isfinite(m)] for m in maps])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    span = high - low

    def colour(values: np.ndarray) -> np.ndarray:
        norm = (np.nan_to_num(values, nan=low, posinf=high, neginf=low) - low) / span if span > 0 \
            else np.zeros_like(values)
        return (cmap(np.clip(norm, 0.0, 1.0))[..., :3] * 255).round().astype(np.uint8)

    loaded: dict[tuple, Image.Image] = {}
    panels = []
    for (image_index, frame), grid_ids in _panels(placements):
        key = (image_index, frame)
        if key not in loaded:
            loaded[key] = _picture(pictures[image_index], frame)
        panel_size = size if frame is None else min(size, STRIP_PANEL)
        panels.append(_draw_panel(loaded[key], [(maps[g], placements[g][1], diagnosis.plan.grids[g])
                                                for g in grid_ids], panel_size, float(alpha), colour))

    return _compose(panels, cmap, low, high)


STRIP_PANEL = 192  # px, the longer side of one slice's panel in a clip's strip
STRIP_ROW = 8  # panels per row once a prompt has more than this many


def _picture(item, frame: int | None) -> Image.Image:
    """The picture a panel is drawn over: an image, or frame ``frame`` of a clip."""
    if frame is None:
        if isinstance(item, SampledClip):
            raise InputError("a clip was given where the diagnosis has an image grid; pass the prompt's items in order")
        return load_image(item)
    if not isinstance(item, SampledClip):
        if isinstance(item, np.ndarray) and item.ndim == 4:
            item = read_clip(item)
        else:
            raise InputError("the diagnosis has a clip's slices here but an image was given; pass the prepared "
                             "batch's items (batch.images[i]), which hold the sampled frames")
    return clip_picture(item, frame)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def save_heatmap(path, images, diagnosis: Diagnosis, **kwargs) -> Path:
    """Write ``render_heatmap(images, diagnosis, **kwargs)`` to ``path`` (format from its extension),
    atomically; the path should have been checked with ``check_new_file`` before the model ran."""
    picture = Image.fromarray(render_heatmap(images, diagnosis, **kwargs))
    return write_atomically(path, lambda temporary: picture.save(temporary, format=_format(Path(path))))


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix, suffix[1:].upper() or "PNG")


def _as_list(images) -> list:
    """One image or a sequence of them, as a list (an array or a path is one image, not a sequence)."""
    if isinstance(images, (str, Path, Image.Image, np.ndarray, SampledClip)):
        return [images]
    if isinstance(images, Sequence):
        if not len(images):
            raise InputError("no images given: pass the prompt's image (or its list of images)")
        return list(images)
    raise InputError(f"expected an image (path, PIL image, array) or a list of them, got {type(images).__name__}")


def _placements(diagnosis: Diagnosis, num_images: int):
    """Each map as a 2-D array, with (image index, region) of the picture it covers; checked."""
    maps = [np.asarray(m, dtype=np.float64) for m in diagnosis.maps]
    plan_grids = diagnosis.plan.grids
    if not maps:
        raise InputError("the diagnosis has no maps: nothing to draw")
    if len(maps) != len(plan_grids):
        raise InputError(f"the diagnosis has {len(maps)} maps but its plan has {len(plan_grids)} grids; "
                         "maps and plan must come from the same diagnostic pass")
    grids = tuple(diagnosis.grids)
    if grids and len(grids) != len(maps):
        raise InputError(f"the diagnosis has {len(maps)} maps but {len(grids)} grids (one grid per map expected)")

    placements, next_image = [], 0
    for i, (values, gp) in enumerate(zip(maps, plan_grids)):
        if values.ndim == 1 and values.size == gp.height * gp.width:
            values = maps[i] = values.reshape(gp.height, gp.width)
        if values.shape != (gp.height, gp.width):
            raise InputError(f"map {i} has shape {values.shape} but plan grid {i} is {gp.height}x{gp.width}")
        grid = grids[i] if grids else None
        image = grid.image if grid is not None and grid.image is not None else next_image
        next_image = max(next_image, image + 1)
        region = tuple(float(v) for v in (grid.region if grid is not None else FULL_REGION))
        if grid is not None and (grid.height, grid.width) != (gp.height, gp.width):
            raise InputError(f"grid {i} is {grid.height}x{grid.width} but plan grid {i} is {gp.height}x{gp.width}")
        if image < 0 or image >= num_images:
            raise InputError(f"grid {i} belongs to image {image} but {num_images} image(s) were given; "
                             "pass every image of the prompt, in order")
        x0, y0, x1, y1 = region
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise InputError(f"grid {i} has region {region}; expected fractions 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1")
        frame = None if grid is None or grid.frames is None else int(grid.frames[0])
        placements.append((image, region, frame))
    return maps, placements


def _panels(placements) -> list[tuple[tuple[int, int | None], list[int]]]:
    """((image index, frame), grid indices) per panel: per image in order, its tiles as one mosaic and each
    whole-image grid alone, panels of one image in the order their first grid appears; a clip's slices are
    panels of their own (the tiles of one frame a mosaic), ``frame`` the slice's first frame."""
    panels: dict[tuple, list[int]] = {}
    for g, (image, region, frame) in enumerate(placements):
        key = (image, frame, -1) if region != FULL_REGION else (image, frame, g)  # -1: a mosaic
        panels.setdefault(key, []).append(g)
    ordered = sorted(panels.items(), key=lambda item: (item[0][0], item[1][0]))
    return [((image, frame), ids) for (image, frame, _), ids in ordered]


def _draw_panel(picture: Image.Image, grids, size: int, alpha: float, colour) -> Image.Image:
    """The picture (longer side ``size``) with each grid's map blended into its region, then outlines."""
    scale = size / max(picture.width, picture.height)
    width, height = max(1, round(picture.width * scale)), max(1, round(picture.height * scale))
    base = np.asarray(picture.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    out = base.copy()
    boxes = []
    for values, (x0, y0, x1, y1), gp in grids:
        left, top = round(x0 * width), round(y0 * height)
        right, bottom = max(left + 1, round(x1 * width)), max(top + 1, round(y1 * height))
        overlay = Image.fromarray(colour(values)).resize((right - left, bottom - top), Image.Resampling.NEAREST)
        out[top:bottom, left:right] = (1 - alpha) * base[top:bottom, left:right] + alpha * np.asarray(overlay)
        boxes.append(((left, top, right, bottom), gp))
    panel = Image.fromarray(out.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(panel)
    for region, gp in boxes:  # after all the paint, so a later tile never covers an earlier outline
        _outline(draw, region, gp)
    return panel


def _outline(draw: ImageDraw.ImageDraw, region: tuple[int, int, int, int], gp: GridPlan) -> None:
    """Neighbours thin cyan, sources thick red, each box inset in its cell so adjacent boxes stay apart."""
    left, top, right, bottom = region
    cell_w, cell_h = (right - left) / gp.width, (bottom - top) / gp.height

    def box(index: int) -> tuple[int, int, int, int]:
        row, col = divmod(int(index), gp.width)
        x0, y0 = round(left + col * cell_w) + 1, round(top + row * cell_h) + 1
        x1, y1 = round(left + (col + 1) * cell_w) - 2, round(top + (row + 1) * cell_h) - 2
        return x0, y0, max(x0, x1), max(y0, y1)

    thick = max(1, min(3, int(min(cell_w, cell_h) // 5)))
    for index in gp.neighbours:
        draw.rectangle(box(index), outline=NEIGHBOUR_COLOUR, width=1)
    for index in gp.sources:
        draw.rectangle(box(index), outline=SOURCE_COLOUR, width=thick)


def _compose(panels: list[Image.Image], cmap, low: float, high: float) -> np.ndarray:
    """Panels left to right (top-aligned, white gaps) over a colour bar labelled with min, max and what it
    measures, then the legend of the outlines."""
    font = ImageFont.load_default()
    labels = (f"{low:.3g}", f"{high:.3g}")
    label_w = [int(np.ceil(font.getlength(text))) for text in labels]
    rows = [panels[i:i + STRIP_ROW] for i in range(0, len(panels), STRIP_ROW)] if len(panels) > STRIP_ROW \
        else [panels]  # a long clip's strip wraps
    panels_w = max(sum(p.width for p in row) + PANEL_GAP * (len(row) - 1) for row in rows)
    width = max(panels_w, sum(label_w) + 3 * PANEL_GAP, footer_width())  # tiny panels: keep the footer readable
    row_h = [max(p.height for p in row) for row in rows]
    panels_h = sum(row_h) + PANEL_GAP * (len(rows) - 1)
    canvas = Image.new("RGB", (width, panels_h + FOOTER_HEIGHT), _BACKGROUND)
    y = 0
    for row, height in zip(rows, row_h):
        x = 0
        for panel in row:
            canvas.paste(panel, (x, y))
            x += panel.width + PANEL_GAP
        y += height + PANEL_GAP

    bar_top = panels_h + PANEL_GAP
    ramp = (cmap(np.linspace(0.0, 1.0, width))[:, :3] * 255).round().astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(ramp[None], BAR_HEIGHT, axis=0)), (0, bar_top))
    draw = ImageDraw.Draw(canvas)
    text_top = bar_top + BAR_HEIGHT + 2
    draw.text((0, text_top), labels[0], fill=_TEXT_COLOUR, font=font)
    draw.text((width - label_w[1], text_top), labels[1], fill=_TEXT_COLOUR, font=font)
    title_w = font.getlength(BAR_TITLE)
    if title_w + sum(label_w) + 4 * PANEL_GAP <= width:
        draw.text(((width - title_w) / 2, text_top), BAR_TITLE, fill=_TEXT_COLOUR, font=font)
    x, legend_top = 0, bar_top + BAR_HEIGHT + LABEL_HEIGHT
    for text, colour in LEGEND:
        square = (x + 2, legend_top + 2, x + LEGEND_HEIGHT - 4, legend_top + LEGEND_HEIGHT - 4)
        draw.rectangle(square, outline=SOURCE_COLOUR if colour == "SOURCE" else NEIGHBOUR_COLOUR, width=2)
        draw.text((x + LEGEND_HEIGHT, legend_top + 1), text, fill=_TEXT_COLOUR, font=font)
        x += LEGEND_HEIGHT + int(np.ceil(font.getlength(text))) + 2 * PANEL_GAP
    return np.asarray(canvas, dtype=np.uint8).copy()


def footer_width() -> int:
    """The narrowest canvas whose legend is readable (a picture narrower than this gets white beside it)."""
    font = ImageFont.load_default()
    return sum(LEGEND_HEIGHT + int(np.ceil(font.getlength(text))) + 2 * PANEL_GAP for text, _ in LEGEND)
