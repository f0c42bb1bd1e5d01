"""The transformers versions SCR runs on: 5.0 and later (one rule, checked before transformers is used).

Why 5.0: every family's ``get_image_features(..., return_dict=True)`` (how ``Adapter.shared_vision`` shares one
vision-tower run), the attention and mask interfaces of the diagnostic capture and the tokenizer files that
5.x writes all arrived in 5.0; 4.57 fails most of the core tests. A family whose transformers classes arrived
later than 5.0 declares the version it needs (``Adapter.min_transformers``) and is refused at load.
Reads the installed version without importing transformers (``import scr_core`` stays light).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import DependencyError

MIN_TRANSFORMERS = "5.0"


def installed_transformers() -> str | None:
    """The installed transformers' version string, or ``None`` where it is not installed."""
    try:
        return version("transformers")
    except PackageNotFoundError:
        return None


def require_transformers(minimum: str = MIN_TRANSFORMERS, found: str | None = None, who: str = "SCR") -> None:
    """A ``DependencyError`` (one line: what is needed, what was found, the pip command) unless transformers
    ``found`` (default: the installed one) is at least ``minimum``; pre-releases of ``minimum`` count as it."""
    from packaging.version import InvalidVersion, Version

    found = installed_transformers() if found is None else found
    install = f"pip install -U 'transformers>={minimum}'"
    if found is None:
        raise DependencyError(f"{who} needs transformers >= {minimum} (not installed): {install}")
    try:
        too_old = Version(found).release < Version(minimum).release
    except InvalidVersion:
        too_old = True
    if too_old:
        raise DependencyError(f"{who} needs transformers >= {minimum} (found {found}): {install}")
