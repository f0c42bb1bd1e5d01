"""The decoder graphs' two passes over ``Sessions``: the diagnostic pass (``decoder_head.onnx`` alone with
an empty plan, the early exit, then ``select.onnx``) and the greedy loop (prefill with the plan, then one
token per step through the parts, the KV cache kept where the sessions run).

The loop feeds each part what its recorded inputs name (the plan only to parts with hook layers,
``query_start`` only to the head), so a one-graph plain decoder runs through it too (``export.measure``).
Per-step logits go to the hooks of ``logits_hook`` and nowhere else: decode copies nothing it does not need.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from scr_core import ConfigError
from scr_core.layout import VisualGrid
from scr_core.runner import TokenWatch

from .folder_config import DecoderGraph, Model
from .sessions import Sessions

LogitsHook = Callable[[int, np.ndarray], None]
PLAN_INPUTS = ("visual_positions", "scr_map", "query_start")  # query_start: the head's alone


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


def check_lengths(max_new_tokens: int, min_new_tokens: int) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be an integer >= 1 (got {max_new_tokens!r})")
    if isinstance(min_new_tokens, bool) or not isinstance(min_new_tokens, int) \
            or not 0 <= min_new_tokens <= max_new_tokens:
        raise ConfigError(f"min_new_tokens must be an integer from 0 to max_new_tokens={max_new_tokens} "
                          f"(got {min_new_tokens!r})")


class GreedyDecoder:
    """``parts``: (session name, graph record) in the order the hidden state flows; default the export's
    head and tail."""

    def __init__(self, sessions: Sessions, model: Model,
                 parts: Sequence[tuple[str, DecoderGraph]] | None = None) -> None:
        decoder = model.decoder
        self.sessions = sessions
        self.parts = tuple(parts or (("head", decoder.head), ("tail", decoder.tail)))
        self.kv_shape = (decoder.num_key_value_heads, decoder.head_size)
        self.hidden_size = decoder.hidden_size
        self.dtype = model.export_dtype.numpy
        self.eos_token_ids = frozenset(model.eos_token_id)
        self.pad_token_id = model.pad_token_id
        self._logits_hooks: list[LogitsHook] = []
        # per part, once: what it returns first (the hidden state, or the logits at the end) and which plan
        # inputs it takes
        self._first_output = {name: "logits" if "logits" in part.outputs else "hidden_state"
                              for name, part in self.parts}
        self._plan_inputs = {name: [k for k in PLAN_INPUTS if k in part.inputs] for name, part in self.parts}

    # -- the public hook --------------------------------------------------------------------
    @contextmanager
    def logits_hook(self, hook: LogitsHook) -> Iterator[None]:
        """Within the block, ``hook(step, logits)`` sees each step's next-token logits ``[B, vocab]`` before
        the argmax (a view of onnxruntime's buffer: copy what you keep)."""
        self._logits_hooks.append(hook)
        try:
            yield
        finally:
            self._logits_hooks.remove(hook)

    @contextmanager
    def record_logits(self) -> Iterator[list[np.ndarray]]:
        """A list that collects a copy of every step's logits within the block (parity checks)."""
        steps: list[np.ndarray] = []
        with self.logits_hook(lambda step, logits: steps.append(np.array(logits))):
            yield steps

    # -- the passes --------------------------------------------------------------------------
    def embed(self, input_ids: np.ndarray, features):
        """``embedding.onnx``: token embeddings with the image rows ``features`` merged in."""
        return self.sessions.run("embedding", {"input_ids": input_ids, "image_features": features},
                                 ["inputs_embeds"])["inputs_embeds"]

    def empty_features(self) -> np.ndarray:
        """No image rows (decode steps, and VQ families whose images are tokens)."""
        return np.zeros((0, self.hidden_size), dtype=self.dtype)

    def diagnose(self, input_ids: np.ndarray, features, mask: np.ndarray, position_ids: np.ndarray,
                 visual_positions: np.ndarray, query_start: np.ndarray, grid_shape: np.ndarray, budgets: np.ndarray):
        """The diagnostic pass: (``scr_scores[B, V]`` float32, the plan ``scr_map[B, V]`` of ``SCRSelect``)."""
        name, head = self.parts[0]
        embeds = self.embed(input_ids, features)
        scores = self.sessions.run(name, {**self._step_inputs(head, embeds, mask, position_ids, None),
                                          "visual_positions": visual_positions,
                                          "scr_map": np.full_like(visual_positions, -1), "query_start": query_start},
                                   ["scr_scores"])["scr_scores"]
        scr_map = self.sessions.run("select", {"scores": scores, "grid_shape": grid_shape, "budgets": budgets},
                                    ["scr_map"])["scr_map"]
        return np.array(scores.numpy(), dtype=np.float32), scr_map.numpy().copy()

    def generate(self, input_ids: np.ndarray, features, mask: np.ndarray, position_ids: np.ndarray,
                 visual_positions: np.ndarray, scr_map: np.ndarray, max_new_tokens: int, *, min_new_tokens: int = 0,
                 eos_token_ids: frozenset[int] | None = None, watch: TokenWatch | None = None):
        """Prefill with the plan, then greedy decode: (new tokens ``[B, n]``, milliseconds per forward).

        ``min_new_tokens``: end-of-sequence is masked before that many tokens (transformers'
        ``MinNewTokensLengthLogitsProcessor``); ``eos_token_ids``: default the export's; ``watch``: told
        after every token, ends the loop when it says stop."""
        check_lengths(max_new_tokens, min_new_tokens)
        eos = sorted(self.eos_token_ids if eos_token_ids is None else eos_token_ids)
        batch = mask.shape[0]
        no_features, empty = self.empty_features(), np.zeros((batch, 0), dtype=np.int64)
        plan = {"visual_positions": visual_positions, "scr_map": scr_map,
                "query_start": np.zeros(batch, np.int64)}
        steps, generated, past = [], [], None
        unfinished = np.ones(batch, dtype=bool)
        start = time.perf_counter()
        embeds = self.embed(input_ids, features)
        for step in range(max_new_tokens):
            hidden, present = embeds, {}
            for name, part in self.parts:
                feeds = self._step_inputs(part, hidden, mask, position_ids, past)
                feeds.update((key, plan[key]) for key in self._plan_inputs[name])
                out = self.sessions.run(name, feeds, [self._first_output[name], *part.present_names])
                hidden = out.pop(self._first_output[name])
                present.update(out)
            logits = hidden.numpy()[:, -1, :]
            for hook in self._logits_hooks:
                hook(step, logits)
            if step < min_new_tokens and eos:
                logits = logits.copy()
                logits[:, eos] = -np.inf
            token = np.where(unfinished, np.argmax(logits, axis=-1), self.pad_token_id).astype(np.int64)
            generated.append(token)
            unfinished &= ~np.isin(token, eos)
            steps.append((time.perf_counter() - start) * 1000)
            if (watch is not None and watch.tick()) or not unfinished.any() or step == max_new_tokens - 1:
                break
            start = time.perf_counter()
            past = present
            mask = np.concatenate([mask, np.ones((batch, 1), np.int64)], axis=1)
            position_ids = position_ids[..., -1:] + 1  # the prompt ends in text: M-RoPE's rows are equal there
            embeds = self.embed(token[:, None], no_features)
            plan = {**plan, "visual_positions": empty, "scr_map": empty}  # decode: nothing to edit
        return np.stack(generated, axis=1), steps

    def _step_inputs(self, part: DecoderGraph, hidden, mask, position_ids, past: dict | None) -> dict:
        """The part's first input (embeddings or the hidden state), mask, positions and its KV cache."""
        first = "inputs_embeds" if "inputs_embeds" in part.inputs else "hidden_state"
        feeds = {first: hidden, "attention_mask": mask, "position_ids": position_ids}
        for past_name, present_name in zip(part.past_names, part.present_names):
            feeds[past_name] = past[present_name] if past is not None else \
                np.zeros((mask.shape[0], self.kv_shape[0], 0, self.kv_shape[1]), dtype=self.dtype)
        return feeds
