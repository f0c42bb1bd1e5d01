"""Any decoder VLM whose visual tokens form a known grid, described by the user.

Three facts are enough for SCR:

* where the image tokens are: either one token id repeated ``h*w`` times per image
  (``image_token_id``, LLaVA-style placeholders) or the tokens strictly between a start and an
  end token (``image_span=(start_id, end_id)``, e.g. Qwen-VL v1's 256 resampler tokens between
  ``<img>`` and ``</img>``);
* the grid ``(h, w)`` those tokens form, row-major (Qwen-VL v1: 16x16, the resampler's
  query grid, docs/method.md §6 #12);
* the decoder layers: a dotted attribute path from the top-level model to the
  ``nn.ModuleList`` of decoder blocks (``model.language_model.layers``, ``transformer.h``, ...).

Python::

    adapter = GenericAdapter(model, processor, image_span=(151857, 151858), grid=(16, 16),
                             layers_path="transformer.h")
    pipe = SCRPipeline(model, processor, adapter=adapter)

CLI: ``--adapter generic (--image-token-id N | --image-span START,END) --grid HxW --layers-path PATH``.

Requirements and limits. Prompts are built with the processor's chat template and
``processor(images=..., text=...)``; pass ``prepare=`` (a function of (images per prompt,
prompts) returning the model inputs) for models whose processor works differently. The
diagnostic pass captures attention through transformers' ``AttentionInterface`` (every
transformers-native model in 5.x); remote-code models with their own attention fall back to
their ``output_attentions`` (``diagnosis.own_attention_rows``, slower, with a warning). The decoder
config switched during the diagnostic pass is the ``config`` of the layers' attention modules.
Default hook layers: the paper's 0..15.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image
from torch import nn

from ..errors import LayoutError
from ..layout import VisualLayout, spans, token_runs
from .base import Adapter, attention_config

PrepareFn = Callable[[Sequence[Sequence[Image.Image]], Sequence[str]], dict]


def resolve_path(root: nn.Module, path: str):
    """``root.a.b.c`` for ``path="a.b.c"`` (integers index into lists), or a ``LayoutError``."""
    node: Any = root
    walked: list[str] = []
    for part in path.split("."):
        if not part:
            raise LayoutError(f"bad layers path {path!r}: empty component")
        try:
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        except (AttributeError, IndexError, TypeError, KeyError):
            here = ".".join(walked) or type(root).__name__
            children = [name for name, _ in node.named_children()] if isinstance(node, nn.Module) else []
            raise LayoutError(
                f"layers path {path!r}: {here} has no {part!r}"
                + (f"; its children are: {', '.join(children)}" if children else "")
            ) from None
        walked.append(part)
    return node


class GenericAdapter(Adapter):
    """User-described layout; see the module docstring.

    grid: (height, width) of one image's visual tokens, row-major.
    layers_path: dotted path from ``model`` to the decoder layers' ``nn.ModuleList``.
    image_token_id: the placeholder repeated height*width times per image, or
    image_span: (start_id, end_id) around each image's height*width tokens (exactly one of the two).
    hook_layers: the paper-style inclusive range (first, last) to hook by default (default 0..15;
    scaled like the other families on decoders shallower than 28 layers).
    prepare: optional ``(images per prompt, prompts) -> model inputs`` replacing the processor call.
    unquantized_modules: the dotted names of the vision tower, projector and LM head, which a quantized
    load keeps in full precision (``functools.partial(GenericAdapter, ..., unquantized_modules=(...))``);
    without them a quantized load is refused.
    """

    model_types = ()  # never chosen by the registry: construct it explicitly
    paper_hook_layers = (0, 15)

    def __init__(self, model: nn.Module, processor, *, grid: tuple[int, int], layers_path: str,
                 image_token_id: int | None = None, image_span: tuple[int, int] | None = None,
                 hook_layers: tuple[int, int] | None = None, prepare: PrepareFn | None = None,
                 unquantized_modules: tuple[str, ...] = ()) -> None:
        super().__init__(model, processor)
        self.unquantized_modules = tuple(unquantized_modules)
        if (image_token_id is None) == (image_span is None):
            raise LayoutError("give exactly one of image_token_id (a repeated placeholder token) or "
                              "image_span=(start_id, end_id) (the tokens between them)")
        if image_span is not None and (len(tuple(image_span)) != 2 or image_span[0] == image_span[1]):
            raise LayoutError(f"image_span must be two different token ids (start, end), got {image_span!r}")
        try:
            height, width = (int(v) for v in grid)
        except (TypeError, ValueError):
            raise LayoutError(f"grid must be (height, width), got {grid!r}") from None
        if height < 1 or width < 1:
            raise LayoutError(f"grid must be positive, got {height}x{width}")
        self.grid = (height, width)
        self.image_token_id = None if image_token_id is None else int(image_token_id)
        self.image_span = None if image_span is None else (int(image_span[0]), int(image_span[1]))
        self.layers_path = layers_path
        layers = resolve_path(model, layers_path)
        if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
            raise LayoutError(
                f"layers path {layers_path!r} leads to a {type(layers).__name__}, not a non-empty ModuleList of "
                "decoder layers"
            )
        self._layers = layers
        parent_path = layers_path.rpartition(".")[0]
        self._stack = resolve_path(model, parent_path) if parent_path else model
        if hook_layers is not None:
            self.paper_hook_layers = (int(hook_layers[0]), int(hook_layers[1]))
        self._prepare = prepare

    def language_model(self) -> nn.Module:
        return self._stack

    def decoder_layers(self) -> nn.ModuleList:
        return self._layers

    def decoder_config(self):
        found = attention_config(self._layers)
        if found is not None:
            return found
        return getattr(self._stack, "config", None) or self.model.config

    def prepare(self, images, prompts) -> dict:
        if self._prepare is not None:
            return dict(self._prepare(images, prompts))
        return super().prepare(images, prompts)

    def layout(self, inputs: dict) -> VisualLayout:
        height, width = self.grid
        if self.image_token_id is not None:
            return token_runs(inputs["input_ids"], self.image_token_id, height, width)
        assert self.image_span is not None  # the constructor takes exactly one of the two
        start, end = self.image_span
        return spans(inputs["input_ids"], start, end, height, width)


# -- command-line helpers (used by the CLI's model options) --------------------------------
def parse_grid(text: str) -> tuple[int, int]:
    """"16x16" -> (16, 16)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
        if height < 1 or width < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad grid {text!r}; use HxW, e.g. 16x16") from None
    return height, width


def parse_span(text: str) -> tuple[int, int]:
    """"151857,151858" -> (151857, 151858)."""
    try:
        start, end = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad image span {text!r}; use START_ID,END_ID") from None
    return start, end
