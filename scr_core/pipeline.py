"""``SCRPipeline``: load a VLM, diagnose, and generate with or without SCR.

One call does: processor -> vision encoder (once) -> diagnostic pass (early exit) ->
source selection -> generation with redistribution hooks. The vision features computed
once are handed to both passes through transformers' ``mm_encoder_outputs``.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .adapters import ADAPTERS, Adapter, adapter_for, unsupported_message
from .config import SCRConfig, resolve_layers
from .diagnosis import Diagnosis, attention_maps, entropy_nats, plan_from_maps, uniform_plan
from .errors import ConfigError, InputError, ModelLoadError, UnsupportedModelError
from .images import load_image
from .layout import VisualLayout
from .prompts import CAPTION_PROMPT, SHORT_ANSWER_PROMPT
from .redistribution import BatchEdit, redistribution
from .selection import RedistributionPlan

log = logging.getLogger(__name__)

ANSWER_SUFFIX = " " + SHORT_ANSWER_PROMPT

ScrArg = "SCRConfig | RedistributionPlan | Sequence[RedistributionPlan] | None"


@dataclass(frozen=True)
class Timings:
    """Wall-clock milliseconds of one batch (shared by its results)."""

    vision_ms: float
    diagnostic_ms: float
    prefill_ms: float
    decode_ms_per_token: float
    new_tokens: int

    def to_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class GenerationResult:
    """Output for one prompt."""

    text: str
    token_ids: tuple[int, ...]
    plan: RedistributionPlan | None
    diagnosis: Diagnosis | None
    timings: Timings

    @property
    def yes_no(self) -> str:
        """"yes" / "no" by POPE's official rule (first sentence; "no" or "not" means no)."""
        from .eval.parsing import parse_yes_no

        return parse_yes_no(self.text)


@dataclass(frozen=True)
class _Batch:
    model_kwargs: dict  # ready for model(**kw) and model.generate(**kw): vision already encoded
    layout: VisualLayout
    vision_ms: float


