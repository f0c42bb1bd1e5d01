"""Where the loaders find models (modelled on ComfyUI's ``folder_paths``): the LLM folders, the checkpoint
and exported folders in them, the free paths a workflow may name, and when a hub model may be downloaded.

One lookup serves both loaders: a checkpoint folder is one that holds ``config.json``, an exported
folder one that holds ``scr_config.json``. Models load only from the LLM folders, the bundled testbed
and ``SCR_ALLOWED_FOLDERS`` (``scr_core.allowed``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

BUNDLED = "testbed (bundled, no download)"
NOT_DOWNLOADED = " (not downloaded)"
CHECKPOINT_MARK = "config.json"
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def llm_folders() -> list[str]:
    """``models/LLM`` (shared with other caption packs; ``extra_model_paths.yaml`` can add more)."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, "LLM")
    if "LLM" not in folder_paths.folder_names_and_paths or default not in folder_paths.get_folder_paths("LLM"):
        folder_paths.add_model_folder_path("LLM", default)
    return folder_paths.get_folder_paths("LLM")


def model_folders() -> list[str]:
    """Where models may load from: the LLM folders and the bundled testbed (plus ``SCR_ALLOWED_FOLDERS``,
    added by ``check_model_folder``) — never ``input/``, which any client can upload to."""
    from scr_core import default_model

    return [*llm_folders(), str(Path(default_model()[0]).parent)]


def folders_holding(mark: str, unless: str | None = None) -> list[str]:
    """The folders under the LLM folders, one or two levels deep, that hold the file ``mark`` (and not
    the file ``unless``), by their names relative to their LLM folder (in folder order, sorted within
    one). Hidden folders are never listed: a download's staging folder is one (``download``)."""
    names = []
    for root in llm_folders():
        base = Path(root)
        if base.is_dir():
            for found in sorted(list(base.glob(f"*/{mark}")) + list(base.glob(f"*/*/{mark}"))):
                name = found.parent.relative_to(base)
                hidden = any(part.startswith(".") for part in name.parts)
                if not hidden and not (unless and (found.parent / unless).exists()):
                    names.append(name.as_posix())
    return names


def find_folder(name: str, mark: str) -> Path | None:
    """The first LLM folder's ``name`` that holds ``mark``, checked against the model folders; else ``None``."""
    from scr_core.allowed import check_model_folder

    for root in llm_folders():
        candidate = Path(root) / name
        if (candidate / mark).is_file():
            return check_model_folder(candidate, model_folders())
    return None


def model_choices() -> list[str]:
    """The bundled testbed first (every shipped workflow runs offline), then each checkpoint folder
    under the LLM folders, then the curated hub models (``scr_core.known_models``) by hub id, marked as
    not downloaded until their folder is there."""
    from scr_core.known_models import KNOWN_MODELS

    known = {m.folder: m.hub_id for m in KNOWN_MODELS}
    names = [known.get(name, name) for name in folders_holding(CHECKPOINT_MARK)]
    present = set(names)
    hub = [m.hub_id if m.hub_id in present else m.hub_id + NOT_DOWNLOADED for m in KNOWN_MODELS]
    return [BUNDLED, *dict.fromkeys(n for n in names if n not in known.values()), *hub]


def onnx_choices() -> list[str]:
    """Exported folders (with scr_config.json) under the LLM folders; never a hub download (a posted
    workflow chose its files)."""
    from export.folder_config import CONFIG_NAME

    from .download import DOWNLOADED_MARK

    return list(dict.fromkeys(folders_holding(CONFIG_NAME, unless=DOWNLOADED_MARK))) or \
        ["(no exported folder in models/LLM)"]


def known_choice(choice: str) -> str | None:
    """The hub id a combo value names (with or without the not-downloaded mark: a saved workflow keeps
    working after the download), else ``None``."""
    from scr_core.known_models import KNOWN_MODELS

    hub_id = str(choice).removesuffix(NOT_DOWNLOADED)
    return hub_id if any(m.hub_id == hub_id for m in KNOWN_MODELS) else None


