"""Which folders a posted ComfyUI workflow may read and write (pure: the nodes pass ComfyUI's folders in).

A ComfyUI server can be reachable by others, so one rule covers every node that takes a folder or a
path: images are read from and captions written to ComfyUI's input and output folders and the
folders the server's owner lists in ``SCR_ALLOWED_FOLDERS`` (``os.pathsep``-separated); models load
from the LLM model folders and ``SCR_ALLOWED_FOLDERS`` only — never from ``input/``, which
``/upload/image`` fills with any bytes a client sends. Symlinks are resolved before every check.
Downloads happen only when the owner sets ``SCR_ALLOW_DOWNLOADS=1``. The CLI is the local user and
uses none of this.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from .env import env_flag
from .errors import InputError, ModelLoadError

ALLOWED_ENV = "SCR_ALLOWED_FOLDERS"
DOWNLOADS_ENV = "SCR_ALLOW_DOWNLOADS"
PIXELS_ENV = "SCR_MAX_FOLDER_PIXELS"
#: Pixels one Load Image Folder may decode in total (each image also obeys images.MAX_IMAGE_PIXELS):
#: a posted workflow cannot make the server hold a whole photo archive in memory.
DEFAULT_FOLDER_PIXELS = 256_000_000


def owner_folders(env: Mapping[str, str] = os.environ) -> list[Path]:
    """The folders the owner listed in ``SCR_ALLOWED_FOLDERS`` (resolved; blanks skipped)."""
    return [Path(p).expanduser().resolve() for p in env.get(ALLOWED_ENV, "").split(os.pathsep) if p.strip()]


def allowed_folders(comfy_folders: Iterable[str | Path], env: Mapping[str, str] = os.environ) -> list[Path]:
    """``comfy_folders`` (e.g. input and output) plus the owner's folders, resolved."""
    return [Path(p).resolve() for p in comfy_folders if str(p).strip()] + owner_folders(env)


def inside(path: Path, folders: Iterable[Path]) -> bool:
    """Whether the resolved ``path`` is one of ``folders`` or below one."""
    return any(path == f or f in path.parents for f in folders)


def check_allowed(path: str | Path, folders: Iterable[Path], what: str = "folder") -> Path:
    """``path`` resolved (symlinks followed), or one ``InputError`` line saying how to allow it."""
    text = str(path).strip()
    if not text:
        raise InputError(f"no {what} given")
    resolved = Path(text).expanduser().resolve()
    if not inside(resolved, list(folders)):
        raise InputError(f"{what} {text} is outside the folders this server allows (input, output, {ALLOWED_ENV}); "
                         f"to caption a dataset folder, start ComfyUI with {ALLOWED_ENV}=/path/to/data")
    return resolved


def check_model_folder(path: str | Path, model_folders: Iterable[str | Path],
                       env: Mapping[str, str] = os.environ) -> Path:
    """A model folder given as a path: only inside the LLM model folders or the owner's folders."""
    text = str(path).strip()
    resolved = Path(text).expanduser().resolve()
    folders = [Path(p).resolve() for p in model_folders] + owner_folders(env)
    if not inside(resolved, folders):
        raise ModelLoadError(f"model path {text} is outside the model folders this server allows (models/LLM, "
                             f"{ALLOWED_ENV}); put the model under models/LLM or start ComfyUI with "
                             f"{ALLOWED_ENV}=/path/to/models")
    return resolved


def downloads_allowed(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the owner turned hub downloads on (``SCR_ALLOW_DOWNLOADS=1``); off by default."""
    return env_flag(DOWNLOADS_ENV, env)


def folder_pixel_budget(env: Mapping[str, str] = os.environ) -> int:
    """``SCR_MAX_FOLDER_PIXELS`` (a positive integer) or the default."""
    raw = env.get(PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_FOLDER_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(f"{PIXELS_ENV}={raw!r} must be a positive number of pixels")
    return value


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
