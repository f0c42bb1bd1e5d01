"""Caption with an exported folder and onnxruntime alone — no torch (``import torch`` is never reached).

The same two passes as ``SCRPipeline`` (docs/method.md §1.7), the runtime split as onnxruntime-genai
splits its own: ``providers`` (the wheel, CUDA or CPU), ``sessions`` (one per graph, IO binding),
``decoder`` (the diagnostic pass and the greedy loop) and this runner on top:

1. processor (PIL backend, numpy) → ``vision.onnx``;
2. diagnostic pass: ``decoder_head.onnx`` alone with an empty plan (the early exit) → ``scr_scores``
   → ``select.onnx`` (``ai.scr`` ``SCRSelect``) → ``scr_map`` → plans;
3. prefill with the plan (``ai.scr`` nodes at the hook layers edit the visual tokens), greedy decode.

Results are ``scr_core``'s own types (``GenerationResult``, ``Diagnosis``, ``Timings``), so code that
handles the PyTorch pipeline's results handles these too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scr_core import (ConfigError, Diagnosis, InputError, ModelLoadError, SCRConfig, VisualLayout, entropy_nats,
                      group_images, plan_arrays)
from scr_core.plan import plan_from_map, visual_positions
from scr_core.prompts import pair_prompts
from scr_core.runner import RUNNER_DEFAULT, ConfigArg, RunnerBase, TokenWatch, config_arg, scr_arg
from scr_core.selection import check_k_fits, warn_if_short
from scr_core.video import holds_clip

from .decoder import GreedyDecoder, check_lengths, grid_inputs
from .folder_config import FolderConfig
from .sessions import Sessions



@dataclass
class OnnxBatch:
    """What ``OnnxVLM.prepare`` returns: token ids, mask, position ids, the encoded images (on the
    session's device) and the layout; pass it to ``diagnose``/``generate`` in place of the images."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    position_ids: np.ndarray  # [B, S], or [3, B, S] for M-RoPE
    features: object  # OrtValue
    layout: VisualLayout
    prompts: tuple[str, ...]
    vision_ms: float
    images: tuple[tuple, ...] = ()  # the RGB images of each prompt (for heatmaps)
    device: str = "cpu"  # where ``features`` lie

    @property
    def batch_size(self) -> int:
        return self.layout.batch_size


class OnnxVLM(RunnerBase):
    """An exported folder loaded into onnxruntime sessions: a ``scr_core.runner.VLMRunner``, as
    ``SCRPipeline`` is (same calls, same ``scr`` vocabulary; λ and the layers are the export's).

    ``config`` is the folder's ``FolderConfig``, ``settings`` what the export baked in (the default
    ``SCRConfig``), ``sessions`` the graphs' sessions and ``decoder`` the greedy loop (its
    ``logits_hook`` sees each step's logits; ``export.measure`` puts a one-graph plain decoder there).

    >>> vlm = OnnxVLM("scr-onnx")                 # python -m export.onnx --out scr-onnx
    >>> vlm.caption("photo.jpg")[0].text
    """

    prepared_type = OnnxBatch

    def __init__(self, folder: str | Path, provider: str = "auto", threads: int | None = None,
                 graphs: tuple[str, ...] | None = None) -> None:
        """``graphs``: which sessions to open (all by default; ``export.measure`` opens fewer)."""
        self.folder = Path(folder)
        self.config = FolderConfig.from_json(self.folder)
        self.sessions = Sessions(self.config.paths, provider, threads, graphs)
        self.processor = self._load_processor()
        self.decoder = GreedyDecoder(self.sessions, self.config.model)
        self.settings: SCRConfig = self.config.scr
        self.short_answer_suffix = self.config.model.short_answer_suffix

    def _load_processor(self):
        from .preprocess import Preprocessor

        try:
            return Preprocessor(self.folder, self.config.model.processor)
        except Exception as err:  # noqa: BLE001  (transformers raises many kinds)
            raise ModelLoadError(f"cannot load the processor files in {self.folder}: {err}") from err

    # -- lifecycle (as SCRPipeline's) ------------------------------------------------------
    device = property(lambda self: self.sessions.device, doc="cpu or cuda: where the sessions run")
    providers = property(lambda self: self.sessions.providers, doc="the execution providers the sessions got")
    onnxruntime = property(lambda self: self.sessions.onnxruntime, doc="the onnxruntime wheel and its providers")
    released = property(lambda self: self.sessions.released)
    depth = property(lambda self: self.config.model.decoder.num_hidden_layers, doc="decoder layers")

    def to(self, device: str) -> OnnxVLM:
        """The sessions again on ``device`` (``cpu`` or ``cuda``; onnxruntime cannot move a session's
        weights, so they are opened anew); returns ``self``. Prepared batches must be prepared again."""
        self.sessions.to(device)
        return self

    def release(self) -> None:
        """Close the sessions (their memory is onnxruntime's); the runner cannot be used afterwards."""
        self.sessions.release()

    def resolve(self, cfg: SCRConfig) -> SCRConfig:
        """``cfg`` with the export's layers filled in; what the export baked in (λ, layers, query, border,
        attention selection) must match, or one ``ConfigError`` names what differs."""
        baked = self.settings
        resolved = cfg.with_(diag_layers=cfg.diag_layers or baked.diag_layers,
                             hook_layers=cfg.hook_layers or baked.hook_layers)
        names = ("lam", "diag_layers", "hook_layers", "query", "exclude_border", "selection")
        differs = [n for n in names if getattr(resolved, n) != getattr(baked, n)]
        if differs:
            raise ConfigError(f"this export has {', '.join(f'{n}={getattr(baked, n)!r}' for n in differs)} built in "
                              f"(asked: {', '.join(f'{n}={getattr(resolved, n)!r}' for n in differs)}); export again "
                              "with other settings (python -m export.onnx --lam / --hook-layers / ...)")
        return resolved

    @property
    def image_processor(self):
        """The export's image processor (``scr_core.processor_size`` reads its resize settings)."""
        return self.processor.image_processor

    # -- public (scr_core.runner.VLMRunner) -----------------------------------------------
    def prepare(self, images, prompt: str | Sequence[str] | None = None) -> OnnxBatch:
        """Processor and vision graph once; the result feeds ``diagnose`` and ``generate``."""
        self.sessions.check_open()
        if holds_clip(images):
            raise InputError("video clips are not exported: an ONNX folder reads images only; caption clips with "
                             "the PyTorch pipeline (SCRPipeline, python -m scr_core caption)")
        start = time.perf_counter()
        model, per_prompt = self.config.model, group_images(images)
        self.check_images(per_prompt)
        prompts = pair_prompts(prompt, len(per_prompt), self.processor.reserved_tokens())
        inputs = self.processor([img for imgs in per_prompt for img in imgs],
                                [self.processor.format(p, len(imgs)) for p, imgs in zip(prompts, per_prompt)])
        input_ids = np.asarray(inputs["input_ids"], dtype=np.int64)
        mask = np.asarray(inputs["attention_mask"], dtype=np.int64)
        layout = model.layout.locate(input_ids, inputs.get("image_grid_thw"))
        feeds = {spec.name: np.asarray(inputs[spec.name]) for spec in self.sessions["vision"].get_inputs()}
        feeds = {name: value.astype(model.export_dtype.numpy) if value.dtype.kind == "f" else value.astype(np.int64)
                 for name, value in feeds.items()}
        output = model.vision.outputs[0]
        features = self.sessions.run("vision", feeds, [output])[output]
        if output == "image_token_ids":  # Chameleon: VQ codes as text tokens, written over the placeholders
            input_ids = input_ids.copy()
            input_ids[input_ids == model.image_token_id] = features.numpy().reshape(-1)
            features = self.decoder.empty_features()
        if model.decoder.position_ids == "mrope":
            from .preprocess import mrope_positions

            grid = model.processor.vision_grid
            assert grid is not None  # the exporter records one for every mrope family
            positions, _ = mrope_positions(input_ids, mask, inputs["image_grid_thw"], model.image_token_id,
                                           grid.merge_size)
        else:  # as generate builds them: cumsum of the mask − 1, padding at 0
            positions = np.where(mask == 0, 0, np.cumsum(mask, axis=1) - 1).astype(np.int64)
        return OnnxBatch(input_ids, mask, positions, features, layout, tuple(prompts),
                         (time.perf_counter() - start) * 1000, tuple(map(tuple, per_prompt)), self.device)

    def diagnose(self, images, prompt: str | Sequence[str] | None = None,
                 config: ConfigArg = RUNNER_DEFAULT) -> list[Diagnosis]:
        """The diagnostic pass alone: maps per grid, entropy and the plan, one ``Diagnosis`` per prompt."""
        batch = self._batch(images, prompt)
        return self._diagnose(batch, self.resolve(config_arg(config, self.settings).with_(selection="attention")).k)[0]

    def generate(self, images, prompt: str | Sequence[str] | None = None, scr=RUNNER_DEFAULT,
                 max_new_tokens: int = 64, *, min_new_tokens: int = 0, eos_token_id: int | Sequence[int] | None = None,
                 progress=None, should_stop=None, do_sample: bool = False, **unsupported):
        """As ``SCRPipeline.generate`` (``scr``: see ``scr_core.runner``): ``progress(step, max_new_tokens)``
        after every token (and once at the end), ``should_stop()`` checked after every token
        (``GenerationInterrupted`` with the partial results). ``min_new_tokens`` and ``eos_token_id`` (default:
        the export's) as in transformers' ``generate``. Greedy only: other generation options are refused."""
        if do_sample or unsupported:
            raise ConfigError("the ONNX runtime decodes greedily; sampling and other generation options "
                              f"({', '.join(['do_sample'] * bool(do_sample) + sorted(unsupported))}) are not supported")
        check_lengths(max_new_tokens, min_new_tokens)
        batch = self._batch(images, prompt)
        layout, context = batch.layout, self.config.model.context_length
        if context and layout.seq_len + max_new_tokens > context:
            raise InputError(f"the prompt takes {layout.seq_len} tokens (image included) and up to {max_new_tokens} "
                             f"new tokens are asked for, but the model's context is {context} positions")
        diagnoses: Sequence[Diagnosis | None] = [None] * layout.batch_size
        diagnostic_ms = 0.0
        scr = scr_arg(scr, self.settings)
        if isinstance(scr, SCRConfig):
            found, diagnostic_ms = self._diagnose(batch, self.resolve(scr).k)
            diagnoses, plans = found, [d.plan for d in found]
        else:
            plans = scr
        positions, scr_map = self._plan_inputs(plans, layout)
        watch = TokenWatch(max_new_tokens, progress, should_stop)
        watch.start()
        eos = None if eos_token_id is None else frozenset([eos_token_id] if isinstance(eos_token_id, int)
                                                          else eos_token_id)
        tokens, steps = self.decoder.generate(batch.input_ids, batch.features, batch.attention_mask, batch.position_ids,
                                              positions, scr_map, max_new_tokens, min_new_tokens=min_new_tokens,
                                              eos_token_ids=eos, watch=watch)
        return self._results(tokens, self.processor.decode(tokens), plans, diagnoses, batch.vision_ms, diagnostic_ms,
                             steps, watch)

    # -- the passes ----------------------------------------------------------------------
    def _batch(self, images, prompt) -> OnnxBatch:
        """``images`` as an ``OnnxBatch``, preparing it unless it already is one."""
        if not isinstance(images, OnnxBatch):
            return self.prepare(images, prompt)
        if prompt is not None:
            raise InputError("a prepared batch already holds its prompts and inputs; pass no prompt with it")
        self.sessions.check_open()
        if images.device != self.device:
            raise InputError(f"this batch was prepared on {images.device} but the model is on {self.device}; "
                             "prepare it again")
        return images

    def _diagnose(self, batch: OnnxBatch, k: int) -> tuple[list[Diagnosis], float]:
        start, layout, scr = time.perf_counter(), batch.layout, self.settings
        assert scr.hook_layers is not None  # an export's settings name their layers (FolderConfig)
        grids = [layout.grids_of(s) for s in range(layout.batch_size)]
        for grid in (g for grids_of in grids for g in grids_of):
            check_k_fits(k, grid.height, grid.width, scr.exclude_border)
        scores, scr_map = self.decoder.diagnose(batch.input_ids, batch.features, batch.attention_mask,
                                                batch.position_ids, visual_positions(grids), self._query_start(layout),
                                                *grid_inputs(grids, [[k] * len(g) for g in grids]))
        diagnoses = []
        for sample, grids_of in enumerate(grids):
            plan = plan_from_map(scr_map[sample], scores[sample], grids_of, scr.lam, scr.hook_layers)
            sizes = np.cumsum([0] + [g.height * g.width for g in grids_of])
            maps = [scores[sample, a:b].reshape(g.height, g.width) for g, a, b in zip(grids_of, sizes, sizes[1:])]
            for grid_plan in plan.grids:
                warn_if_short(grid_plan.num_sources, k, grid_plan.height, grid_plan.width, stacklevel=4)
            diagnoses.append(Diagnosis(tuple(maps), entropy_nats(np.concatenate([m.ravel() for m in maps])), plan,
                                       grids_of))
        return diagnoses, (time.perf_counter() - start) * 1000

    def _plan_inputs(self, plans, layout: VisualLayout) -> tuple[np.ndarray, np.ndarray]:
        """(``visual_positions``, ``scr_map``) for the graphs: the plans', or every visual token untouched."""
        if plans is None:
            positions = visual_positions([layout.grids_of(s) for s in range(layout.batch_size)])
            return positions, np.full(positions.shape, -1, dtype=np.int64)
        arrays, baked = plan_arrays(plans, layout), self.settings
        assert baked.hook_layers is not None  # an export's settings name their layers (FolderConfig)
        if arrays.lam != baked.lam or tuple(arrays.hook_layers) != baked.hook_layers:
            raise ConfigError(f"the plans use lam={arrays.lam}, hook layers {list(arrays.hook_layers)}, but λ and "
                              f"the hook layers are baked into this export (lam={baked.lam}, hook layers "
                              f"{list(baked.hook_layers)}); export again with --lam / --hook-layers")
        return arrays.visual_positions, arrays.scr_map

    def _query_start(self, layout: VisualLayout) -> np.ndarray:
        if self.settings.query == "last":
            return np.full(layout.batch_size, layout.seq_len - 1, dtype=np.int64)
        starts = np.array([layout.text_query_start(s) for s in range(layout.batch_size)], dtype=np.int64)
        if (starts >= layout.seq_len).any():
            raise InputError("a prompt has no text after its image; SCR reads the attention of post-image text tokens")
        return starts
