"""What SCR needs to know about a model family, in one place per family.

An adapter answers four questions (compare pyvene's per-architecture site mappings):
where are the decoder layers, which config drives their attention, how are prompts built,
and where do the visual tokens sit (with their grid); families that cut one image into
several grids also say how K is shared among them (``source_budgets``). Nothing outside ``adapters/`` names
a model family.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, cast

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..config import SCRConfig, paper_range
from ..errors import ConfigError
from ..layout import VisualGrid, VisualLayout, layout_from_rule
from ..prompts import SHORT_ANSWER_PROMPT, chat_messages
from ..template_guard import render_chat, warm_up
from ..versions import MIN_TRANSFORMERS
from .shared import fraction_range, shared_budgets
from ..video import SampledClip, SamplingDefaults


@dataclass(frozen=True)
class AdapterOption:
    """One family-specific loading option, declared by the adapter that understands it.

    The CLI makes a flag of it (``--max-tiles``), the ComfyUI loader a widget, and
    ``SCRPipeline.from_pretrained(adapter_options=...)`` routes it: ``applies_to="adapter"``
    options go to the adapter's constructor, ``"processor"`` options to
    ``AutoProcessor.from_pretrained`` (e.g. Qwen2-VL's ``min_pixels``).
    """

    name: str
    type: type
    default: Any
    help: str
    applies_to: Literal["adapter", "processor"] = "adapter"
    minimum: int | float | None = None
    maximum: int | float | None = None

    def check(self, value: Any, family: str) -> Any:
        """``value`` converted to the option's type, or a ``ConfigError`` naming the option."""
        if value is None:
            return None
        if isinstance(value, bool) and self.type is not bool:
            raise ConfigError(f"{family} option {self.name} must be {self.type.__name__}, got {value!r}")
        try:
            converted = self.type(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{family} option {self.name} must be {self.type.__name__}, got {value!r}") from None
        if self.type is int and converted != value:
            raise ConfigError(f"{family} option {self.name} must be an integer, got {value!r}")
        if ((self.minimum is not None and converted < self.minimum)
                or (self.maximum is not None and converted > self.maximum)):
            raise ConfigError(f"{family} option {self.name} must be {self.bounds}, got {value!r}")
        return converted

    @property
    def bounds(self) -> str:
        """The allowed range in words: ">= 1", "0 or 1", "between 1 and 12"."""
        low, high = self.minimum, self.maximum
        if high is None:
            return f">= {low}"
        if low is None:
            return f"<= {high}"
        return f"{low} or {high}" if self.type is int and high == low + 1 else f"between {low} and {high}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


class Adapter:
    """Base class; subclasses register themselves for one or more ``config.model_type`` values.

    The defaults are what most families share (transformers 5's ``model.model.language_model``, one K
    per grid, the paper's hook range); a family states only how it differs, as data where it can
    (``hook_fraction``, ``shares_k``, ``options``).
    """

    model_types: ClassVar[tuple[str, ...]] = ()
    #: Default hooked layers (the paper's table), as a function of decoder depth (with ``unquantized_modules``
    #: not a ClassVar: ``GenericAdapter`` takes both per instance).
    paper_hook_layers: tuple[int, int] = (0, 15)
    #: Families the paper has no numbers for: hook this fraction of the decoder instead
    #: (``shared.fraction_range``; ``None``: ``paper_hook_layers``).
    hook_fraction: ClassVar[float | None] = None
    #: One image shown as several grids (tiles, crops, a base and a high-res view) keeps one K, split
    #: over its grids by attention mass (``shared.shared_budgets``); False: every grid gets K.
    shares_k: ClassVar[bool] = False
    #: The family's own loading options (see ``AdapterOption``); adapter options are keyword arguments
    #: of the constructor, checked there against these declarations and kept as attributes.
    options: ClassVar[tuple[AdapterOption, ...]] = ()
    #: Appended (after one space) to yes/no and short-answer questions by ``SCRPipeline.answer``:
    #: the wording the family's own evaluations use (lmms-eval's LLaVA wording by default).
    short_answer_suffix: ClassVar[str] = SHORT_ANSWER_PROMPT
    #: Modules that stay unquantized under ``LoadOptions(quantization=...)`` (vision tower, projector,
    #: LM head), as paths from the model's root; none named: the family cannot be quantized.
    unquantized_modules: tuple[str, ...] = ()
    #: The processor output the vision tower reads (VCD noises it).
    pixel_key: ClassVar[str] = "pixel_values"
    #: The first transformers with the family's classes as the adapter uses them (loading refuses older ones).
    min_transformers: ClassVar[str] = MIN_TRANSFORMERS
    #: Whether a clip reaches the model through the family's video processor (its video tokens and grid);
    #: otherwise a clip is a multi-image prompt of its sampled frames, each frame a slice of its own.
    native_video: ClassVar[bool] = False
    #: Frames sampled from a clip when the family's video processor gives no count or rate (and for the
    #: multi-image prompt of families without one: each frame costs an image's tokens).
    video_frames: ClassVar[int] = 4
    #: The rate sampled when the video processor has no default of its own (``None``: ``video_frames``).
    video_fps: ClassVar[float | None] = None

    def __init__(self, model: nn.Module, processor, **options) -> None:
        self.model: Any = model  # a transformers model: its submodules and config differ per family
        self.processor = processor
        family = self.family_name()
        declared = {opt.name: opt for opt in self.options if opt.applies_to == "adapter"}
        unknown = sorted(set(options) - set(declared))
        if unknown:
            raise ConfigError(f"{family} adapters take no option {', '.join(map(repr, unknown))}; "
                              f"their options: {', '.join(declared) or 'none'}")
        for name, option in declared.items():
            value = option.check(options.get(name), family)
            setattr(self, name, option.default if value is None else value)
        warm_up()  # the template renderer's process starts while the model loads

    @classmethod
    def family_name(cls) -> str:
        """How messages name the family: its model types ("idefics3"), else the class name."""
        return "/".join(cls.model_types) or cls.__name__

    # -- decoder -----------------------------------------------------------------
    def language_model(self) -> nn.Module:
        """The decoder stack (has ``.layers`` and ``.config``): where transformers 5 puts it for most families."""
        return self.model.model.language_model

    def decoder_layers(self) -> nn.ModuleList:
        return cast(nn.ModuleList, self.language_model().layers)  # nn.Module types its children loosely

    def decoder_config(self):
        """The config object the decoder's attention reads ``_attn_implementation`` from.

        That is the ``config`` of the attention modules themselves (the module with a
        ``layer_idx`` inside each decoder layer), which the diagnostic pass switches to its
        capturing attention; the decoder stack's own ``config`` is the fallback.
        """
        found = attention_config(self.decoder_layers())
        return found if found is not None else self.language_model().config

    def default_hook_layers(self, depth: int) -> tuple[int, ...]:
        """The paper's hook range for this family (see ``config.paper_range`` for shallow decoders), or
        ``hook_fraction`` of the depth."""
        if self.hook_fraction is not None:
            return fraction_range(self.hook_fraction, depth)
        return paper_range(*self.paper_hook_layers, depth)

    # -- plan --------------------------------------------------------------------
    def source_budgets(self, grids: Sequence[VisualGrid], maps: Sequence[np.ndarray], cfg: SCRConfig) -> list[int]:
        """Sources each grid of one prompt may take (``grids`` and ``maps`` in sequence order).

        Default: every grid is an image with its own budget of ``cfg.k``. Families that cut one
        image into several grids (tiles) split ``k`` among them instead (``shares_k``).
        """
        if self.shares_k:
            return shared_budgets(grids, maps, cfg)
        return [cfg.k] * len(maps)

    # -- inputs ------------------------------------------------------------------
    def messages(self, prompt: str, media) -> list[dict]:
        """Chat messages for one prompt (``prompts.chat_messages``; the ONNX runtime formats the same):
        ``media`` a number of images, or the kinds in order ("image", "video")."""
        return chat_messages(prompt, media)

    def reserved_tokens(self) -> set[str]:
        """Token strings a user's prompt must not contain: the processor expands them into image
        slots (an ``<image>`` typed in the prompt would ask for an image that is not there)."""
        found = set()
        for name in ("image_token", "video_token", "start_image_token", "end_image_token", "boi_token", "eoi_token",
                     "vision_start_token", "vision_end_token"):
            value = getattr(self.processor, name, None)
            if isinstance(value, str) and value.strip():
                found.add(value)
        token_id = getattr(self.model.config, "image_token_id", None)
        tokenizer = getattr(self.processor, "tokenizer", None)
        if isinstance(token_id, int) and tokenizer is not None:
            token = tokenizer.convert_ids_to_tokens(token_id)
            if isinstance(token, str) and token.strip():
                found.add(token)
        return found

    def context_length(self) -> int | None:
        """Positions the decoder can attend over (``max_position_embeddings``), if the config says."""
        value = getattr(self.language_model().config, "max_position_embeddings", None)
        return int(value) if isinstance(value, int) and value > 0 else None

    def chat_template(self) -> str | None:
        """A template to use instead of the processor's own (``None``: the processor's)."""
        return None

    def processor_kwargs(self) -> dict:
        """Extra keyword arguments of every processor call (e.g. InternVL's tiling)."""
        return {}

    def format_prompt(self, prompt: str, num_images) -> str:
        """The chat template around ``num_images`` images (or the kinds in order, clips included) followed by
        ``prompt`` (``template_guard``: rendered in its own process, bounded in time and memory)."""
        return render_chat(self.processor, self.messages(prompt, num_images), self.chat_template())

    # -- video clips ------------------------------------------------------------------
    def video_processor(self):
        """The processor's video processor when the family reads clips natively, else ``None``."""
        return getattr(self.processor, "video_processor", None) if self.native_video else None

    def frames_per_slice(self) -> int:
        """Sampled frames the model merges into one temporal slice (1: every frame is a slice)."""
        return 1

    def sampling_defaults(self) -> SamplingDefaults:
        """How a clip is sampled when the user gives neither a count nor a rate: the video processor's own
        ``fps`` / ``num_frames`` / ``min_frames`` / ``max_frames``, else ``video_fps`` / ``video_frames``."""
        processor = self.video_processor()
        if processor is None:
            return SamplingDefaults(num_frames=self.video_frames)
        fps, count = getattr(processor, "fps", None), getattr(processor, "num_frames", None)
        if not fps and not count:
            fps, count = self.video_fps, None if self.video_fps else self.video_frames
        return SamplingDefaults(fps=fps, num_frames=count, min_frames=int(getattr(processor, "min_frames", 1) or 1),
                                max_frames=getattr(processor, "max_frames", None), per_slice=self.frames_per_slice())

    def prepare_media(self, media: Sequence[Sequence], prompts: Sequence[str]) -> dict:
        """Processor outputs for prompts of images and clips (``SampledClip``): the family's video processor
        where it has one (``native_video``), else each clip's frames as images of the prompt."""
        if not any(isinstance(item, SampledClip) for items in media for item in items):
            return self.prepare(media, prompts)
        if self.video_processor() is None:
            return self.prepare([[frame for _, _, frame in _expanded(items, native=False)] for items in media],
                                prompts)
        return self.prepare_clips(media, prompts)

    def prepare_clips(self, media: Sequence[Sequence], prompts: Sequence[str]) -> dict:
        """Images and clips through the processor's ``images`` and ``videos`` (frames already sampled: the
        processor samples nothing again and is told where each frame came from)."""
        from transformers.video_utils import VideoMetadata

        texts = [self.format_prompt(p, ["video" if isinstance(m, SampledClip) else "image" for m in items])
                 for p, items in zip(prompts, media)]
        clips = [m for items in media for m in items if isinstance(m, SampledClip)]
        images = self.clip_images(media)
        per_slice = self.frames_per_slice()
        # whole slices: the last frame repeated (Qwen2-VL's own rule)
        pads = [-len(c.frames) % per_slice for c in clips]
        kwargs = dict(videos=[list(c.frames) + [c.frames[-1]] * pad for c, pad in zip(clips, pads)],
                      do_sample_frames=False,
                      video_metadata=[VideoMetadata(total_num_frames=c.total_frames, fps=c.source_fps,
                                                    width=c.size[0], height=c.size[1],
                                                    frames_indices=list(c.indices) + [c.indices[-1]] * pad)
                                      for c, pad in zip(clips, pads)])
        if images is not None:
            kwargs["images"] = images
        kwargs.update(self.video_kwargs())
        return dict(self.processor(text=texts, return_tensors="pt", padding=True, padding_side="left",
                                   **kwargs, **self.processor_kwargs()))

    def clip_images(self, media: Sequence[Sequence]):
        """The still images of prompts that hold clips, as the processor's ``images`` (``None``: none)."""
        flat = [m for items in media for m in items if not isinstance(m, SampledClip)]
        return flat or None

    def video_kwargs(self) -> dict:
        """Extra keyword arguments of a processor call with clips."""
        return {}

    def prepare(self, images: Sequence[Sequence[Image.Image]], prompts: Sequence[str]) -> dict:
        """Processor outputs for a left-padded batch (one list of images per prompt).

        The padding side is passed per call: the user's tokenizer is never changed.
        """
        texts = [self.format_prompt(p, len(imgs)) for p, imgs in zip(prompts, images)]
        flat = [img for imgs in images for img in imgs]
        return dict(self.processor(images=flat, text=texts, return_tensors="pt", padding=True,
                                   padding_side="left", **self.processor_kwargs()))

    def locate(self, inputs: dict, images: Sequence[Sequence]) -> VisualLayout:
        """``layout(inputs)`` with each grid's ``region`` of its image filled in (``grid_regions``), and the
        grids of a clip's frames (families without a video processor) marked as the clip's slices."""
        layout = self.layout(inputs)
        native = self.video_processor() is not None
        grids: list[VisualGrid] = []
        for sample, prompt_images in enumerate(images):
            entries = _expanded(prompt_images, native)
            own = layout.grids_of(sample)
            by_image: dict[int, list[VisualGrid]] = {}
            for index, grid in enumerate(own):
                by_image.setdefault(index if grid.image is None else grid.image, []).append(grid)
            for image, members in by_image.items():
                item, frame, picture = entries[image] if image < len(entries) else (image, None, None)
                if isinstance(picture, SampledClip):
                    picture = None
                regions = self.grid_regions(members, picture)
                for g, r in zip(members, regions):
                    frames = g.frames if g.frames is not None or frame is None else (frame, frame + 1)
                    if (r, item, frames) != (g.region, g.image, g.frames):
                        g = replace(g, region=tuple(r), image=item, frames=frames)
                    grids.append(g)
        return replace(layout, grids=tuple(sorted(grids, key=lambda g: (g.sample, int(g.positions[0])))))

    def grid_regions(self, grids: Sequence[VisualGrid], image: Image.Image | None) -> list[tuple]:
        """The part of ``image`` each of its grids shows (default: the whole image each)."""
        return [g.region for g in grids]

    # -- vision features -------------------------------------------------------------
    def model_inputs(self, inputs: dict) -> dict:
        """The processor outputs the model's forward takes (default: all of them)."""
        return dict(inputs)

    def encode_vision(self, inputs: dict):
        """The vision features of ``inputs`` (``get_image_features(..., return_dict=True)``, the call every
        family's forward makes in transformers 5.0 and later), or ``None`` (no pixels, or no such method)."""
        encoder = getattr(self.model.base_model, "get_image_features", None)
        if encoder is None or self.pixel_key not in inputs:
            return None
        params = inspect.signature(encoder).parameters
        with torch.no_grad():
            return encoder(**{k: v for k, v in inputs.items() if k in params}, return_dict=True)

    def encode_video(self, inputs: dict):
        """The clips' features (``get_video_features``) when ``inputs`` hold clips, else ``None``; shared by
        both passes like the image features."""
        encoder = getattr(self.model.base_model, "get_video_features", None)
        if encoder is None or "pixel_values_videos" not in inputs:
            return None
        params = inspect.signature(encoder).parameters
        config = self.model.config
        known = {k: v for k, v in inputs.items() if k in params}
        for name in ("vision_feature_layer", "vision_feature_select_strategy"):  # LLaVA-OneVision's, from its config
            if name in params and name not in known and getattr(config, name, None) is not None:
                known[name] = getattr(config, name)
        with torch.no_grad():
            return encoder(**known, return_dict=True)

    @contextmanager
    def shared_vision(self, features, video=None):
        """Within: the model's forward takes ``features`` (from ``encode_vision``) instead of running its
        vision tower again, so the diagnostic and generation passes share one tower run.

        Why this way: ``get_image_features`` is what the forward calls in every supported transformers
        (``mm_encoder_outputs``, the newer way to pass features in, arrived after 5.0); it is shadowed on
        this model instance only, and restored on exit.
        """
        base = self.model.base_model
        shadowed = {name: value for name, value in (("get_image_features", features), ("get_video_features", video))
                    if value is not None}
        # same signature (``functools.wraps``): generate() reads it to pick the encoder's inputs
        for name, value in shadowed.items():
            setattr(base, name, functools.wraps(getattr(base, name))(lambda *args, _value=value, **kwargs: _value))
        try:
            yield
        finally:
            for name in shadowed:
                delattr(base, name)

    def final_norm(self) -> nn.Module:
        """The decoder's last norm before the LM head (DoLa applies it to early layers' states)."""
        return cast(nn.Module, self.language_model().norm)

    def layout_rule(self) -> dict | None:
        """Where the processor puts each image's tokens, as data (``scr_core.layout.layout_from_rule``): what
        ``layout`` follows and what the ONNX export writes into ``scr_config.json`` for the torch-free
        runtime. ``None``: a layout the rules cannot express (the family overrides ``layout``)."""
        return None

    def layout(self, inputs: dict) -> VisualLayout:
        """Locate every image grid in ``inputs['input_ids']`` (by ``layout_rule`` unless overridden)."""
        rule = self.layout_rule()
        if rule is None:
            raise NotImplementedError(f"{type(self).__name__} declares neither a layout rule nor a layout")
        return layout_from_rule(rule, inputs["input_ids"], inputs.get("image_grid_thw"), inputs.get("video_grid_thw"))


def _expanded(items: Sequence, native: bool) -> list[tuple[int, int | None, Any]]:
    """What the processor sees as separate pictures of one prompt, as (item, frame, picture): each image;
    each clip as one entry (``native``) or as its frames, one entry each."""
    entries: list[tuple[int, int | None, Any]] = []  # the picture: an image or a SampledClip
    for item, media in enumerate(items):
        if isinstance(media, SampledClip) and not native:
            entries.extend((item, frame, picture) for frame, picture in enumerate(media.frames))
        else:
            entries.append((item, None, media))
    return entries


def attention_config(layers: Sequence[nn.Module]):
    """The ``config`` of the first attention module (one with a ``layer_idx``) in ``layers[0]``."""
    if not len(layers):
        return None
    for module in layers[0].modules():
        config = getattr(module, "config", None)
        if getattr(module, "layer_idx", None) is not None and hasattr(config, "_attn_implementation"):
            return config
    return None
