"""COCO annotation readers for CHAIR and CIDEr (via ``pycocotools``).

Why: CHAIR's ground truth per image is the COCO instance categories plus the objects named in
the five reference captions, and CIDEr needs those captions too; this module is the only place
that opens COCO json files, so a missing or corrupt one always fails with a ``DataError``
naming it.

On disk (from ``annotations_trainval2014.zip``)::

    annotations/instances_val2014.json   (and optionally instances_train2014.json)
    annotations/captions_val2014.json    (and optionally captions_train2014.json)
    val2014/COCO_val2014_000000391895.jpg ...
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pycocotools.coco import COCO

from scr_core.errors import DataError

from .files import check_image, require_dir, require_file


@dataclass(frozen=True)
class CocoImage:
    """One COCO image to caption."""

    image_id: int
    image_path: Path
    file_name: str


def _as_list(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def load_coco(path: str | Path, what: str = "COCO annotation file") -> COCO:
    """A ``pycocotools.coco.COCO`` index of one file, with pycocotools' progress prints silenced."""
    from pycocotools.coco import COCO  # the eval extra, imported when a benchmark reads COCO

    path = require_file(path, what)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{what} {path} is not valid JSON (line {err.lineno}: {err.msg})") from err
    except (AssertionError, KeyError, TypeError, ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{what} {path} is not in COCO format ({type(err).__name__}: {err})") from err


def coco_image_categories(
    instances_files: str | Path | Iterable[str | Path],
    image_ids: Iterable[int] | None = None,
) -> dict[int, set[str]]:
    """``{image_id: {category name, ...}}`` from one or more ``instances_*.json`` files.

    Every image listed in the files gets an entry (empty if it has no instances); with
    ``image_ids`` only those images are kept.
    """
    wanted = None if image_ids is None else set(image_ids)
    out: dict[int, set[str]] = {}
    for path in _as_list(instances_files):
        coco = load_coco(path, "COCO instances file")
        if "categories" not in coco.dataset or "annotations" not in coco.dataset:
            raise DataError(f"COCO instances file {path} has no 'categories' or 'annotations' list")
        names = {cid: cat["name"] for cid, cat in coco.cats.items()}
        for img_id in coco.imgs:
            if wanted is None or img_id in wanted:
                out.setdefault(img_id, set())
        for ann in coco.dataset["annotations"]:
            img_id = ann.get("image_id")
            if wanted is not None and img_id not in wanted:
                continue
            try:
                out.setdefault(img_id, set()).add(names[ann["category_id"]])
            except KeyError:
                raise DataError(
                    f"COCO instances file {path}: annotation {ann.get('id')} has unknown category_id "
                    f"{ann.get('category_id')!r}"
                ) from None
    return out


def coco_captions(
    captions_files: str | Path | Iterable[str | Path],
    image_ids: Iterable[int] | None = None,
) -> dict[int, list[str]]:
    """``{image_id: [reference caption, ...]}`` from one or more ``captions_*.json`` files."""
    wanted = None if image_ids is None else set(image_ids)
    out: dict[int, list[str]] = {}
    for path in _as_list(captions_files):
        coco = load_coco(path, "COCO captions file")
        anns = coco.dataset.get("annotations")
        if not isinstance(anns, list):
            raise DataError(f"COCO captions file {path} has no 'annotations' list")
        for ann in anns:
            img_id = ann.get("image_id")
            if wanted is not None and img_id not in wanted:
                continue
            if "caption" not in ann:
                raise DataError(f"COCO captions file {path}: annotation {ann.get('id')} has no 'caption'")
            out.setdefault(img_id, []).append(str(ann["caption"]))
    return out


def sample_coco_images(
    annotation_file: str | Path,
    image_dir: str | Path,
    n: int | None = None,
    seed: int = 0,
    check_images: bool = True,
) -> list[CocoImage]:
    """Images listed in a COCO annotation file, optionally a seeded random subset of ``n``.

    The subset is ``random.Random(seed).sample`` over image ids sorted ascending, so the same
    seed always gives the same images (OPERA/PAI use 500, SCR 3,000 val2014 images). The result
    is sorted by image id.
    """
    coco = load_coco(annotation_file)
    ids = sorted(coco.imgs)
    if n is not None:
        if n > len(ids):
            raise ValueError(f"asked for {n} images but {annotation_file} lists only {len(ids)}")
        ids = sorted(random.Random(seed).sample(ids, n))
    image_dir = require_dir(image_dir, "COCO image folder") if check_images else Path(image_dir)
    out = []
    for img_id in ids:
        name = coco.imgs[img_id].get("file_name")
        if not name:
            raise DataError(f"{annotation_file}: image {img_id} has no file_name")
        path = image_dir / name
        if check_images:
            check_image(path, annotation_file)
        out.append(CocoImage(int(img_id), path, name))
    return out

