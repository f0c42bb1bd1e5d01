"""Files the library writes: checked before any work starts, written atomically, never overwritten unless asked."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import InputError


def check_new_file(path: str | Path, suffixes: Iterable[str], overwrite: bool = False) -> Path:
    """``path`` if a file can be written there: a known suffix, an existing writable folder, and no
    file in the way unless ``overwrite``. Called before the model runs, so a typo costs nothing."""
    path = Path(path).expanduser()
    allowed = tuple(s.lower() for s in suffixes)
    if path.suffix.lower() not in allowed:
        raise InputError(f"{path}: unknown or missing file extension; use one of {', '.join(allowed)}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"folder {folder} does not exist; create it first")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    try:  # os.access says yes to root on read-only places; a real file says the truth
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".scr-write-check-"):
            pass
    except OSError as err:
        raise InputError(f"folder {folder} is not writable ({err.strerror})") from None
    return path


def current_umask() -> int:
    """The process umask: from /proc on Linux (no window in which other threads see another umask),
    else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def ordinary_mode(path: str | Path, folder: bool = False) -> None:
    """Give a ``mkstemp``/``mkdtemp`` path (private, 0600/0700) the mode a plain ``open``/``mkdir``
    would: others may read the result unless the umask says otherwise."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary path)`` in ``path``'s folder, then rename it over ``path``: a reader
    (or a crash) never sees a half-written file."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent or ".")
    os.close(handle)
    try:
        ordinary_mode(temporary)
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