class SCRPipeline:
    """Spatial Credit Redistribution around a transformers VLM.

    >>> pipe = SCRPipeline.from_pretrained("path/to/llava-1.5-7b-hf", dtype="float16", device="cuda")
    >>> pipe.caption("photo.jpg")[0].text
    """

    def __init__(self, model, processor, adapter: Adapter | None = None, **adapter_options) -> None:
        """``adapter``: an explicit adapter (e.g. ``GenericAdapter(model, processor, ...)``); by default the
        one registered for ``model.config.model_type``, built with ``adapter_options`` (e.g. ``max_tiles``)."""
        self.model = model.eval()
        self.processor = processor
        if adapter is not None and adapter_options:
            raise ConfigError("pass adapter options to the adapter you construct, not next to it")
        self.adapter = adapter or adapter_for(model, processor, **adapter_options)

    # -- loading -----------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, source: str | Path, *, dtype: str | torch.dtype | None = None,
                        device: str | torch.device = "cpu", attn_implementation: str = "sdpa",
                        local_files_only: bool = False, processor_kwargs: dict | None = None,
                        adapter: "Callable[..., Adapter] | None" = None,
                        adapter_options: dict | None = None) -> "SCRPipeline":
        """Load a checkpoint folder (or hub id) saved with ``save_pretrained``.

        dtype: "auto" (the checkpoint's), "float32", "float16", "bfloat16" or a torch dtype;
        None means float32 on CPU and "auto" elsewhere.
        processor_kwargs: passed to ``AutoProcessor.from_pretrained`` (e.g. ``min_pixels`` /
        ``max_pixels`` for Qwen2-VL).
        adapter: a factory ``(model, processor) -> Adapter`` for models without a registered
        adapter, e.g. ``functools.partial(GenericAdapter, image_token_id=..., grid=(16, 16),
        layers_path="model.language_model.layers")``.
        adapter_options: keyword options of the registered adapter (e.g. ``{"max_tiles": 6}``
        for InternVL).
        """
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        if adapter is not None and adapter_options:
            raise ConfigError("adapter_options apply to the registered adapter; pass options to your adapter factory")
        source = str(source)
        path = Path(source).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise ModelLoadError(f"{path} has no config.json: not a transformers checkpoint folder")
            source = str(path)
        elif source.startswith((".", "/", "~")) or source.count("/") > 1:
            raise ModelLoadError(f"model folder not found: {path}")
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
        except Exception as err:
            raise ModelLoadError(f"cannot read the model config of {source}: {err}") from err
        if adapter is None and config.model_type not in ADAPTERS:
            raise UnsupportedModelError(f"{source}: {unsupported_message(config.model_type)}")
        if dtype is None:
            dtype = torch.float32 if str(device) == "cpu" else "auto"
        elif isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype, None)
            if not isinstance(dtype, torch.dtype):
                raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
        try:
            model, info = AutoModelForImageTextToText.from_pretrained(
                source, dtype=dtype, attn_implementation=attn_implementation,
                local_files_only=local_files_only, output_loading_info=True,
            )
            processor = AutoProcessor.from_pretrained(source, local_files_only=local_files_only,
                                                      **(processor_kwargs or {}))
        except Exception as err:
            raise ModelLoadError(f"cannot load {source}: {err}") from err
        missing = info.get("missing_keys") or []
        if missing:
            raise ModelLoadError(
                f"{source} is incomplete or corrupt: {len(missing)} weights missing (e.g. {sorted(missing)[:3]})"
            )
        model = model.to(device)
        if adapter is not None:
            return cls(model, processor, adapter=adapter(model, processor))
        return cls(model, processor, **(adapter_options or {}))

    # -- public API --------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.adapter.decoder_layers())

    def resolve(self, cfg: SCRConfig) -> SCRConfig:
        """``cfg`` with the paper's default layer ranges filled in for this model."""
        return resolve_layers(cfg, self.depth, self.adapter.default_hook_layers(self.depth))

    def diagnose(self, images, prompt: str | Sequence[str] = CAPTION_PROMPT,
                 config: SCRConfig = SCRConfig()) -> list[Diagnosis]:
        """Pass 1 only: attention maps, entropy and the plan, one ``Diagnosis`` per prompt."""
        batch = self._prepare(images, prompt)
        diagnoses, _ = self._diagnose(batch, self.resolve(config.with_(selection="attention")))
        return diagnoses

    def caption(self, images, prompt: str | Sequence[str] = CAPTION_PROMPT,
                scr: ScrArg = SCRConfig(), max_new_tokens: int = 64, **generate_kwargs) -> list[GenerationResult]:
        """Greedy captions; ``scr=None`` for the vanilla model."""
        return self.generate(images, prompt, scr=scr, max_new_tokens=max_new_tokens, **generate_kwargs)

    def answer(self, images, question: str | Sequence[str], scr: ScrArg = SCRConfig(),
               max_new_tokens: int = 8, short_answer: bool = True, **generate_kwargs) -> list[GenerationResult]:
        """Yes/no or short answers (LLaVA's short-answer instruction appended when ``short_answer``)."""
        questions = [question] if isinstance(question, str) else list(question)
        if short_answer:
            questions = [q.rstrip() + ANSWER_SUFFIX if q.strip() else q for q in questions]
        return self.generate(images, questions if len(questions) > 1 else questions[0], scr=scr,
                             max_new_tokens=max_new_tokens, **generate_kwargs)

    def generate(self, images, prompt: str | Sequence[str], scr: ScrArg = SCRConfig(),
                 max_new_tokens: int = 64, *, diagnose: bool = False,
                 transform_inputs: Callable[[dict], dict] | None = None,
                 **generate_kwargs) -> list[GenerationResult]:
        """Greedy generation for a batch (one result per prompt).

        diagnose: with ``scr=None``, still run the diagnostic pass (for its entropy) without
        editing anything. transform_inputs: applied to the processor outputs before the
        vision encoder (used by decoding baselines such as VCD that extend the batch; only the
        first len(prompts) rows are returned).
        """
        batch = self._prepare(images, prompt, transform_inputs)
        diagnoses: list[Diagnosis | None] = [None] * batch.layout.batch_size
        diagnostic_ms = 0.0
        if scr is None and diagnose:
            diagnoses, diagnostic_ms = self._diagnose(batch, self.resolve(SCRConfig()))
        if isinstance(scr, SCRConfig):
            cfg = self.resolve(scr)
            if cfg.selection == "attention":
                diagnoses, diagnostic_ms = self._diagnose(batch, cfg)
                plans = [d.plan for d in diagnoses]
            else:
                plans = [uniform_plan(batch.layout, s, cfg, self._uniform_budgets(batch.layout, s, cfg))
                         for s in range(batch.layout.batch_size)]
        elif isinstance(scr, RedistributionPlan):
            plans = [scr]
        elif scr is None:
            plans = None
        else:
            plans = list(scr)
        edit = BatchEdit.build(plans, batch.layout, self.model.device) if plans else None
        hook_layers = plans[0].hook_layers if plans else ()
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, **generate_kwargs}
        with self._timed_forwards() as steps, redistribution(self.adapter.decoder_layers(), hook_layers, edit):
            with torch.no_grad():
                output = self.model.generate(**batch.model_kwargs, **kwargs)
        new_tokens = output[:, batch.layout.seq_len:]
        texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        decode = steps[1:]
        timings = Timings(
            vision_ms=batch.vision_ms,
            diagnostic_ms=diagnostic_ms,
            prefill_ms=steps[0] if steps else 0.0,
            decode_ms_per_token=sum(decode) / len(decode) if decode else 0.0,
            new_tokens=int(new_tokens.shape[1]),
        )
        return [
            GenerationResult(texts[i].strip(), tuple(new_tokens[i].tolist()), plans[i] if plans else None,
                             diagnoses[i], timings)
            for i in range(batch.layout.batch_size)
        ]

    # -- internals ---------------------------------------------------------------
    def _diagnose(self, batch: _Batch, cfg: SCRConfig) -> tuple[list[Diagnosis], float]:
        start = time.perf_counter()
        maps = attention_maps(self.model, self.adapter.decoder_layers(), self.adapter.decoder_config(),
                              batch.model_kwargs, batch.layout, cfg)
        diagnoses = [
            Diagnosis(m, entropy_nats(np.concatenate([np.ravel(x) for x in m])),
                      plan_from_maps(m, cfg, self.adapter.source_budgets(batch.layout.grids_of(sample), m, cfg)))
            for sample, m in enumerate(maps)
        ]
        return diagnoses, (time.perf_counter() - start) * 1000

    def _uniform_budgets(self, layout: VisualLayout, sample: int, cfg: SCRConfig) -> list[int]:
        """Budgets for Uniform-Smooth: the adapter's split with a flat map on every grid."""
        grids = layout.grids_of(sample)
        flat = [np.ones((g.height, g.width)) for g in grids]
        return self.adapter.source_budgets(grids, flat, cfg)

    def _prepare(self, images, prompt, transform_inputs: Callable[[dict], dict] | None = None) -> _Batch:
        per_prompt = _group_images(images)
        prompts = [prompt] * len(per_prompt) if isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(per_prompt):
            raise InputError(f"got {len(prompts)} prompts for {len(per_prompt)} images")
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise InputError("the prompt is empty; pass a question or an instruction")
        inputs = self.adapter.prepare(per_prompt, prompts)
        layout = self.adapter.layout(inputs)
        device = self.model.device
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.is_floating_point():
                inputs[key] = value.to(self.model.dtype)
        if transform_inputs is not None:
            inputs = transform_inputs(inputs)
        start = time.perf_counter()
        model_kwargs = encode_vision_once(self.model, inputs)
        return _Batch(model_kwargs, layout, (time.perf_counter() - start) * 1000)

    @contextmanager
    def _timed_forwards(self):
        """Milliseconds of each top-level forward (first = prefill, then one per decode step)."""
        steps: list[float] = []
        started: list[float] = []

        def before(module, args, kwargs):
            started.append(time.perf_counter())

        def after(module, args, kwargs, output):
            steps.append((time.perf_counter() - started.pop()) * 1000)

        handles = [self.model.register_forward_pre_hook(before, with_kwargs=True),
                   self.model.register_forward_hook(after, with_kwargs=True)]
        try:
            yield steps
        finally:
            for handle in handles:
                handle.remove()


