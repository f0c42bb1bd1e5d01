"""``SCRPipeline``: load a VLM, prepare inputs, diagnose, and generate with or without SCR.

One call does: processor -> vision encoder (once) -> diagnostic pass (early exit) ->
source selection -> generation with redistribution hooks. ``prepare`` exposes the first two
steps, so a diagnose step and a caption step on the same inputs share one vision-tower run
(the features reach both passes through ``Adapter.shared_vision``).
"""

from __future__ import annotations

from .versions import require_transformers

require_transformers()  # before anything below imports transformers: an older one is one line, not an ImportError

import gc
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from transformers import StoppingCriteria, StoppingCriteriaList

from .adapters import Adapter, adapter_class, adapter_for, split_options
from .config import SCRConfig, check_depth, check_lam, resolve_layers
from .diagnosis import attention_maps, plan_from_maps, run_until, uniform_plan
from .results import entropy_nats
from .errors import ConfigError, InputError, ModelLoadError, ReleasedError
from .video import Clip, SampledClip, group_media, read_clip
from .layout import VisualLayout
from .loading import REMOTE_CODE_HINT, LoadOptions, bitsandbytes_config, checkpoint_source, needs_remote_code
from .plan import RedistributionPlan, plan_arrays
from .prompts import pair_prompts
from .redistribution import BatchEdit, redistribution
from .selection import slice_budget
from .results import Diagnosis, GenerationResult
from .runner import RUNNER_DEFAULT, ConfigArg, Progress, RunnerBase, ScrArg, TokenWatch, config_arg, scr_arg

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class PreparedBatch:
    """Inputs ready for both passes: what ``SCRPipeline.prepare`` returns.

    inputs: model keyword arguments on the model's device (the processor's outputs, pixels included).
    vision: the vision tower's output for them (``Adapter.encode_vision``), which every pass reuses
        (``Adapter.shared_vision``); ``None`` where the model has no ``get_image_features``.
    layout: where every image grid sits in the (left-padded) sequences.
    images: the RGB images of each prompt (for heatmaps); prompts: the prompts as given.
    vision_ms: time the processor and the vision tower took (clips: their reading too).
    video: the clips' features (``Adapter.encode_video``), shared like ``vision``; ``None`` without clips.
    ``images`` holds a ``SampledClip`` where the prompt had a clip.
    Pass it to ``diagnose``, ``caption``, ``answer`` or ``generate`` in place of the images.
    """

    inputs: dict
    vision: object
    layout: VisualLayout
    images: tuple[tuple[Image.Image, ...], ...]
    prompts: tuple[str, ...]
    vision_ms: float
    video: object = None

    @property
    def batch_size(self) -> int:
        return self.layout.batch_size

    def identity(self, sample: int) -> int:
        """A 64-bit fingerprint of prompt ``sample``'s text and pixels (seeds Uniform-Smooth per prompt)."""
        digest = hashlib.blake2b(self.prompts[sample].encode(), digest_size=8)
        for item in self.images[sample]:
            for image in item.frames if isinstance(item, SampledClip) else (item,):
                digest.update(f"{image.width}x{image.height}".encode())
                digest.update(image.tobytes())
        return int.from_bytes(digest.digest(), "little")


class _WatchCriteria(StoppingCriteria):
    """The runners' ``TokenWatch`` as transformers' stopping criterion: told after each generated token,
    stops generation when the caller asks (within one token)."""

    def __init__(self, watch: TokenWatch) -> None:
        self.watch = watch

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        stop = torch.full((input_ids.shape[0],), self.watch.tick(), dtype=torch.bool, device=input_ids.device)
        return cast(torch.BoolTensor, stop)  # transformers annotates the legacy tensor type


