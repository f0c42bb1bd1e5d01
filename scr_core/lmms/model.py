"""``SCRLmms``: lmms-eval's model interface over ``SCRPipeline`` (``--model scr``).

``--model_args`` (lmms-eval's ``key=value,…``): ``pretrained`` (a checkpoint folder or hub id; default
the bundled testbed), ``method`` (scr | vanilla | uniform | remove), ``k``, ``lam``, ``hook_layers``,
``diag_layers`` (ranges such as ``0-11``; several joined by ``+``, or quoted with commas), ``query``,
``seed``, ``dtype``, ``device`` (default: ``auto``), ``attn``, ``local_files_only``,
``trust_remote_code``; every other key is a family option of the model's adapter (docs/models.md),
which the adapter checks. lmms-eval records the model args in its results file; the plug-in logs the
settings as resolved for the model (default layer ranges filled in) when it loads.

``generate_until``: batches of ``batch_size`` prompts that share their generation settings, greedy
(SCR's protocol: a task's sampling settings are not used, and a warning says so once), cut at the
task's ``until`` strings. ``loglikelihood`` and multi-round generation are refused in one line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, cast

from lmms_eval.api.model import lmms

from ..config import SCRConfig, parse_layer_ranges
from ..errors import ConfigError, SCRError

log = logging.getLogger(__name__)

METHODS = ("scr", "vanilla", "uniform", "remove")
DEFAULT_MAX_NEW_TOKENS = 128  # when a task sets none (lmms-eval's own models use 1024 or more)


def _layers(value, name: str) -> tuple[int, ...] | None:
    """A layer list from model args: ``8`` (lmms-eval makes it an int), ``0-11``, ``0-3+8``, ``"0,2,4"``."""
    if value is None or value == "":
        return None
    text = str(value).replace("+", ",").replace(";", ",")
    try:
        return parse_layer_ranges(text)
    except ConfigError as err:
        raise ConfigError(f"{name}: {err}") from None


class SCRLmms(lmms):
    """SCR (or vanilla, Uniform-Smooth, removal) on any lmms-eval image task; see the module docstring."""

    is_simple = True

    def __init__(self, pretrained: str | None = None, method: str = "scr", k: int | None = None,
                 lam: float | None = None, hook_layers=None, diag_layers=None, query: str | None = None,
                 seed: int = 0, dtype: str | None = None, device: str | None = None, attn: str = "sdpa",
                 batch_size=1, max_batch_size=None, local_files_only: bool = False,
                 trust_remote_code: bool = False, **family_options) -> None:
        super().__init__()
        from ..defaults import default_model
        from ..loading import LoadOptions
        from ..pipeline import SCRPipeline

        if method not in METHODS:
            raise ConfigError(f"method={method!r}: choose one of {', '.join(METHODS)}")
        try:
            self.batch_size_per_gpu = int(batch_size)
        except (TypeError, ValueError):
            raise ConfigError(f"batch_size={batch_size!r}: give a number of prompts (SCR has no 'auto')") from None
        if self.batch_size_per_gpu < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be at least 1")
        fields: dict[str, Any] = {name: value for name, value in (("k", k), ("lam", lam), ("query", query))
                                  if value is not None}
        self.method = method
        self.config = SCRConfig(**fields, hook_layers=_layers(hook_layers, "hook_layers"),
                                diag_layers=_layers(diag_layers, "diag_layers"), seed=int(seed),
                                selection="uniform" if method == "uniform" else "attention")
        source = pretrained if pretrained is not None else default_model()[0]
        options = LoadOptions(dtype=dtype, device=device or "auto", attn_implementation=attn,
                              local_files_only=bool(local_files_only), trust_remote_code=bool(trust_remote_code),
                              adapter_options=dict(family_options))
        self.pipe = SCRPipeline.from_pretrained(source, options)
        resolved = self.pipe.resolve(self.config)
        self.settings = {"method": method, "pretrained": str(source), "dtype": str(self.pipe.model.dtype),
                         "device": str(self.pipe.device), "batch_size": self.batch_size_per_gpu,
                         "family_options": dict(family_options),
                         **({} if method == "vanilla" else {"config": {k: list(v) if isinstance(v, tuple) else v
                                                                       for k, v in resolved.__dict__.items()}})}
        self._warned_sampling = False
        log.warning("SCR lmms-eval model: %s", json.dumps(self.settings))

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self):
        return self.pipe.device

    # -- what tasks call ---------------------------------------------------------------------
    def generate_until(self, requests) -> list[str]:
        """Answers in request order; requests with the same generation settings are batched."""
        from tqdm import tqdm

        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(index)
        answers: list[str | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="SCR responding")
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                texts = self._answer([requests[i].args for i in chunk])
                for i, text in zip(chunk, texts):
                    answers[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args[:2], text)
                bar.update(len(chunk))
        bar.close()
        return cast(list[str], answers)  # every request is in one group, so every slot is filled

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        raise SCRError("the scr model answers generation tasks (generate_until) only; likelihood-scored "
                       "(multiple-choice) tasks are not supported: use the task's generation variant")

    def generate_until_multi_round(self, requests) -> list[str]:
        raise SCRError("the scr model answers single-turn generation tasks only (multi-round tasks are not supported)")

    # -- internals --------------------------------------------------------------------------------
    def _answer(self, args: Sequence[tuple]) -> list[str]:
        contexts = [a[0] for a in args]
        gen_kwargs = dict(args[0][1])
        images = [self._visuals(a) for a in args]
        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        self._note_sampling(gen_kwargs)
        max_new_tokens = int(gen_kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
        if self.method == "vanilla":
            results = self.pipe.generate(images, contexts, scr=None, max_new_tokens=max_new_tokens)
        else:
            results = self.pipe.generate(images, contexts, scr=self.config, max_new_tokens=max_new_tokens,
                                         remove_sources=self.method == "remove")
        return [_cut(r.text, until) for r in results]

    def _visuals(self, request_args: tuple) -> list:
        _, _, doc_to_visual, doc_id, task, split = request_args
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        visuals = [v for v in (visuals if isinstance(visuals, (list, tuple)) else [visuals]) if v is not None]
        if not visuals:
            raise SCRError(f"{task} document {doc_id} has no image: the scr model answers image tasks")
        return visuals

    def _note_sampling(self, gen_kwargs: dict) -> None:
        sampled = float(gen_kwargs.get("temperature") or 0) > 0 or bool(gen_kwargs.get("do_sample")) or \
            int(gen_kwargs.get("num_beams") or 1) > 1
        if sampled and not self._warned_sampling:
            log.warning("the task asks for sampling or beam search; SCR decodes greedily (its protocol)")
            self._warned_sampling = True


def _cut(text: str, until: Sequence[str]) -> str:
    """``text`` up to the first of the task's stop strings."""
    for stop in until:
        if stop and stop in text:
            text = text.split(stop, 1)[0]
    return text
