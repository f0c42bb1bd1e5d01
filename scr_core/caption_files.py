"""Where images are read from and captions written to (pure): ComfyUI's Load Image Folder and Save
Captions and ``python -m scr_core caption-folder --txt`` share these rules.

A ComfyUI server can be reachable by others, and a posted workflow must not read or write files where
it likes: the nodes pass ``allowed`` (the folders of ``scr_core.allowed``), and then a folder is listed
only inside them and a caption is written (a) under ComfyUI's output folder, into a relative subfolder
that cannot climb out of it, or (b) as ``<image stem>.txt`` beside an existing image that is itself
inside them — no memory of earlier prompts needed. The CLI is the local user and passes no
``allowed``. Symlinks are resolved before every check; a walk never follows a symlinked folder;
nothing is overwritten unless asked; each file is written atomically.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from enum import Enum
from functools import partial
from pathlib import Path, PurePosixPath, PureWindowsPath

from .allowed import check_allowed
from .errors import InputError
from .outputs import write_atomically

IMAGE_PATTERNS = ("*.png", "*.jpg", "*.jpeg", "*.webp", "*.bmp", "*.gif", "*.tif", "*.tiff")

#: Entries a recursive walk looks at before giving up (a walk of a huge tree cannot hold the queue).
MAX_WALK_ENTRIES = 200_000


class CaptionMode(str, Enum):
    """Where a caption goes: beside its image, or into the output folder (Save Captions' ``mode`` widget,
    ``caption-folder --txt``). The constructor is the check: ``CaptionMode("beside images")`` is a mode,
    any other text an ``InputError`` that lists the modes (before, anything but "output folder" meant beside)."""

    BESIDE_IMAGES = "beside images"
    OUTPUT_FOLDER = "output folder"

    @classmethod
    def _missing_(cls, value):
        raise InputError(f"caption mode {value!r} is not one of: {', '.join(mode.value for mode in cls)}")


def list_images(folder: str | Path, patterns: str = "", recursive: bool = False, limit: int = 0,
                allowed: Sequence[Path] | None = None) -> list[Path]:
    """Image files of ``folder`` sorted by path, filtered by ``patterns`` ("*.png;*cat*"), at most
    ``limit`` (0 = all); with ``allowed``, the folder and every file (symlinks resolved) must lie
    inside those folders."""
    if not str(folder).strip():
        raise InputError("no folder given")
    root = Path(str(folder).strip()).expanduser()
    if allowed is not None:
        check_allowed(root, allowed, "image folder")
    if not root.is_dir():
        raise InputError(f"image folder not found: {root}")
    wanted = [p.strip().lower() for p in patterns.replace(",", ";").split(";") if p.strip()] or list(IMAGE_PATTERNS)
    found = sorted(p for p in _walk(root, recursive) if is_image_name(p.name)
                   and any(fnmatch.fnmatch(p.name.lower(), w) for w in wanted))
    if limit and limit > 0:
        found = found[:limit]
    if not found:
        raise InputError(f"no images in {root} match {';'.join(wanted)}")
    if allowed is not None:
        for path in found:
            check_allowed(path, allowed, "image")
    return found


def _walk(root: Path, recursive: bool) -> list[Path]:
    """The files of ``root`` (and, recursively, of its real subfolders: symlinked folders are not entered)."""
    files: list[Path] = []
    seen = 0
    for current, dirs, names in os.walk(root, followlinks=False):
        seen += len(dirs) + len(names)
        if seen > MAX_WALK_ENTRIES:
            raise InputError(f"{root} holds more than {MAX_WALK_ENTRIES:,} entries; point at a smaller folder")
        files.extend(Path(current) / n for n in names if (Path(current) / n).is_file())
        if not recursive:
            break
        dirs.sort()
    return files


def is_image_name(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), p) for p in IMAGE_PATTERNS)


def safe_subfolder(output_dir: str | Path, subfolder: str) -> Path:
    """``output_dir/subfolder`` (created), refusing absolute paths and anything that leaves ``output_dir``."""
    base = Path(output_dir).resolve()
    text = (subfolder or "").strip()
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise InputError(f"subfolder {text!r} must be relative to ComfyUI's output folder")
    if any(part == ".." for part in PurePosixPath(text.replace("\\", "/")).parts):
        raise InputError(f"subfolder {text!r} may not contain '..'")
    target = (base / text).resolve()
    if target != base and base not in target.parents:
        raise InputError(f"subfolder {text!r} leads outside ComfyUI's output folder")
    target.mkdir(parents=True, exist_ok=True)
    if target.resolve() != target:
        raise InputError(f"subfolder {text!r} leads outside ComfyUI's output folder")
    return target


def caption_targets(paths: Iterable[str], mode: CaptionMode | str, output_dir: str | Path, subfolder: str = "",
                    extension: str = ".txt", allowed: Sequence[Path] | None = None) -> list[Path]:
    """Where each caption goes (``mode``, checked): beside its image (an existing file, inside ``allowed``
    when given), or in the output subfolder by image stem."""
    mode = CaptionMode(mode)
    if not extension.startswith(".") or "/" in extension or "\\" in extension or extension in (".", ".."):
        raise InputError(f"bad caption extension {extension!r}; use e.g. .txt")
    targets = []
    folder = safe_subfolder(output_dir, subfolder) if mode is CaptionMode.OUTPUT_FOLDER else None
    for index, raw in enumerate(paths):
        text = str(raw or "").strip()
        if folder is not None:
            stem = Path(text).stem if text else f"caption_{index:05d}"
            targets.append(folder / f"{stem}{extension}")
            continue
        if not text:
            raise InputError(f"caption {index} has no image path; use the output-folder mode for images "
                             "that did not come from Load Image Folder")
        image = check_allowed(text, allowed, "image") if allowed is not None else Path(text).resolve()
        if not image.is_file():
            raise InputError(f"image {text} does not exist; captions are written beside existing images only")
        targets.append(image.with_suffix(extension))
    if len(set(targets)) != len(targets):
        raise InputError("two captions would go to the same file; give the images different names")
    return targets


def write_captions(captions: list[str], targets: list[Path], overwrite: bool = False) -> list[Path]:
    """Write every caption, atomically; refuse the whole batch before writing if one file exists."""
    if len(captions) != len(targets):
        raise InputError(f"got {len(captions)} captions for {len(targets)} paths")
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise InputError(f"{existing[0]} exists ({len(existing)} caption file(s) in the way); "
                         "turn on overwrite to replace them")
    for caption, target in zip(captions, targets):
        write_atomically(target, partial(Path.write_text, data=caption + "\n", encoding="utf-8"))
    return targets