class SCRPipeline(RunnerBase):
    """Spatial Credit Redistribution around a transformers VLM.

    >>> pipe = SCRPipeline.from_pretrained("path/to/llava-1.5-7b-hf", dtype="float16", device="cuda")
    >>> pipe.caption("photo.jpg")[0].text
    """

    prepared_type = PreparedBatch

    def __init__(self, model, processor, adapter: Adapter | None = None, **adapter_options) -> None:
        """``adapter``: an explicit adapter (e.g. ``GenericAdapter(model, processor, ...)``); by default the
        one registered for ``model.config.model_type``, built with its declared ``adapter_options``."""
        self.model = model.eval()
        self.processor = processor
        if adapter is not None and adapter_options:
            raise ConfigError("pass adapter options to the adapter you construct, not next to it")
        self.adapter = adapter or adapter_for(model, processor, **adapter_options)

    @property
    def image_processor(self):
        """The processor's image processor (``None`` for a processor without one)."""
        return getattr(self.processor, "image_processor", None)

    # -- loading and lifecycle -------------------------------------------------------
    @classmethod
    def from_pretrained(cls, source: str | Path, options: LoadOptions | None = None, *,
                        adapter: Callable[..., Adapter] | None = None, **option_fields) -> SCRPipeline:
        """Load a checkpoint folder (or hub id) saved with ``save_pretrained``.

        Options are the fields of ``LoadOptions`` (``dtype``, ``device``, ``attn_implementation``,
        ``local_files_only``, ``processor_kwargs``, ``adapter_options``, ``trust_remote_code``), given
        as keywords or as one ``LoadOptions``; all are checked before any weight is read.
        adapter: a factory ``(model, processor) -> Adapter`` for models without a registered
        adapter, e.g. ``functools.partial(GenericAdapter, image_token_id=..., grid=(16, 16),
        layers_path="model.language_model.layers")``.
        """
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        if options is not None and option_fields:
            raise ConfigError("pass either a LoadOptions or its fields as keywords, not both")
        options = options or LoadOptions(**option_fields)
        if adapter is not None and options.adapter_options:
            raise ConfigError("adapter_options apply to the registered adapter; pass options to your adapter factory")
        source = checkpoint_source(source, options.offline)
        device = options.resolved_device()
        local_only = options.offline
        remote = {"trust_remote_code": options.trust_remote_code}  # False: refuse at once, never prompt
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local_only, **remote)
        except Exception as err:
            if needs_remote_code(err):
                raise ModelLoadError(f"cannot load {source}: {REMOTE_CODE_HINT}") from None
            raise ModelLoadError(f"cannot read the model config of {source}: {err}") from err
        adapter_kwargs: dict[str, Any] = {}
        processor_kwargs: dict[str, Any] = {}
        if adapter is None:
            adapter_kwargs, processor_kwargs = split_options(adapter_class(config.model_type),
                                                             options.adapter_options)
        family = adapter_class(config.model_type) if adapter is None else getattr(adapter, "func", adapter)
        if adapter is None:
            require_transformers(adapter_class(config.model_type).min_transformers,
                                 who=f"SCR's {config.model_type} support")
        unquantized = getattr(adapter, "keywords", {}).get("unquantized_modules") or \
            getattr(family, "unquantized_modules", None)  # a GenericAdapter partial names its own
        quantized = bitsandbytes_config(options, device, options.resolved_dtype(device), tuple(unquantized or ()))
        # bitsandbytes weights are placed while loading (a quantized model is not moved afterwards)
        placement = ({"quantization_config": quantized, "device_map": {"": device}}
                     if quantized is not None or getattr(config, "quantization_config", None) else {})
        try:
            model, info = cast(tuple[Any, dict], AutoModelForImageTextToText.from_pretrained(
                source, dtype=options.resolved_dtype(device), attn_implementation=options.attn_implementation,
                local_files_only=local_only, output_loading_info=True, **placement, **remote,
            ))  # with output_loading_info the model comes with its loading report
            processor = AutoProcessor.from_pretrained(source, local_files_only=local_only,
                                                      **{**remote, **processor_kwargs, **options.processor_kwargs})
        except Exception as err:
            if "attention implementation" in str(err) and options.attn_implementation != "eager":
                raise ModelLoadError(f"cannot load {source} with attn_implementation={options.attn_implementation!r}"
                                     " (its own modeling code does not support it); use 'eager' (CLI --attn eager)"
                                     ) from err
            raise ModelLoadError(f"cannot load {source}: {err}") from err
        missing = info.get("missing_keys") or []
        if missing:
            raise ModelLoadError(
                f"{source} is incomplete or corrupt: {len(missing)} weights missing (e.g. {sorted(missing)[:3]})"
            )
        if not placement:
            model = model.to(device)
        if adapter is not None:
            return cls(model, processor, adapter=adapter(model, processor))
        return cls(model, processor, **adapter_kwargs)

    @property
    def device(self) -> torch.device:
        return self._model().device

    def to(self, device: str | torch.device) -> SCRPipeline:
        """Move the model to ``device`` (e.g. to CPU to free a GPU for another model); returns ``self``.

        Prepared batches made before the move must be prepared again.
        """
        device = LoadOptions(device=str(device)).resolved_device() if isinstance(device, str) else device
        self._model().to(device)
        return self

    def release(self) -> None:
        """Drop the model and empty the CUDA cache; the pipeline cannot be used afterwards.

        Memory is only returned if no other reference to the model is held elsewhere.
        """
        cuda = self.model is not None and self.model.device.type == "cuda"
        self.model = None
        self.adapter = None  # type: ignore[assignment]  # released: every entry point checks _model() first
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    @property
    def released(self) -> bool:
        return self.model is None

    def _model(self):
        if self.model is None:
            raise ReleasedError("this pipeline's model was released; load it again with SCRPipeline.from_pretrained")
        return self.model

    # -- public API --------------------------------------------------------------
    @property
    def depth(self) -> int:
        self._model()
        return len(self.adapter.decoder_layers())

    def resolve(self, cfg: SCRConfig) -> SCRConfig:
        """``cfg`` with the paper's default layer ranges filled in for this model."""
        return resolve_layers(cfg, self.depth, self.adapter.default_hook_layers(self.depth))

    @property
    def short_answer_suffix(self) -> str:  # type: ignore[override]  # RunnerBase's attribute, read from the adapter
        return self.adapter.short_answer_suffix

    def read_clip(self, clip, frames: int | None = None, fps: float | None = None,
                  max_pixels: int | None = None) -> SampledClip:
        """``clip`` (a video path or stream, frames as a list or array, or a ``Clip``) sampled as this family
        samples: ``frames`` / ``fps`` when given, else its video processor's defaults (docs/method.md "Video
        clips"). max_pixels: the sampled frames' bound (``video.read_clip``), checked before decoding."""
        self._model()
        if frames is not None or fps is not None:
            source = clip.source if isinstance(clip, Clip) else clip
            clip = Clip(source, frames=frames, fps=fps, source_fps=getattr(clip, "source_fps", None))
        return read_clip(clip, self.adapter.sampling_defaults(), max_pixels)

    def prepare(self, images, prompt: str | Sequence[str] | None = None, *,
                transform_inputs: Callable[[dict], dict] | None = None) -> PreparedBatch:
        """Run the processor and the vision tower once; the result feeds ``diagnose`` and ``generate``.

        images: an image (path, PIL image or array), a list (one image per prompt) or a list of
        lists (several images per prompt); a video clip (``Clip``, a video file's path, a T x H x W x C
        array, or ``read_clip``'s result) may stand wherever an image does; prompt: one for all or one per prompt
        (default: the caption instruction). transform_inputs: applied to the processor outputs
        before the vision tower (decoding baselines such as VCD that extend the batch).
        """
        model = self._model()
        start = time.perf_counter()
        per_prompt = group_media(images, self.adapter.sampling_defaults())
        self.check_images(per_prompt)
        prompts = pair_prompts(prompt, len(per_prompt), self.adapter.reserved_tokens())
        inputs = self.adapter.prepare_media(per_prompt, prompts)
        layout = self.adapter.locate(inputs, per_prompt)
        self._check_length(layout.seq_len, 0)
        inputs = {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.is_floating_point():
                inputs[key] = value.to(model.dtype)
        if transform_inputs is not None:
            inputs = transform_inputs(inputs)
        inputs = self.adapter.model_inputs(inputs)
        vision, video = self.adapter.encode_vision(inputs), self.adapter.encode_video(inputs)
        return PreparedBatch(inputs, vision, layout, tuple(tuple(g) for g in per_prompt),
                             tuple(prompts), (time.perf_counter() - start) * 1000, video)

    def diagnose(self, images, prompt: str | Sequence[str] | None = None,
                 config: ConfigArg = RUNNER_DEFAULT) -> list[Diagnosis]:
        """Pass 1 only: attention maps, entropy and the plan, one ``Diagnosis`` per prompt."""
        batch = self._batch(images, prompt)
        config = config_arg(config, SCRConfig())
        diagnoses, _ = self._diagnose(batch, self.resolve(config.with_(selection="attention")))
        return diagnoses

    def early_exit(self, images, prompt: str | Sequence[str] | None = None, last_layer: int | None = None) -> float:
        """Milliseconds of one forward through decoder layers 0..``last_layer`` with nothing captured.

        The floor of the diagnostic pass (default ``last_layer``: the last default diagnostic
        layer): benchmarks add it to a vanilla run to get the two-pass limit SCR is held to.
        """
        batch = self._batch(images, prompt)
        depth = self.depth
        if last_layer is None:
            diag_layers = self.resolve(SCRConfig()).diag_layers
            assert diag_layers is not None  # resolve fills the layer ranges in
            last_layer = max(diag_layers)
        if isinstance(last_layer, bool) or not isinstance(last_layer, int) or not 0 <= last_layer < depth:
            raise ConfigError(f"last_layer must be a decoder layer index 0..{depth - 1} (got {last_layer!r})")
        _synchronize(self.device)
        start = time.perf_counter()
        with self.adapter.shared_vision(batch.vision, batch.video):
            run_until(self._model(), self.adapter.decoder_layers(), last_layer, batch.inputs)
        _synchronize(self.device)
        return (time.perf_counter() - start) * 1000

    def generate(self, images, prompt: str | Sequence[str] | None = None, scr: ScrArg = RUNNER_DEFAULT,
                 max_new_tokens: int = 64, *, diagnose: bool = False, remove_sources: bool = False,
                 transform_inputs: Callable[[dict], dict] | None = None,
                 progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                 **generate_kwargs) -> list[GenerationResult]:
        """Greedy generation for a batch (one result per prompt).

        images: images with ``prompt`` (see ``prepare``; default prompt: the caption instruction),
        or a ``PreparedBatch`` (then no prompt).
        scr: an ``SCRConfig`` (diagnose, then generate with its plan), one ``RedistributionPlan``
        or one per prompt (from an earlier ``diagnose``, or ``RedistributionPlan.from_dict``), or
        ``None`` for the vanilla model.
        diagnose: with ``scr=None``, still run the diagnostic pass (for its entropy).
        remove_sources: zero the plan's sources in its hook layers instead of redistributing them
        (the removal ablation, ``redistribution.remove_sources``; λ and the neighbours are unused).
        progress: called as ``progress(step, max_new_tokens)`` after every new token, and with
        ``(max_new_tokens, max_new_tokens)`` at the end.
        should_stop: checked after every new token; when it returns true generation ends there
        and ``GenerationInterrupted`` is raised carrying the partial results (hooks removed).
        transform_inputs: see ``prepare``; only the first len(prompts) rows are returned.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be an integer >= 1 (got {max_new_tokens!r})")
        batch = self._batch(images, prompt, transform_inputs)
        layout = batch.layout
        diagnoses: Sequence[Diagnosis | None] = [None] * layout.batch_size
        diagnostic_ms = 0.0
        if scr is None and diagnose:
            diagnoses, diagnostic_ms = self._diagnose(batch, self.resolve(SCRConfig()))
        scr = scr_arg(scr, SCRConfig())
        plans: list[RedistributionPlan] | None
        if isinstance(scr, SCRConfig):
            cfg = self.resolve(scr)
            if cfg.selection == "attention":
                found, diagnostic_ms = self._diagnose(batch, cfg)
                diagnoses, plans = found, [d.plan for d in found]
            else:
                plans = [uniform_plan(layout, s, cfg, self._uniform_budgets(layout, s, cfg), batch.identity(s))
                         for s in range(layout.batch_size)]
        else:
            plans = scr
        if plans is not None:
            arrays = plan_arrays(plans, layout)
            check_depth(f"the plan's hook_layers={list(arrays.hook_layers)}", arrays.hook_layers, self.depth)
            if not remove_sources:
                check_lam(arrays.lam, str(self.model.dtype))  # the hooks compute in the model's dtype
            edit, hook_layers = BatchEdit.from_arrays(arrays, self.model.device, remove_sources), arrays.hook_layers
        else:
            edit, hook_layers = None, ()
        watch = TokenWatch(max_new_tokens, progress, should_stop)
        stopping = StoppingCriteriaList([*generate_kwargs.pop("stopping_criteria", []), _WatchCriteria(watch)])
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, **generate_kwargs}
        self._check_length(layout.seq_len, max_new_tokens)
        watch.start()
        cached = kwargs.get("use_cache", getattr(self.model.generation_config, "use_cache", True)) is not False
        with self._timed_forwards() as steps, self.adapter.shared_vision(batch.vision, batch.video), \
                redistribution(self.adapter.decoder_layers(), hook_layers, edit, prefill_only=cached):
            with torch.no_grad():
                output = self.model.generate(**batch.inputs, **kwargs, stopping_criteria=stopping)
        new_tokens = output[:, layout.seq_len:]
        texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return self._results(new_tokens, texts, plans, diagnoses, batch.vision_ms, diagnostic_ms, steps, watch)

    # -- internals ---------------------------------------------------------------
    def _batch(self, images, prompt, transform_inputs: Callable[[dict], dict] | None = None) -> PreparedBatch:
        """``images`` as a ``PreparedBatch``, preparing it unless it already is one."""
        if not isinstance(images, PreparedBatch):
            return self.prepare(images, prompt, transform_inputs=transform_inputs)
        if prompt is not None or transform_inputs is not None:
            raise InputError("a PreparedBatch already holds its prompts and inputs; pass no prompt with it")
        ids = images.inputs.get("input_ids")
        if torch.is_tensor(ids) and ids.device != self._model().device:
            raise InputError(f"this batch was prepared on {ids.device} but the model is on {self.model.device}; "
                             "prepare it again")
        return images

    def _check_length(self, seq_len: int, max_new_tokens: int) -> None:
        """Refuse a prompt that does not fit the context (it would silently give an empty caption)."""
        context = self.adapter.context_length()
        if context is not None and seq_len + max_new_tokens > context:
            raise InputError(
                f"the prompt takes {seq_len} tokens (image included)"
                + (f" and up to {max_new_tokens} new tokens are asked for" if max_new_tokens else "")
                + f", but the model's context is {context} positions; shorten the prompt"
                + (" or lower max_new_tokens" if max_new_tokens else "")
            )

    def _diagnose(self, batch: PreparedBatch, cfg: SCRConfig) -> tuple[list[Diagnosis], float]:
        start = time.perf_counter()
        layout = batch.layout
        with self.adapter.shared_vision(batch.vision, batch.video):
            maps = attention_maps(self._model(), self.adapter.decoder_layers(), self.adapter.decoder_config(),
                                  batch.inputs, layout, cfg)
        diagnoses = [
            Diagnosis(m, entropy_nats(np.concatenate([np.ravel(x) for x in m])),
                      plan_from_maps(m, cfg, self._budgets(layout.grids_of(sample), m, cfg)),
                      layout.grids_of(sample))
            for sample, m in enumerate(maps)
        ]
        return diagnoses, (time.perf_counter() - start) * 1000

    def _uniform_budgets(self, layout: VisualLayout, sample: int, cfg: SCRConfig) -> list[int]:
        """Budgets for Uniform-Smooth: the adapter's split with a flat map on every grid."""
        grids = layout.grids_of(sample)
        flat = [np.ones((g.height, g.width)) for g in grids]
        return self._budgets(grids, flat, cfg)

    def _budgets(self, grids, maps, cfg: SCRConfig) -> list[int]:
        """Sources per grid: the adapter's split for the images, ``slice_budget`` for each slice of a clip."""
        budgets = [slice_budget(g.height, g.width, cfg) if g.is_slice else 0 for g in grids]
        still = [i for i, g in enumerate(grids) if not g.is_slice]
        if still:
            for i, budget in zip(still, self.adapter.source_budgets([grids[i] for i in still],
                                                                    [maps[i] for i in still], cfg)):
                budgets[i] = budget
        return budgets

    @contextmanager
    def _timed_forwards(self):
        """Milliseconds of each top-level forward (first = prefill, then one per decode step).

        On a GPU each forward is synchronised at both ends, or the times would be launch times.
        """
        steps: list[float] = []
        started: list[float] = []
        device = self.model.device

        def before(module, args, kwargs):
            _synchronize(device)
            started.append(time.perf_counter())

        def after(module, args, kwargs, output):
            _synchronize(device)
            steps.append((time.perf_counter() - started.pop()) * 1000)

        handles = [self.model.register_forward_pre_hook(before, with_kwargs=True),
                   self.model.register_forward_hook(after, with_kwargs=True)]
        try:
            yield steps
        finally:
            for handle in handles:
                handle.remove()


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock times cover it (no-op elsewhere)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

