"""Adapter registry keyed by ``config.model_type``.

Every family adapter (one file each) is registered here for its model types; any other decoder VLM whose
visual tokens form a known grid works through ``GenericAdapter`` (``generic.py``).
"""

from __future__ import annotations

import inspect

from ..errors import ConfigError, UnsupportedModelError
from .base import Adapter
from .chameleon import ChameleonAdapter
from .generic import GenericAdapter
from .internvl import InternVLAdapter
from .llava import LlavaAdapter
from .qwen2_vl import Qwen2VLAdapter

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


for _adapter in (LlavaAdapter, Qwen2VLAdapter, InternVLAdapter, ChameleonAdapter):
    register(_adapter)


def unsupported_message(model_type) -> str:
    return (f"no SCR adapter for a {model_type!r} model; SCR supports: {', '.join(ADAPTERS)}. "
            f"{GENERIC_HINT[0].upper()}{GENERIC_HINT[1:]}")


def adapter_for(model, processor, **options) -> Adapter:
    """The registered adapter for ``model.config.model_type``; ``options`` go to its constructor
    (e.g. ``max_tiles`` for InternVL)."""
    model_type = getattr(model.config, "model_type", None)
    try:
        cls = ADAPTERS[model_type]
    except KeyError:
        raise UnsupportedModelError(unsupported_message(model_type)) from None
    accepted = [name for name in inspect.signature(cls.__init__).parameters
                if name not in ("self", "model", "processor")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{cls.__name__} ({model_type}) has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(accepted) or 'none'}"
        )
    return cls(model, processor, **options)


__all__ = ["ADAPTERS", "Adapter", "ChameleonAdapter", "GenericAdapter", "InternVLAdapter", "LlavaAdapter",
           "Qwen2VLAdapter", "adapter_for", "register", "unsupported_message"]
