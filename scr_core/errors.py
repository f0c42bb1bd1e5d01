"""One error family, so callers (CLI, ComfyUI, exporter) can catch ``SCRError`` and show its message."""

import errno

#: What the storage says when it refuses a write (full, over quota, file too large, read-only): not a bug,
#: so one line naming the file, never "please report it".
STORAGE_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS")
                           if hasattr(errno, name))


class SCRError(Exception):
    """Base class: every message says what went wrong and what to do about it."""


class ConfigError(SCRError, ValueError):
    """A configuration value is out of range; the message names the field."""


class InputError(SCRError, ValueError):
    """An image or prompt cannot be used (empty, zero-size, unreadable)."""


class ModelLoadError(SCRError):
    """A checkpoint folder is missing, incomplete or corrupt."""


class UnsupportedModelError(SCRError):
    """No adapter knows this model family."""


class LayoutError(SCRError):
    """The visual tokens cannot be located in the input sequence."""


class DependencyError(SCRError):
    """A package SCR needs is missing or too old; the message says what to install."""


class DataError(SCRError):
    """A benchmark data file is missing or malformed; the message names the file."""


class MissingExtraError(SCRError):
    """An optional part (the ONNX stack, the benchmark scorers) is not installed; the message names the
    requirements file that installs it (``scr_core.extras.require``)."""


class StorageError(SCRError):
    """The storage refused a write (full, over quota, read-only); the message names the file."""


def storage_error(err: BaseException, path=None) -> "StorageError | None":
    """``err`` as one ``StorageError`` line naming ``path`` (or the error's file) when the storage refused a
    write, else ``None``."""
    if not isinstance(err, OSError) or err.errno not in STORAGE_ERRNOS:
        return None
    return StorageError(f"cannot write {path or err.filename or 'a file'}: {err.strerror}; free some space (or "
                        "write somewhere else) and run again: what was written is kept")


class GenerationInterrupted(SCRError):
    """Generation was stopped by the caller's ``should_stop`` check.

    ``results`` holds what was generated up to the stop (one ``GenerationResult`` per prompt);
    the hooks are already removed when this is raised.
    """

    def __init__(self, message: str, results: list | None = None) -> None:
        super().__init__(message)
        self.results = results or []


class ReleasedError(SCRError):
    """The pipeline's model was released (``SCRPipeline.release``); load it again to use it."""


def exit_code(work, debug: bool = False) -> int:
    """Run a command-line entry point's ``work()``: 0, or one line on stderr and the exit code a shell
    expects (2 for an ``SCRError`` or a write the storage refused, 130 for Ctrl-C, 1 for anything
    unforeseen), never a traceback unless ``debug`` (then the error is raised again)."""
    import sys

    try:
        work()
    except SCRError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug or an unforeseen input: one line, the traceback on request
        if debug:
            raise
        storage = storage_error(err)
        if storage is not None:
            print(f"error: {storage}", file=sys.stderr)
            return 2
        print(f"error: unexpected {type(err).__name__}: {err!s:.300} (rerun with --debug for the traceback, and "
              "please report it)", file=sys.stderr)
        return 1
    return 0
