"""Adapter registry keyed by ``config.model_type``.

Every family adapter (one file each) is registered here for its model types; any other decoder VLM whose
visual tokens form a known grid works through ``GenericAdapter`` (``generic.py``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, UnsupportedModelError
from .base import Adapter, AdapterOption
from .chameleon import ChameleonAdapter
from .gemma3 import Gemma3Adapter
from .generic import GenericAdapter
from .idefics3 import Idefics3Adapter, SmolVLMAdapter
from .internvl import InternVLAdapter
from .llava import LlavaAdapter
from .llava_next import LlavaNextAdapter, LlavaOnevisionAdapter
from .qwen2_vl import Qwen2VLAdapter
from .qwen3_vl import Qwen3VLAdapter

ADAPTERS: dict[str, type[Adapter]] = {}

GENERIC_HINT = (
    "for another decoder VLM whose image tokens form a known grid, use the generic adapter: "
    "SCRPipeline(model, processor, adapter=GenericAdapter(model, processor, image_token_id=... or "
    "image_span=(start, end), grid=(h, w), layers_path='model.language_model.layers')), or on the command line "
    "--adapter generic --image-token-id N (or --image-span START,END) --grid HxW --layers-path PATH"
)


def register(adapter: type[Adapter]) -> type[Adapter]:
    for model_type in adapter.model_types:
        ADAPTERS[model_type] = adapter
    return adapter


for _adapter in (LlavaAdapter, Qwen2VLAdapter, InternVLAdapter, ChameleonAdapter, LlavaNextAdapter,
                 LlavaOnevisionAdapter, Gemma3Adapter, Qwen3VLAdapter, Idefics3Adapter,
                 SmolVLMAdapter):
    register(_adapter)


def unsupported_message(model_type) -> str:
    return (f"no SCR adapter for a {model_type!r} model; SCR supports: {', '.join(ADAPTERS)}. "
            f"{GENERIC_HINT[0].upper()}{GENERIC_HINT[1:]}")


def split_options(cls: type[Adapter], options: dict | None) -> tuple[dict, dict]:
    """(adapter kwargs, processor kwargs) from ``options``, checked against ``cls.options``.

    An option the family does not declare is a ``ConfigError`` that lists the ones it has.
    ``None`` values mean "not set" and are dropped.
    """
    declared = {opt.name: opt for opt in cls.options}
    family = cls.family_name()
    unknown = sorted(set(options or {}) - set(declared))
    if unknown:
        raise ConfigError(
            f"{family} models have no option {', '.join(map(repr, unknown))}; "
            f"their options: {', '.join(declared) or 'none'}"
        )
    adapter_kwargs: dict[str, Any] = {}
    processor_kwargs: dict[str, Any] = {}
    for name, value in (options or {}).items():
        value = declared[name].check(value, family)
        if value is not None:
            target = adapter_kwargs if declared[name].applies_to == "adapter" else processor_kwargs
            target[name] = value
    return adapter_kwargs, processor_kwargs


def adapter_class(model_type) -> type[Adapter]:
    """The registered adapter class for ``model_type`` (an ``UnsupportedModelError`` otherwise)."""
    try:
        return ADAPTERS[model_type]
    except KeyError:
        raise UnsupportedModelError(unsupported_message(model_type)) from None


def adapter_for(model, processor, **options) -> Adapter:
    """The registered adapter for ``model.config.model_type``, built with its declared adapter
    ``options`` (e.g. ``max_tiles`` for InternVL); processor options belong to loading."""
    cls = adapter_class(getattr(model.config, "model_type", None))
    adapter_kwargs, processor_kwargs = split_options(cls, options)
    if processor_kwargs:
        raise ConfigError(f"{', '.join(processor_kwargs)} are processor options: pass them when loading "
                          "(SCRPipeline.from_pretrained(adapter_options=...)), they have no effect afterwards")
    return cls(model, processor, **adapter_kwargs)


def declared_options() -> dict[str, tuple[AdapterOption, tuple[str, ...]]]:
    """Every option of the registered adapters: name -> (declaration, model types that accept it).

    The CLI makes its family flags from this, the ComfyUI loader its widgets.
    """
    found: dict[str, tuple[AdapterOption, tuple[str, ...]]] = {}
    for model_type, cls in ADAPTERS.items():
        for opt in cls.options:
            known, types = found.get(opt.name, (opt, ()))
            found[opt.name] = (known, types + (model_type,))
    return found


__all__ = ["ADAPTERS", "Adapter", "AdapterOption", "ChameleonAdapter", "Gemma3Adapter", "GenericAdapter",
           "Idefics3Adapter", "InternVLAdapter", "LlavaAdapter", "LlavaNextAdapter", "LlavaOnevisionAdapter",
           "Qwen2VLAdapter", "Qwen3VLAdapter", "SmolVLMAdapter", "adapter_class", "adapter_for", "declared_options",
           "register", "split_options", "unsupported_message"]