def _group_images(images) -> list[list[Image.Image]]:
    """One list of RGB images per prompt, from an image, a list of images or a list of lists."""
    if images is None:
        raise InputError("no image given")
    if not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise InputError("no image given")
    grouped = [list(item) if isinstance(item, (list, tuple)) else [item] for item in images]
    if any(not group for group in grouped):
        raise InputError("every prompt needs at least one image")
    return [[load_image(img) for img in group] for group in grouped]


def encode_vision_once(model, inputs: dict) -> dict:
    """Replace pixel inputs by the encoded vision features (``mm_encoder_outputs``).

    Both passes (diagnostic and generation) then reuse one vision-tower run. Models without
    ``mm_encoder_outputs`` support keep their pixel inputs (the tower then runs twice).
    """
    forward_params = inspect.signature(model.forward).parameters
    encoder = getattr(model.base_model, "get_image_features", None)
    if "mm_encoder_outputs" not in forward_params or encoder is None or "pixel_values" not in inputs:
        return dict(inputs)
    encoder_params = inspect.signature(encoder).parameters
    encoder_kwargs = {k: v for k, v in inputs.items() if k in encoder_params}
    with torch.no_grad():
        features = encoder(**encoder_kwargs, return_dict=True)
    # Keep what the forward still needs (e.g. image_grid_thw for M-RoPE); drop encoder-only inputs.
    kwargs = {k: v for k, v in inputs.items()
              if k != "pixel_values" and (k not in encoder_kwargs or k in forward_params)}
    kwargs["mm_encoder_outputs"] = {"image": features}
    return kwargs
