"""Every widget value a posted workflow sends, checked against the node's own schema (no ComfyUI import).

ComfyUI checks the pack's ``Choice`` combos and every number itself, except the inputs a node's
``validate_inputs`` names (it skips its own checks of those: ``shared.validates`` runs ``problem`` on
them) and the model combo it cannot check (``LoadVLM``). Linked inputs are ``None`` during validation, so
``execute`` checks every value again (``require``), from the inputs of ``define_schema()`` as they are now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from scr_core import InputError


def problem(inputs: Iterable, values: Mapping) -> str | None:
    """The first value that a combo's options or a number's min/max refuse, as one line; else ``None``.

    ``inputs``: schema inputs (a combo has ``options``, a number ``min``/``max``); a value may be a
    list (nodes with ``is_input_list``); ``None`` (a link not yet run) and unknown names are skipped.
    """
    for spec in inputs:
        name = getattr(spec, "id", None)
        if name is None or name not in values or values[name] is None:
            continue
        items = values[name] if isinstance(values[name], list) else [values[name]]
        for value in items:
            found = _check(spec, name, value)
            if found:
                return found
    return None


def _check(spec, name: str, value) -> str | None:
    options = getattr(spec, "options", None)
    if options is not None:
        if isinstance(value, str) and value in options:
            return None
        return f"{name} {_short(value)} is not one of: {_shown(options)}"
    low, high = getattr(spec, "min", None), getattr(spec, "max", None)
    if low is None and high is None or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} {_short(value)} is not a number"
    if low is not None and value < low:
        return f"{name} {value} is smaller than the minimum {low}"
    if high is not None and value > high:
        return f"{name} {value} is bigger than the maximum {high}"
    return None


def _shown(options) -> str:
    return ", ".join(map(str, options)) if len(options) <= 12 else f"{len(options)} options, e.g. {options[0]}"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def require(inputs: Iterable, values: Mapping) -> None:
    """``problem`` as an ``InputError`` (for ``execute``, where linked values are real, so a ``None`` for a
    required input is a posted ``null``, not a link)."""
    inputs = list(inputs)
    for spec in inputs:
        name = getattr(spec, "id", None)
        if name in values and values[name] is None and not getattr(spec, "optional", False):
            options = getattr(spec, "options", None)
            raise InputError(f"{name} has no value" + (f"; use one of: {_shown(options)}" if options else ""))
    found = problem(inputs, values)
    if found:
        raise InputError(found)
