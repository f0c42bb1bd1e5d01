"""One error family, so callers (CLI, ComfyUI, exporter) can catch ``SCRError`` and show its message."""


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


class DataError(SCRError):
    """A benchmark data file is missing or malformed; the message names the file."""


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
