"""Caption with an exported folder and onnxruntime alone — no torch (``import torch`` is never reached).

The same two passes as ``SCRPipeline`` (docs/method.md §1.7):

1. processor (PIL backend, numpy) → ``vision.onnx`` → ``embedding.onnx`` (image rows merged);
2. diagnostic pass: ``decoder_head.onnx`` alone with an empty plan (the early exit) → ``scr_scores``
   → ``select.onnx`` (``ai.scr`` ``SCRSelect``) → ``scr_map``;
3. prefill: head with the plan (``ai.scr`` nodes at the hook layers edit the visual tokens) → tail;
4. greedy decode: one token per step through head and tail, the KV cache kept where the session
   runs (IO binding: on the GPU with the CUDA execution provider, never copied back).

Results are ``scr_core``'s own types (``GenerationResult``, ``Diagnosis``, ``Timings``), so code
that handles the PyTorch pipeline's results handles these too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scr_core.extras import require

require("onnx", "the ONNX runtime (Load ONNX VLM, python -m export.run)", ("onnxruntime",))
import onnxruntime as ort  # noqa: E402  (either wheel: onnxruntime or onnxruntime-gpu)

from scr_core import (ConfigError, SCRError, Diagnosis, GenerationInterrupted, GenerationResult, InputError,
                      ModelLoadError, ReleasedError, SCRConfig, Timings, VisualLayout, entropy_nats, group_images,
                      plan_arrays)
from scr_core.layout import VisualGrid, layout_from_rule
from scr_core.plan import plan_from_map, visual_positions
from scr_core.prompts import pair_prompts
from scr_core.runner import RUNNER_DEFAULT, RunnerBase, config_arg, scr_arg
from scr_core.selection import check_k_fits, warn_if_short

from .folder_config import read_config

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
WHEELS = ("onnxruntime", "onnxruntime-gpu")  # both install the `onnxruntime` package: one must be installed alone


def _installed_wheels():
    import importlib.metadata

    for name in WHEELS:
        try:
            yield name, importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pass


def describe_onnxruntime() -> str:
    """One line: the wheel whose files provide the imported ``onnxruntime`` and the providers it has."""
    here = Path(ort.__file__).resolve()
    wheel = next((f"{name} {dist.version}" for name, dist in _installed_wheels()
                  if Path(dist.locate_file("onnxruntime/__init__.py")).resolve() == here),
                 f"onnxruntime {ort.__version__}")
    return f"{wheel}, providers {', '.join(ort.get_available_providers())}"


def _warn_if_both_wheels() -> None:
    places = [Path(dist.locate_file("")).resolve() for _, dist in _installed_wheels()]
    if len(places) == 2 and places[0] == places[1]:
        log.warning("both onnxruntime and onnxruntime-gpu are installed in %s; they overwrite each other's files: "
                    "pip uninstall -y onnxruntime onnxruntime-gpu, then install one of them", places[0])


def resolve_providers(provider: str, probe: Path | None = None) -> list[str]:
    """``auto``: CUDA when it loads on this machine, else CPU; ``cpu`` / ``cuda`` explicitly.

    onnxruntime-gpu lists CUDA as available even without a GPU or CUDA libraries, so ``auto`` and
    ``cuda`` open a session on ``probe`` (a tiny graph) and look at what it really got; the probe's
    failure log is silenced for ``auto``, where falling back to the CPU is the expected outcome.
    """
    if provider not in ("auto", *PROVIDERS):
        raise ConfigError(f"provider must be auto, cpu or cuda (got {provider!r})")
    if provider == "cpu":
        return PROVIDERS["cpu"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        if provider == "cuda":
            raise ConfigError("this onnxruntime has no CUDA execution provider; install onnxruntime-gpu "
                              "(and uninstall the CPU onnxruntime wheel: both provide the same package)")
        return PROVIDERS["cpu"]
    if probe is None:
        return PROVIDERS["cuda"]
    if provider == "auto":
        ort.set_default_logger_severity(4)
    try:
        got = ort.InferenceSession(str(probe), providers=PROVIDERS["cuda"]).get_providers()
    finally:
        ort.set_default_logger_severity(2)
    if "CUDAExecutionProvider" in got:
        return PROVIDERS["cuda"]
    if provider == "cuda":
        raise ConfigError("the CUDA execution provider did not load (no GPU, or CUDA/cuDNN libraries missing: "
                          "onnxruntime-gpu needs the CUDA and cuDNN versions its release notes name); "
                          "use --provider cpu")
    return PROVIDERS["cpu"]


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


def grid_inputs(grids_per_prompt: Sequence[Sequence[VisualGrid]], budgets: Sequence[Sequence[int]]):
    """``grid_shape[B, G, 2]`` and ``budgets[B, G]`` for ``SCRSelect`` (zero rows pad shorter prompts)."""
    width = max((len(g) for g in grids_per_prompt), default=0)
    shape = np.zeros((len(grids_per_prompt), width, 2), dtype=np.int64)
    budget = np.zeros((len(grids_per_prompt), width), dtype=np.int64)
    for b, (grids, ks) in enumerate(zip(grids_per_prompt, budgets)):
        for g, (grid, k) in enumerate(zip(grids, ks)):
            shape[b, g] = (grid.height, grid.width)
            budget[b, g] = k
    return shape, budget


class OnnxVLM(RunnerBase):
    """An exported folder loaded into onnxruntime sessions: a ``scr_core.runner.VLMRunner``, as
    ``SCRPipeline`` is (same calls, same ``scr`` vocabulary; λ and the layers are the export's).

    >>> vlm = OnnxVLM("scr-onnx")                 # python -m export.onnx --out scr-onnx
    >>> vlm.caption("photo.jpg")[0].text
    """

    prepared_type = OnnxBatch

    def __init__(self, folder: str | Path, provider: str = "auto", threads: int | None = None,
                 graphs: tuple[str, ...] = ("vision", "embedding", "head", "tail", "select")) -> None:
        """``graphs``: which sessions to open (all by default; ``export.measure`` opens fewer)."""
        self.folder = Path(folder)
        self.config, self.paths = read_config(self.folder)
        self.model_config, self.scr = self.config["model"], self.config["scr"]
        missing = [p for name, p in self.paths.items() if (name in graphs or name == "select") and not p.is_file()]
        if missing:
            raise ModelLoadError(f"{missing[0]} is missing; export the folder again")
        self.graphs = graphs
        options = ort.SessionOptions()
        # Sessions run one after another (vision, embedding, head, tail): an idle session's spinning
        # worker threads would take the cores from the running one (measured: 3x slower decode on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.session_options = options
        self._open(provider)
        self.processor = self._load_processor()
        decoder = self.model_config["decoder"]
        self.kv_shape = (decoder["num_key_value_heads"], decoder["head_size"])
        self.dtype = np.float16 if self.model_config["dtype"] == "float16" else np.float32
        self.head_layers = range(decoder["head"]["layers"][0], decoder["head"]["layers"][1] + 1)
        self.tail_layers = range(decoder["tail"]["layers"][0], decoder["tail"]["layers"][1] + 1)
        self.tail_has_scr = "scr_map" in decoder["tail"]["inputs"]
        self.eos = set(self.model_config["eos_token_id"])
        self.pad = int(self.model_config["pad_token_id"])
        self.short_answer_suffix = self.model_config["short_answer_suffix"]
        scr = self.scr
        #: what the export baked in, as the runner's default ``SCRConfig``
        self.settings = SCRConfig(k=scr["k"], lam=float(scr["lam"]), diag_layers=tuple(scr["diag_layers"]),
                                  hook_layers=tuple(scr["hook_layers"]), query=scr.get("query", "post_image"),
                                  exclude_border=bool(scr["exclude_border"]))

    def _open(self, provider: str) -> None:
        """One session per graph on ``provider`` (``auto``: CUDA when it loads, else CPU)."""
        try:
            providers = resolve_providers(provider, self.paths["select"])
        except SCRError:
            raise
        except Exception as err:  # noqa: BLE001  (onnxruntime's own exception types)
            raise ModelLoadError(f"onnxruntime cannot load {self.paths['select']}: {err}") from None
        sessions = {}
        for name, path in self.paths.items():
            if name not in self.graphs:
                continue
            try:
                sessions[name] = ort.InferenceSession(str(path), self.session_options, providers=providers)
            except Exception as err:  # noqa: BLE001  (onnxruntime's own exception types)
                raise ModelLoadError(f"onnxruntime cannot load {path}: {err}") from None
        self.sessions = sessions
        active = next(iter(sessions.values())).get_providers()
        self.device = "cuda" if "CUDAExecutionProvider" in active else "cpu"
        self.providers = active
        self.onnxruntime = describe_onnxruntime()
        _warn_if_both_wheels()
        log.info("onnxruntime: %s; sessions on %s", self.onnxruntime, ", ".join(active))

    # -- lifecycle (as SCRPipeline's) ------------------------------------------------------
    @property
    def depth(self) -> int:
        return int(self.model_config["decoder"]["num_hidden_layers"])

    def to(self, device: str) -> "OnnxVLM":
        """The sessions again on ``device`` (``cpu`` or ``cuda``; onnxruntime cannot move a session's
        weights, so they are opened anew); returns ``self``. Prepared batches must be prepared again."""
        kind = str(device).split(":")[0]
        if kind not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda (got {device!r})")
        self._live()
        if kind != self.device:
            self.sessions = {}
            self._open(kind)
        return self

    def release(self) -> None:
        """Close the sessions (their memory is onnxruntime's); the runner cannot be used afterwards."""
        self.sessions = {}

    @property
    def released(self) -> bool:
        return not self.sessions

    def _live(self) -> None:
        if not self.sessions:
            raise ReleasedError("this ONNX model was released; load it again with OnnxVLM(folder)")

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

    def _load_processor(self):
        from .preprocess import Preprocessor

        try:
            return Preprocessor(self.folder, self.model_config["processor"])
        except Exception as err:  # noqa: BLE001  (transformers raises many kinds)
            raise ModelLoadError(f"cannot load the processor files in {self.folder}: {err}") from err

    # -- public (scr_core.runner.VLMRunner) -----------------------------------------------
    def diagnose(self, images, prompt: str | Sequence[str] | None = None,
                 config: SCRConfig = RUNNER_DEFAULT) -> list[Diagnosis]:
        """The diagnostic pass alone: maps per grid, entropy and the plan, one ``Diagnosis`` per prompt."""
        batch = self._batch(images, prompt)
        cfg = self.resolve(config_arg(config, self.settings).with_(selection="attention"))
        diagnoses, _ = self._diagnose(batch, cfg.k)
        return diagnoses

    def prepare(self, images, prompt: str | Sequence[str] | None = None) -> OnnxBatch:
        """Processor and vision graph once; the result feeds ``diagnose`` and ``generate``."""
        self._live()
        start = time.perf_counter()
        per_prompt = group_images(images)
        self.check_images(per_prompt)
        prompts = pair_prompts(prompt, len(per_prompt), self.processor.reserved_tokens())
        texts = [self.processor.format(p, len(imgs)) for p, imgs in zip(prompts, per_prompt)]
        flat = [img for imgs in per_prompt for img in imgs]
        inputs = self.processor(flat, texts)
        input_ids = np.asarray(inputs["input_ids"], dtype=np.int64)
        mask = np.asarray(inputs["attention_mask"], dtype=np.int64)
        layout = layout_from_rule(self.model_config["layout"], input_ids, inputs.get("image_grid_thw"))
        vision = self.sessions["vision"]
        feeds = {}
        for spec in vision.get_inputs():
            value = np.asarray(inputs[spec.name])
            feeds[spec.name] = value.astype(np.float16 if "float16" in spec.type else np.float32) \
                if value.dtype.kind == "f" else value.astype(np.int64)
        output = vision.get_outputs()[0].name
        features = self._run("vision", feeds, [output])[output]
        if output == "image_token_ids":  # Chameleon: VQ codes as text tokens, written over the placeholders
            placeholders = input_ids == self.model_config["image_token_id"]
            input_ids = input_ids.copy()
            input_ids[placeholders] = features.numpy().reshape(-1)
            features = self._empty_features()
        if self.model_config["decoder"]["position_ids"] == "mrope":
            from .preprocess import mrope_positions

            positions, _ = mrope_positions(input_ids, mask, inputs["image_grid_thw"], self.model_config["image_token_id"],
                                           int(self.model_config["processor"]["vision_grid"]["merge_size"]))
        else:  # as generate builds them: cumsum of the mask − 1, padding at 0
            positions = np.where(mask == 0, 0, np.cumsum(mask, axis=1) - 1).astype(np.int64)
        return OnnxBatch(input_ids, mask, positions, features, layout, tuple(prompts),
                         (time.perf_counter() - start) * 1000, tuple(map(tuple, per_prompt)), self.device)

    def _batch(self, images, prompt) -> OnnxBatch:
        """``images`` as an ``OnnxBatch``, preparing it unless it already is one."""
        if not isinstance(images, OnnxBatch):
            return self.prepare(images, prompt)
        if prompt is not None:
            raise InputError("a prepared batch already holds its prompts and inputs; pass no prompt with it")
        self._live()
        if images.device != self.device:
            raise InputError(f"this batch was prepared on {images.device} but the model is on {self.device}; "
                             "prepare it again")
        return images

    def generate(self, images, prompt: str | Sequence[str] | None = None, scr=RUNNER_DEFAULT,
                 max_new_tokens: int = 64, *, min_new_tokens: int = 0, progress=None, should_stop=None, do_sample: bool = False,
                 **unsupported) -> list[GenerationResult]:
        """As ``SCRPipeline.generate`` (``scr``: see ``scr_core.runner``): ``progress(step, max_new_tokens)`` after every token (and once at
        the end), ``should_stop()`` checked after every token (``GenerationInterrupted`` with the partial
        results). ``min_new_tokens``: end-of-sequence is masked before that many tokens, as transformers'
        ``MinNewTokensLengthLogitsProcessor`` does (forced lengths for benchmarks). Greedy only: sampling
        and other generation options are refused."""
        if do_sample or unsupported:
            raise ConfigError("the ONNX runtime decodes greedily; sampling and other generation options "
                              f"({', '.join(['do_sample'] * bool(do_sample) + sorted(unsupported))}) are not supported")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be an integer >= 1 (got {max_new_tokens!r})")
        if isinstance(min_new_tokens, bool) or not isinstance(min_new_tokens, int) \
                or not 0 <= min_new_tokens <= max_new_tokens:
            raise ConfigError(f"min_new_tokens must be an integer from 0 to max_new_tokens={max_new_tokens} "
                              f"(got {min_new_tokens!r})")
        batch = self._batch(images, prompt)
        layout = batch.layout
        context = self.model_config.get("context_length")
        if context and layout.seq_len + max_new_tokens > context:
            raise InputError(f"the prompt takes {layout.seq_len} tokens (image included) and up to {max_new_tokens} "
                             f"new tokens are asked for, but the model's context is {context} positions")
        diagnoses: list[Diagnosis | None] = [None] * layout.batch_size
        diagnostic_ms = 0.0
        scr = scr_arg(scr, self.settings)
        if isinstance(scr, SCRConfig):
            diagnoses, diagnostic_ms = self._diagnose(batch, self.resolve(scr).k)
            plans = [d.plan for d in diagnoses]
        else:
            plans = scr
        if plans is not None:
            arrays = plan_arrays(plans, layout)
            if arrays.lam != float(self.scr["lam"]) or tuple(arrays.hook_layers) != tuple(self.scr["hook_layers"]):
                raise ConfigError(f"the plans use lam={arrays.lam}, hook layers {list(arrays.hook_layers)}, but λ and "
                                  f"the hook layers are baked into this export (lam={self.scr['lam']}, hook layers "
                                  f"{self.scr['hook_layers']}); export again with --lam / --hook-layers")
            positions, scr_map = arrays.visual_positions, arrays.scr_map
        else:
            positions = visual_positions([layout.grids_of(s) for s in range(layout.batch_size)])
            scr_map = np.full(positions.shape, -1, dtype=np.int64)
        if should_stop is not None and should_stop():
            raise GenerationInterrupted("stopped before generation started", [])
        watch = _Watch(max_new_tokens, progress, should_stop)
        tokens, steps = self._greedy(batch, positions, scr_map, max_new_tokens, watch, min_new_tokens)
        texts = self.processor.decode(tokens)
        decode = steps[1:]
        timings = Timings(vision_ms=batch.vision_ms, diagnostic_ms=diagnostic_ms, prefill_ms=steps[0],
                          decode_ms_per_token=sum(decode) / len(decode) if decode else 0.0,
                          new_tokens=int(tokens.shape[1]))
        results = [GenerationResult(texts[i].strip(), tuple(int(t) for t in tokens[i]), plans[i] if plans else None,
                                    diagnoses[i], timings) for i in range(layout.batch_size)]
        if watch.stopped:
            raise GenerationInterrupted(f"stopped after {watch.step} of {max_new_tokens} new tokens", results)
        if progress is not None:
            progress(max_new_tokens, max_new_tokens)
        return results

    # -- the passes ----------------------------------------------------------------------
    def _diagnose(self, batch: OnnxBatch, k: int) -> tuple[list[Diagnosis], float]:
        start = time.perf_counter()
        layout = batch.layout
        grids = [layout.grids_of(s) for s in range(layout.batch_size)]
        positions = visual_positions(grids)
        query = self._query_start(layout)
        embeds = self._embed(batch.input_ids, batch.features)
        head = self._run("head", {**self._step_inputs(embeds, batch.attention_mask, self._positions(batch), None,
                                                      self.head_layers),
                                  "visual_positions": positions, "scr_map": np.full_like(positions, -1),
                                  "query_start": query}, ["scr_scores"])
        scores_value = head["scr_scores"]
        scores = np.array(scores_value.numpy(), dtype=np.float32)
        for grids_of in grids:
            for grid in grids_of:
                check_k_fits(k, grid.height, grid.width, bool(self.scr["exclude_border"]))
        shape, budgets = grid_inputs(grids, [[k] * len(g) for g in grids])
        scr_map = self._run("select", {"scores": scores_value, "grid_shape": shape, "budgets": budgets},
                            ["scr_map"])["scr_map"].numpy().copy()
        diagnoses = []
        for sample, grids_of in enumerate(grids):
            plan = plan_from_map(scr_map[sample], scores[sample], grids_of, self.scr["lam"], self.scr["hook_layers"])
            maps, offset = [], 0
            for grid in grids_of:
                maps.append(scores[sample, offset:offset + grid.height * grid.width].reshape(grid.height, grid.width))
                offset += grid.height * grid.width
            for grid_plan in plan.grids:
                warn_if_short(grid_plan.num_sources, k, grid_plan.height, grid_plan.width, stacklevel=4)
            diagnoses.append(Diagnosis(tuple(maps), entropy_nats(np.concatenate([m.ravel() for m in maps])), plan,
                                       grids_of))
        return diagnoses, (time.perf_counter() - start) * 1000

    def _greedy(self, batch: OnnxBatch, positions: np.ndarray, scr_map: np.ndarray, max_new_tokens: int,
                watch: "_Watch | None" = None, min_new_tokens: int = 0):
        """Prefill with the plan, then greedy decode; returns (new tokens [B, n], milliseconds per forward)."""
        steps = []
        start = time.perf_counter()
        mask = batch.attention_mask
        position_ids = self._positions(batch)
        embeds = self._embed(batch.input_ids, batch.features)
        past = None
        no_features = self._empty_features()
        empty = np.zeros((mask.shape[0], 0), dtype=np.int64)
        generated = []
        self.last_step_logits = []  # next-token logits of every step of the last call (parity checks)
        unfinished = np.ones(mask.shape[0], dtype=bool)
        plan_inputs = {"visual_positions": positions, "scr_map": scr_map}
        for step in range(max_new_tokens):
            head_out = self._run("head", {**self._step_inputs(embeds, mask, position_ids, past, self.head_layers),
                                          **plan_inputs, "query_start": np.zeros(mask.shape[0], np.int64)},
                                 ["hidden_state", *self._present_names(self.head_layers)])
            tail_feeds = self._step_inputs(head_out["hidden_state"], mask, position_ids, past, self.tail_layers,
                                           first="hidden_state")
            if self.tail_has_scr:
                tail_feeds.update(plan_inputs)
            tail_out = self._run("tail", tail_feeds, ["logits", *self._present_names(self.tail_layers)])
            logits = np.array(tail_out["logits"].numpy()[:, -1, :])  # a copy: the buffer is reused
            self.last_step_logits.append(logits)
            if step < min_new_tokens and self.eos:
                logits = logits.copy()
                logits[:, sorted(self.eos)] = -np.inf
            token = np.argmax(logits, axis=-1).astype(np.int64)
            token = np.where(unfinished, token, self.pad)
            generated.append(token)
            unfinished &= ~np.isin(token, list(self.eos))
            steps.append((time.perf_counter() - start) * 1000)
            if watch is not None and watch.stop_after(step + 1):
                break
            if not unfinished.any() or step == max_new_tokens - 1:
                break
            start = time.perf_counter()
            past = {**head_out, **tail_out}
            mask = np.concatenate([mask, np.ones((mask.shape[0], 1), np.int64)], axis=1)
            position_ids = self._next_positions(position_ids)
            embeds = self._embed(token[:, None], no_features)
            plan_inputs = {"visual_positions": empty, "scr_map": empty}  # decode: nothing to edit
        return np.stack(generated, axis=1), steps

    # -- helpers -------------------------------------------------------------------------
    def _run(self, name: str, feeds: dict, outputs: list[str]) -> dict:
        """One session run with IO binding: inputs and outputs stay on the session's device."""
        self._live()
        session = self.sessions[name]
        binding = session.io_binding()
        alive = []  # a CPU OrtValue made from numpy borrows the array's memory: keep both until the run is done
        for key, value in feeds.items():
            if isinstance(value, np.ndarray):
                value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), self.device, 0)
                alive.append(value)
            binding.bind_ortvalue_input(key, value)
        for key in outputs:
            binding.bind_output(key, self.device)
        session.run_with_iobinding(binding)
        del alive
        return dict(zip(outputs, binding.get_outputs()))

    def _embed(self, input_ids: np.ndarray, features):
        return self._run("embedding", {"input_ids": input_ids, "image_features": features},
                         ["inputs_embeds"])["inputs_embeds"]

    def _empty_features(self):
        width = self.model_config["decoder"]["hidden_size"]
        return np.zeros((0, width), dtype=self.dtype)

    def _step_inputs(self, embeds, mask, position_ids, past, layers, first: str = "inputs_embeds") -> dict:
        feeds = {first: embeds, "attention_mask": mask, "position_ids": position_ids}
        batch = mask.shape[0]
        for i in layers:
            for kind in ("key", "value"):
                if past is None:
                    feeds[f"past_key_values.{i}.{kind}"] = np.zeros((batch, *self.kv_shape[:1], 0, self.kv_shape[1]),
                                                                    dtype=self.dtype)
                else:
                    feeds[f"past_key_values.{i}.{kind}"] = past[f"present.{i}.{kind}"]
        return feeds

    @staticmethod
    def _present_names(layers) -> list[str]:
        return [f"present.{i}.{kind}" for i in layers for kind in ("key", "value")]

    @staticmethod
    def _positions(batch: OnnxBatch) -> np.ndarray:
        return batch.position_ids

    @staticmethod
    def _next_positions(position_ids: np.ndarray) -> np.ndarray:
        """One past the last: the prompt ends in text, whose M-RoPE rows are equal (= text position + delta)."""
        return position_ids[..., -1:] + 1

    def _query_start(self, layout: VisualLayout) -> np.ndarray:
        if self.scr.get("query", "post_image") == "last":
            return np.full(layout.batch_size, layout.seq_len - 1, dtype=np.int64)
        starts = np.array([layout.text_query_start(s) for s in range(layout.batch_size)], dtype=np.int64)
        if (starts >= layout.seq_len).any():
            raise InputError("a prompt has no text after its image; SCR reads the attention of post-image text tokens")
        return starts


class _Watch:
    """Per-token progress and the caller's stop check (what ``SCRPipeline`` does with a StoppingCriteria)."""

    def __init__(self, total: int, progress, should_stop) -> None:
        self.total, self.progress, self.should_stop = total, progress, should_stop
        self.step, self.stopped = 0, False

    def stop_after(self, step: int) -> bool:
        self.step = step
        if self.progress is not None:
            self.progress(step, self.total)
        self.stopped = self.should_stop is not None and bool(self.should_stop())
        return self.stopped

