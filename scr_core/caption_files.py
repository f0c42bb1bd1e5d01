"""Where images are read from and captions written to (pure): ComfyUI's Load Image Folder and Save
Captions and ``python -m scr_core caption-folder --txt`` share these rules.

A ComfyUI server can be reachable by others, and a posted workflow must not read or write files where
it likes: the nodes pass ``allowed`` (the folders of ``scr_core.allowed``, whose docstring has the rule
for links), and then a folder is listed only inside them and a caption is written (a) under ComfyUI's
output folder, into a relative subfolder that cannot climb out of it, or (b) as ``<image stem>.txt``
beside an existing image file (a name the loaders accept: ``IMAGE_PATTERNS``) that is itself inside
them — never the image itself, never beside a ``notes.txt`` or a model's ``merges.txt`` — no memory of
earlier prompts needed. The CLI is the local user and passes no ``allowed``. A walk never follows a
symlinked folder; every caption is written atomically, through no link, where it was checked
(``outputs.write_no_follow``); an existing file is replaced only when asked, and without asking one that
appeared since the check is never overwritten (``write_caption_files`` skips it).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath, PureWindowsPath

from .allowed import check_allowed, within
from .errors import InputError, SCRError, StorageError, storage_error
from .outputs import write_no_follow
from .path_text import check_path_text, checked_path, climbs

IMAGE_PATTERNS = ("*.png", "*.jpg", "*.jpeg", "*.webp", "*.bmp", "*.gif", "*.tif", "*.tiff")
#: Video clips (``scr_core.video.VIDEO_SUFFIXES``), listed too where a caller asks for clips.
VIDEO_PATTERNS = ("*.mp4", "*.webm", "*.mov", "*.mkv")

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
                allowed: Sequence[Path] | None = None, clips: bool = False) -> list[Path]:
    """Image files of ``folder`` sorted by path, filtered by ``patterns`` ("*.png;*cat*"), at most
    ``limit`` (0 = all); with ``allowed``, the folder and every file must lie inside those folders (as
    listed or with links resolved: ``scr_core.allowed``). The paths come back as listed. ``clips``: video
    files too (``VIDEO_PATTERNS``)."""
    root = checked_path(folder, "folder")
    if allowed is not None:
        check_allowed(root, allowed, "image folder")
    if not root.is_dir():
        raise InputError(f"image folder not found: {root}")
    kinds = IMAGE_PATTERNS + (VIDEO_PATTERNS if clips else ())
    wanted = [p.strip().lower() for p in patterns.replace(",", ";").split(";") if p.strip()] or list(kinds)
    found = sorted(p for p in _walk(root, recursive) if is_image_name(p.name, clips)
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


def is_image_name(name: str, clips: bool = False) -> bool:
    """Whether ``name`` is a file the loaders read (an image; with ``clips``, a video file too)."""
    return any(fnmatch.fnmatch(name.lower(), p) for p in IMAGE_PATTERNS + (VIDEO_PATTERNS if clips else ()))


def safe_subfolder(output_dir: str | Path, subfolder: str) -> Path:
    """The real path of ``output_dir/subfolder`` (created), refusing absolute paths and ``..``; a link the
    owner put in the output folder is followed (``scr_core.allowed``)."""
    text = (subfolder or "").strip()
    if text:
        check_path_text(text, "subfolder")
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise InputError(f"subfolder {text!r} must be relative to ComfyUI's output folder")
    if climbs(text):
        raise InputError(f"subfolder {text!r} may not contain '..'")
    target = Path(os.path.abspath(output_dir)) / text
    target.mkdir(parents=True, exist_ok=True)
    return Path(os.path.realpath(target))


def caption_targets(paths: Iterable[str], mode: CaptionMode | str, output_dir: str | Path, subfolder: str = "",
                    extension: str = ".txt", allowed: Sequence[Path] | None = None) -> list[Path]:
    """Where each caption goes (``mode``, checked), as a real path (the write follows no link from there):
    beside its image (an existing image or clip file, inside ``allowed`` when given, the caption named after
    the image as it was listed), or in the output subfolder by image stem."""
    mode = CaptionMode(mode)
    if not extension.startswith(".") or "/" in extension or "\\" in extension or extension in (".", "..") \
            or is_image_name("x" + extension, clips=True):
        raise InputError(f"bad caption extension {extension!r}; use e.g. .txt")
    targets = []
    folder = safe_subfolder(output_dir, subfolder) if mode is CaptionMode.OUTPUT_FOLDER else None
    for index, raw in enumerate(paths):
        text = str(raw or "").strip()
        if folder is not None:
            stem = Path(check_path_text(text, "image path")).stem if text else f"caption_{index:05d}"
            targets.append(folder / f"{stem}{extension}")
            continue
        if not text:
            raise InputError(f"caption {index} has no image path; use the output-folder mode for images "
                             "that did not come from Load Image Folder")
        targets.append(_beside(text, extension, allowed))
    if len(set(targets)) != len(targets):
        raise InputError("two captions would go to the same file; give the images different names")
    return targets


def _beside(text: str, extension: str, allowed: Sequence[Path] | None) -> Path:
    """``<stem><extension>`` in the real folder of the image ``text`` names (module docstring)."""
    listed = checked_path(text, "image")
    image = check_allowed(text, allowed, "image") if allowed is not None else Path(os.path.realpath(listed))
    if not is_image_name(listed.name, clips=True):
        raise InputError(f"{text} is not an image file ({', '.join(IMAGE_PATTERNS)}) or a clip "
                         f"({', '.join(VIDEO_PATTERNS)}); captions are written beside images and clips only")
    if not image.is_file():
        raise InputError(f"image {text} does not exist; captions are written beside existing images only")
    spelled = Path(os.path.abspath(listed.parent)) / f"{listed.stem}{extension}"
    target = Path(os.path.realpath(spelled.parent)) / spelled.name
    if allowed is not None and not within(spelled, target, allowed):
        raise InputError(f"the caption of {text} would go to {target}, outside the folders this server allows")
    if target == image:
        raise InputError(f"the caption of {text} would replace the image itself ({image})")
    return target


@dataclass
class CaptionWrites:
    """What ``write_caption_files`` did, file by file: ``skipped`` were there already (and ``overwrite`` was
    off), ``failed`` holds (file, one-line reason)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def write_caption_files(captions: Sequence[str], targets: Sequence[Path], overwrite: bool = False) -> CaptionWrites:
    """Write every caption it can (``outputs.write_no_follow``), each atomically; a file that cannot be
    written (a folder in its place, a folder swapped for a link) is reported, not raised, so one bad file
    never costs the others; an existing file is skipped unless ``overwrite``. A full disk stops the batch
    with one ``StorageError`` line (every file after it would fail the same way)."""
    if len(captions) != len(targets):
        raise InputError(f"got {len(captions)} captions for {len(targets)} paths")
    done = CaptionWrites()
    for caption, target in zip(captions, targets):
        try:
            wrote = write_no_follow(target, (caption + "\n").encode("utf-8"), replace=overwrite)
        except SCRError as err:
            done.failed.append((target, str(err)))
        except OSError as err:
            full = storage_error(err, target)
            if full is not None:
                raise StorageError(f"{full} ({len(done.written)} of {len(targets)} caption file(s) of this batch "
                                   "were written)") from None
            done.failed.append((target, f"cannot write it: {err.strerror or err}"))
        else:
            (done.written if wrote else done.skipped).append(target)
    return done


def write_captions(captions: list[str], targets: list[Path], overwrite: bool = False) -> list[Path]:
    """Write every caption, atomically; refuse the whole batch before writing if one file exists, and end
    with one line naming what could not be written (the others are written)."""
    if len(captions) != len(targets):
        raise InputError(f"got {len(captions)} captions for {len(targets)} paths")
    existing = [t for t in targets if os.path.lexists(t)]
    if existing and not overwrite:
        raise InputError(f"{existing[0]} exists ({len(existing)} caption file(s) in the way); "
                         "turn on overwrite to replace them")
    done = write_caption_files(captions, targets, overwrite)
    problems = done.failed + [(t, "it appeared meanwhile; turn on overwrite to replace it") for t in done.skipped]
    if problems:
        (first, why), more = problems[0], len(problems) - 1
        raise InputError(f"{len(done.written)} of {len(targets)} caption file(s) written; {first}: {why}"
                         + (f" (and {more} more)" if more else ""))
    return done.written
