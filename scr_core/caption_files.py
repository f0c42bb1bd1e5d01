"""Where images are read from and captions written to (pure): ComfyUI's Save Captions and
``python -m scr_core caption-folder --txt`` share these rules.

A ComfyUI server can be reachable by others, and a posted workflow must not write files where it
likes. Captions are written only (a) under ComfyUI's output folder, into a relative subfolder that
cannot climb out of it, or (b) as ``<image stem>.txt`` beside an image that this server process
itself loaded with the folder loader. Symlinks are resolved before every check; nothing is
overwritten unless asked; each file is written atomically.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import InputError
from .outputs import write_atomically

IMAGE_PATTERNS = ("*.png", "*.jpg", "*.jpeg", "*.webp", "*.bmp", "*.gif", "*.tif", "*.tiff")

# Images the folder loader has loaded in this process (resolved paths): the only places beside
# which captions may be written.
_LOADED_IMAGES: set[Path] = set()


def list_images(folder: str | Path, patterns: str = "", recursive: bool = False, limit: int = 0) -> list[Path]:
    """Image files of ``folder`` sorted by path, filtered by ``patterns`` ("*.png;*cat*"), at most
    ``limit`` (0 = all); the resolved paths are remembered as writable neighbours (see module doc)."""
    root = Path(str(folder).strip()).expanduser()
    if not str(folder).strip():
        raise InputError("no folder given")
    if not root.is_dir():
        raise InputError(f"image folder not found: {root}")
    wanted = [p.strip().lower() for p in patterns.replace(",", ";").split(";") if p.strip()] or list(IMAGE_PATTERNS)
    walk = root.rglob("*") if recursive else root.iterdir()
    found = sorted(p for p in walk if p.is_file() and _is_image_name(p.name)
                   and any(fnmatch.fnmatch(p.name.lower(), w) for w in wanted))
    if limit and limit > 0:
        found = found[:limit]
    if not found:
        raise InputError(f"no images in {root} match {';'.join(wanted)}")
    _LOADED_IMAGES.update(p.resolve() for p in found)
    return found


def remember_loaded(paths: Iterable[str | Path]) -> None:
    """Mark images as listed by this process (captions may then be written beside them)."""
    _LOADED_IMAGES.update(Path(p).resolve() for p in paths)


def _is_image_name(name: str) -> bool:
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


def caption_targets(paths: Iterable[str], mode: str, output_dir: str | Path, subfolder: str = "",
                    extension: str = ".txt") -> list[Path]:
    """Where each caption goes: beside its (loaded) image, or in the output subfolder by image stem."""
    if not extension.startswith(".") or "/" in extension or "\\" in extension or extension in (".", ".."):
        raise InputError(f"bad caption extension {extension!r}; use e.g. .txt")
    targets = []
    folder = safe_subfolder(output_dir, subfolder) if mode == "output folder" else None
    for index, raw in enumerate(paths):
        text = str(raw or "").strip()
        if folder is not None:
            stem = Path(text).stem if text else f"caption_{index:05d}"
            targets.append(folder / f"{stem}{extension}")
            continue
        if not text:
            raise InputError(f"caption {index} has no image path; use the output-folder mode for images "
                             "that did not come from Load Image Folder")
        image = Path(text).resolve()
        if image not in _LOADED_IMAGES:
            raise InputError(f"{text} was not loaded by Load Image Folder in this session; captions are only "
                             "written beside images the pack loaded itself (or into the output folder)")
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
        write_atomically(target, lambda tmp, text=caption: tmp.write_text(text + "\n", encoding="utf-8"))
    return targets
