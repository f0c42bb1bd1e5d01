"""Files the library writes: checked before any work starts, written atomically, never overwritten unless asked."""

from __future__ import annotations

import errno
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import InputError, storage_error


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
    (or a crash) never sees a half-written file; a full disk is one ``StorageError`` naming ``path``."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent or ".")
    os.close(handle)
    try:
        ordinary_mode(temporary)
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException as err:
        Path(temporary).unlink(missing_ok=True)
        full = storage_error(err, path)
        if full is None:
            raise
        raise full from None
    return path


#: Whether folders can be opened one part at a time without following links (POSIX; not Windows).
NO_FOLLOW = all(hasattr(os, flag) for flag in ("O_NOFOLLOW", "O_DIRECTORY")) and os.open in os.supports_dir_fd


def write_no_follow(path: str | Path, data: bytes, replace: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically through no link at all; ``False`` (nothing written) when an entry
    is already there and ``replace`` is off.

    ``path``'s folder must be a real path (links resolved when it was checked, ``scr_core.allowed``): it is
    opened one folder at a time without following links, so a folder swapped for a link since then is one
    ``InputError`` and nothing lands elsewhere; the file is created in that open folder and renamed over
    ``path``, which replaces a link there rather than writing through it. A folder in the file's place is
    one ``InputError``; a full disk is the ``OSError`` it is. Without ``NO_FOLLOW`` (Windows) the folder's
    real path is compared just before the write instead.
    """
    path = Path(path)
    if not NO_FOLLOW:
        return _write_compared(path, data, replace)
    folder = _open_real_folder(path.parent)
    try:
        try:
            found = os.stat(path.name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            found = None
        if found is not None:
            if stat.S_ISDIR(found.st_mode):
                raise InputError(f"{path} is a folder; nothing was written over it")
            if not replace:
                return False
        temporary = f".scr-{secrets.token_hex(6)}.tmp"
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                         0o666, dir_fd=folder)  # the umask applies, as for a plain open
        try:
            with os.fdopen(handle, "wb") as sink:
                sink.write(data)
            os.replace(temporary, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            try:
                os.unlink(temporary, dir_fd=folder)
            except OSError:
                pass
            raise
        return True
    finally:
        os.close(folder)


def _open_real_folder(folder: Path) -> int:
    """A descriptor of ``folder`` reached from the root one part at a time, following no link."""
    if not folder.is_absolute():
        folder = Path(os.path.abspath(folder))
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    handle = os.open(folder.anchor, flags)
    try:
        for part in folder.parts[1:]:
            try:
                inner = os.open(part, flags, dir_fd=handle)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    raise InputError(f"{folder} is not the folder that was checked (its part {part!r} is now a link, "
                                     "a file or gone); nothing is written through a link") from None
                raise
            os.close(handle)
            handle = inner
        return handle
    except BaseException:
        os.close(handle)
        raise


def _write_compared(path: Path, data: bytes, replace: bool) -> bool:
    """``write_no_follow`` where folders cannot be opened without following links: the folder's real path is
    compared with the one checked just before the write."""
    if os.path.realpath(path.parent) != os.path.abspath(path.parent):
        raise InputError(f"{path.parent} is not the folder that was checked (a link is now on its way); nothing "
                         "is written through a link")
    if path.is_dir() and not path.is_symlink():
        raise InputError(f"{path} is a folder; nothing was written over it")
    if os.path.lexists(path) and not replace:
        return False
    write_atomically(path, lambda temporary: temporary.write_bytes(data))
    return True