def same_model_choice(choice):
    """``choice`` as the current combo spells it, so validation accepts either mark of a known model."""
    hub_id = known_choice(choice) if isinstance(choice, str) else None
    if hub_id is None:
        return choice
    return next(c for c in model_choices() if known_choice(c) == hub_id)


def model_path(choice: str, path: str, download: bool) -> str:
    """The checkpoint folder to load: the free path (a folder inside the model folders, or with
    ``download`` a hub id) when given, else the combo's choice."""
    from scr_core import ModelLoadError, default_model
    from scr_core.allowed import check_model_folder

    text = (path or "").strip()
    if text and download:
        return _download(text)
    if text:
        local = Path(text).expanduser()
        candidates = [local] if local.is_absolute() else [Path(root) / local for root in llm_folders()]
        for candidate in candidates:
            folder = check_model_folder(candidate, model_folders())
            if folder.is_dir():
                return str(folder)
        return _missing(text)
    if choice == BUNDLED:
        return str(default_model()[0])
    if hub_id := known_choice(choice):
        return _download(hub_id)  # its own folder is used without network once there
    if found := find_folder(choice, CHECKPOINT_MARK):
        return str(found)
    raise ModelLoadError(f"model {choice!r} is not in any LLM folder ({', '.join(llm_folders())})")


def onnx_path(choice: str, path: str) -> Path:
    """The exported folder to load: the free path (inside the model folders) when given, else the combo's."""
    from export.folder_config import CONFIG_NAME

    from scr_core import ModelLoadError
    from scr_core.allowed import check_model_folder

    from .download import DOWNLOADED_MARK

    text = (path or "").strip()
    folder = check_model_folder(Path(text).expanduser(), model_folders()) if text else find_folder(choice, CONFIG_NAME)
    if folder is None or not folder.is_dir():
        raise ModelLoadError(f"exported folder not found: {path or choice}; make one with "
                             "python -m export.onnx --out models/LLM/<name>")
    if (folder / DOWNLOADED_MARK).exists():
        raise ModelLoadError(f"{folder} was downloaded from the hub by a workflow: Load ONNX VLM runs only "
                             "folders exported on this machine (python -m export.onnx)")
    return folder


def _missing(text: str) -> str:
    from scr_core import ModelLoadError

    raise ModelLoadError(f"model folder not found: {text}. For a hub id (owner/name), turn on download_from_hub "
                         "(the model is then saved under models/LLM/<owner>--<name>)")


def _download(repo_id: str) -> str:
    """A hub model in its own folder ``models/LLM/<owner>--<name>`` — only when the server's owner allows
    downloads (``SCR_ALLOW_DOWNLOADS=1``) and never offline. A complete folder already there is used
    without the network, anything else there is refused; the download goes to a staging folder,
    renamed when complete, and stops on ComfyUI's interrupt (see ``download``)."""
    from scr_core import ModelLoadError
    from scr_core.allowed import DOWNLOADS_ENV, downloads_allowed
    from scr_core.known_models import hub_folder

    from .download import download

    if not HUB_ID.fullmatch(repo_id) or ".." in repo_id:
        raise ModelLoadError(f"{repo_id!r} is not a hub id (owner/name); a local model folder goes in path with "
                             "download_from_hub off")
    folders = [Path(root) / hub_folder(repo_id) for root in llm_folders()]
    target = next((f for f in folders if f.exists()), folders[0])
    if target.exists():
        if (target / CHECKPOINT_MARK).is_file():
            return str(target)  # downloaded before (or put there by hand): no network
        raise ModelLoadError(f"{target} exists but holds no complete checkpoint (no config.json); remove it "
                             "to download again")
    if not downloads_allowed():
        raise ModelLoadError(f"{repo_id} is not downloaded and this server does not download models: restart "
                             f"ComfyUI with {DOWNLOADS_ENV}=1 in its environment (e.g. {DOWNLOADS_ENV}=1 python "
                             f"main.py) to allow it, or put the model folder under models/LLM/{target.name}")
    from scr_core.env import hub_offline

    if hub_offline():
        raise ModelLoadError(f"{repo_id}: HF_HUB_OFFLINE is set, so nothing is downloaded; put the model folder "
                             f"under models/LLM/{target.name}")
    return str(download(repo_id, target))
