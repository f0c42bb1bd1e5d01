"""Adapter registry keyed by ``config.model_type``."""

from __future__ import annotations

from ..errors import UnsupportedModelError
from .base import Adapter
from .llava import LlavaAdapter

ADAPTERS: dict[str, type[Adapter]] = {}


def register(adapter: type[Adapter]) -> type[Adapter]:
    for model_type in adapter.model_types:
        ADAPTERS[model_type] = adapter
    return adapter


register(LlavaAdapter)


def adapter_for(model, processor) -> Adapter:
    model_type = getattr(model.config, "model_type", None)
    try:
        cls = ADAPTERS[model_type]
    except KeyError:
        raise UnsupportedModelError(
            f"no SCR adapter for model_type {model_type!r}; supported: {', '.join(sorted(ADAPTERS))}"
        ) from None
    return cls(model, processor)


__all__ = ["ADAPTERS", "Adapter", "adapter_for", "register"]
