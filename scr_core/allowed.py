"""Which folders a posted ComfyUI workflow may read and write, and where models may load from (pure: the
nodes pass ComfyUI's folders in; ``upload_folders`` asks a running ComfyUI for its input, output and temp).

Images are read from and captions written to ComfyUI's input and output folders and the folders the
server's owner lists in ``SCR_ALLOWED_FOLDERS`` (absolute paths, ``os.pathsep``-separated). Models load
from the LLM model folders and ``SCR_ALLOWED_FOLDERS`` — never from ComfyUI's input, output or temp
folders, which ``/upload/image`` and any workflow fill with bytes a client chose, whatever the allowed
list says and wherever a link leads. Downloads happen only when the owner sets ``SCR_ALLOW_DOWNLOADS=1``.
The CLI is the local user and uses none of this.

Links: a path a posted workflow names is checked as written — a NUL byte, an over-long name and any
``..`` part are refused — and must lie inside an allowed folder either as spelled or with its links
resolved. Links already on disk are the owner's: no posted workflow can make one (uploads, saved images,
captions and downloads are plain files), so a model folder the owner linked into ``models/LLM`` or a photo
drive linked under ``input/`` works, as it does for ComfyUI's own nodes, which check paths lexically.
The check returns the real path (links resolved once, there). Writes then follow no link at all
(``outputs.write_no_follow``): they go along that real path, opened one folder at a time, so a folder
swapped for a link after the check makes that one write fail instead of landing elsewhere. The pack's
own unasked writes (the sample scenes) skip any link in their way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from .env import env_flag, env_number
from .errors import InputError, ModelLoadError
from .path_text import check_path_text, climbs

ALLOWED_ENV = "SCR_ALLOWED_FOLDERS"
DOWNLOADS_ENV = "SCR_ALLOW_DOWNLOADS"
PIXELS_ENV = "SCR_MAX_FOLDER_PIXELS"
#: Pixels one Load Image Folder may decode in total (each image also obeys images.MAX_IMAGE_PIXELS):
#: a posted workflow cannot make the server hold a whole photo archive in memory.
DEFAULT_FOLDER_PIXELS = 256_000_000
HOW_TO_ALLOW = f"to caption a dataset folder, start ComfyUI with {ALLOWED_ENV}=/path/to/data"


def owner_folders(env: Mapping[str, str] = os.environ) -> list[Path]:
    """The folders the owner listed in ``SCR_ALLOWED_FOLDERS``, as absolute paths (entries stripped, blanks
    skipped); a relative entry is one line: it would mean whatever folder ComfyUI happened to start in."""
    folders = []
    for entry in env.get(ALLOWED_ENV, "").split(os.pathsep):
        entry = entry.strip()
        if not entry:
            continue
        path = Path(os.path.expanduser(entry))
        if not path.is_absolute():
            raise InputError(f"{ALLOWED_ENV} lists {entry!r}, which is not an absolute path; the server's owner must "
                             "list absolute folders (e.g. /data/photos)")
        folders.append(Path(os.path.abspath(path)))
    return folders


def allowed_folders(comfy_folders: Iterable[str | Path], env: Mapping[str, str] = os.environ) -> list[Path]:
    """``comfy_folders`` (e.g. input and output) plus the owner's folders, as absolute paths."""
    return [Path(os.path.abspath(p)) for p in comfy_folders if str(p).strip()] + owner_folders(env)


def upload_folders() -> list[Path]:
    """ComfyUI's input, output and temp folders when this runs inside ComfyUI (its ``folder_paths`` module is
    then imported; scr_core never imports it), else none."""
    folder_paths = sys.modules.get("folder_paths")
    getters = ("get_input_directory", "get_output_directory", "get_temp_directory")
    return [Path(os.path.abspath(getattr(folder_paths, g)())) for g in getters
            if callable(getattr(folder_paths, g, None))]


def inside(path: Path, folders: Iterable[Path]) -> bool:
    """Whether ``path`` is one of ``folders`` or below one (compared as given)."""
    return any(path == f or f in path.parents for f in folders)


def within(spelled: Path, real: Path, folders: Iterable[Path]) -> bool:
    """Whether a path lies inside ``folders`` as spelled (both absolute, unresolved) or with every link
    resolved on both sides (the module docstring's rule)."""
    folders = list(folders)
    return inside(spelled, folders) or inside(real, [Path(os.path.realpath(f)) for f in folders])


def posted(path: str | Path, what: str) -> tuple[str, Path, Path]:
    """(text, absolute path as spelled, real path) of a posted path; NUL bytes, over-long names and ``..``
    are one line each."""
    text = check_path_text(path, what)
    if climbs(text):
        raise InputError(_outside(what, text, "'..' is not followed in a posted path"))
    return (text, *_spelled_and_real(text))


def _spelled_and_real(text: str) -> tuple[Path, Path]:
    spelled = Path(os.path.abspath(os.path.expanduser(text)))
    return spelled, Path(os.path.realpath(spelled))


def _outside(what: str, text: str, why: str = "") -> str:
    return (f"{what} {text} is outside the folders this server allows (input, output, {ALLOWED_ENV})"
            f"{': ' + why if why else ''}; {HOW_TO_ALLOW}")


def check_allowed(path: str | Path, folders: Iterable[Path], what: str = "folder") -> Path:
    """The real path of ``path`` (links resolved), or one ``InputError`` line saying how to allow it."""
    text, spelled, real = posted(path, what)
    if not within(spelled, real, folders):
        raise InputError(_outside(what, text))
    return real


def check_model_folder(path: str | Path, model_folders: Iterable[str | Path],
                       env: Mapping[str, str] = os.environ, never: Iterable[str | Path] | None = None) -> Path:
    """A model folder given as a path: inside the LLM model folders or the owner's folders, and never inside
    ``never`` (default: ComfyUI's input, output and temp folders, ``upload_folders``)."""
    text = check_path_text(path, "model path")
    if climbs(text):
        raise ModelLoadError(_model_outside(text, "'..' is not followed in a posted path"))
    spelled, real = _spelled_and_real(text)
    folders = [Path(os.path.abspath(p)) for p in model_folders] + owner_folders(env)
    if not within(spelled, real, folders):
        raise ModelLoadError(_model_outside(text))
    for folder in upload_folders() if never is None else [Path(os.path.abspath(p)) for p in never]:
        if within(spelled, real, [folder]):
            raise ModelLoadError(f"model path {text} is inside ComfyUI's {folder.name} folder ({folder}), which "
                                 "clients can upload to: models never load from input, output or temp, whatever "
                                 f"{ALLOWED_ENV} says; put the model under models/LLM")
    return real


def _model_outside(text: str, why: str = "") -> str:
    return (f"model path {text} is outside the model folders this server allows (models/LLM, {ALLOWED_ENV})"
            f"{': ' + why if why else ''}; put the model under models/LLM or start ComfyUI with "
            f"{ALLOWED_ENV}=/path/to/models")


def downloads_allowed(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the owner turned hub downloads on (``SCR_ALLOW_DOWNLOADS=1``); off by default."""
    return env_flag(DOWNLOADS_ENV, env)


def folder_pixel_budget(env: Mapping[str, str] = os.environ) -> int:
    """``SCR_MAX_FOLDER_PIXELS`` (a positive integer) or the default."""
    return int(env_number(PIXELS_ENV, DEFAULT_FOLDER_PIXELS, env))


def check_pixel_budget(paths: Iterable[Path], budget: int) -> None:
    """Sum the images' sizes from their headers (nothing decoded); one line when over ``budget``."""
    from .images import _open, check_size

    total = 0
    for path in paths:
        try:
            with _open(path) as opened:
                check_size(opened.size, f"image {path}")
                total += opened.size[0] * opened.size[1]
        except InputError:
            raise
        except Exception as err:  # unreadable header: load_image reports it with its own message
            raise InputError(f"cannot read image {path}: {err}") from err
        if total > budget:
            raise InputError(f"the folder's images hold more than {budget:,} pixels in total ({PIXELS_ENV}); "
                             "use the filter or limit, raise the budget, or caption it with Caption Folder (SCR) "
                             "or python -m scr_core caption-folder, which read one batch at a time")
