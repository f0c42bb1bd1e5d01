"""Pass 1: the diagnostic forward that picks the sources.

It runs the decoder only up to the attention of the last diagnostic layer (the capture raises
``CaptureComplete`` once that layer's rows are recorded; a forward hook on the layer ends the
pass too, for attention code the capture never sees), captures attention rows of the post-image text
queries against every key with the model's own attention kernel still doing the work
(``attention_capture``), and averages them over heads, layers and query rows. The result
per image grid is the spatial attention map A; its entropy (nats, after renormalising over
the visual tokens) is the paper's credit-concentration measure.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .attention_capture import AttentionCapture, CaptureComplete, capture_attention
from .config import SCRConfig
from .errors import InputError, SCRError
from .layout import VisualLayout
from .plan import GridPlan, RedistributionPlan
from .selection import select_sources, select_uniform


class _DiagnosticComplete(CaptureComplete):
    """Raised by the hook on the last diagnostic layer to skip the rest of the model."""


def _stop_after(layer: nn.Module):
    def hook(module, args, output):
        raise _DiagnosticComplete

    return layer.register_forward_hook(hook)


def run_until(model: nn.Module, layers: nn.ModuleList, last: int, model_kwargs: dict) -> None:
    """One forward of ``model`` that stops right after ``layers[last]`` has run (no cache, no output).

    The diagnostic pass is this forward with attention rows captured; on its own it is the
    floor of what the two-pass design can cost (what ``SCRPipeline.early_exit`` times).
    """
    handle = _stop_after(layers[last])
    try:
        with torch.no_grad():
            model(**model_kwargs, use_cache=False)
    except CaptureComplete:  # the layer hook's, or the capture's inside the last layer's attention
        pass
    finally:
        handle.remove()


def attention_maps(model: nn.Module, layers: nn.ModuleList, decoder_config, model_kwargs: dict,
                   layout: VisualLayout, cfg: SCRConfig) -> list[tuple[np.ndarray, ...]]:
    """Mean attention of text queries to each visual grid, per prompt, over ``cfg.diag_layers``.

    ``cfg`` must be resolved (explicit ``diag_layers``).
    """
    if cfg.query == "post_image":
        starts = [layout.text_query_start(s) for s in range(layout.batch_size)]
        for sample, start in enumerate(starts):
            if start >= layout.seq_len:
                raise InputError(
                    f"prompt {sample} has no text after its image; SCR reads the attention of post-image "
                    "text tokens, so put the image before the question (or use query='last')"
                )
    else:
        starts = [layout.seq_len - 1] * layout.batch_size
    assert cfg.diag_layers is not None, "resolve the config first"
    capture = AttentionCapture(frozenset(cfg.diag_layers), row_start=min(starts), stop_after_last=True)
    with capture_attention(decoder_config, capture):
        run_until(model, layers, max(cfg.diag_layers), model_kwargs)
    if capture.total is None:  # the model's own attention code never called the registry
        mean = own_attention_rows(model, model_kwargs, cfg.diag_layers, capture.row_start)
    else:
        mean = capture.mean()  # (B, rows, keys)
    result = []
    for sample, start in enumerate(starts):
        per_key = mean[sample, start - capture.row_start:].mean(dim=0).cpu().numpy()
        result.append(tuple(
            per_key[grid.positions].reshape(grid.height, grid.width) for grid in layout.grids_of(sample)
        ))
    return result


def own_attention_rows(model: nn.Module, model_kwargs: dict, diag_layers, row_start: int) -> torch.Tensor:
    """Fallback for models whose attention bypasses transformers' ``AttentionInterface`` (remote code):
    the model's own ``output_attentions``, head-averaged over ``diag_layers``, rows ``[row_start:]``.

    Slower than the capture: a full forward that materialises every layer's attention matrix.
    """
    warnings.warn("the diagnostic capture saw no attention call (the model runs its own attention code); "
                  "falling back to the model's output_attentions, which is slower (a full forward that keeps "
                  "every layer's attention matrix)", RuntimeWarning, stacklevel=3)
    with torch.no_grad():
        try:
            out = model(**model_kwargs, use_cache=False, output_attentions=True)
        except TypeError:
            out = model(**model_kwargs, output_attentions=True)
    attentions = getattr(out, "attentions", None)
    if not attentions or any(attentions[i] is None for i in diag_layers if i < len(attentions)) or \
            max(diag_layers) >= len(attentions):
        raise SCRError("no attention was captured and the model returns no attention probabilities for the "
                       "diagnostic layers (output_attentions); pass a RedistributionPlan or use selection='uniform'")
    rows = [attentions[i][:, :, row_start:, :].float().mean(dim=1) for i in diag_layers]
    return torch.stack(rows).mean(dim=0)


def _budgets(count: int, cfg: SCRConfig, budgets: Sequence[int] | None) -> list[int]:
    if budgets is None:
        return [cfg.k] * count
    budgets = [int(b) for b in budgets]
    if len(budgets) != count or any(b < 0 for b in budgets):
        raise InputError(f"need one non-negative source budget per image grid ({count}), got {budgets}")
    return budgets


def _with_budget(cfg: SCRConfig, budget: int) -> SCRConfig:
    return cfg if budget == cfg.k else cfg.with_(k=budget)


def _empty(height: int, width: int) -> GridPlan:
    return GridPlan(height, width, (), (), ())


def plan_from_maps(maps: Sequence[np.ndarray], cfg: SCRConfig,
                   budgets: Sequence[int] | None = None) -> RedistributionPlan:
    """SCR plan for one prompt from its attention maps (``cfg`` resolved).

    ``budgets[i]`` is the number of sources grid ``i`` may take (the adapter's
    ``source_budgets``: K per image, or K split over the tiles of one image); ``None``
    means ``cfg.k`` for every grid.
    """
    grids = []
    for amap, budget in zip(maps, _budgets(len(maps), cfg, budgets)):
        grids.append(select_sources(amap, _with_budget(cfg, budget)) if budget else _empty(*np.shape(amap)))
    assert cfg.hook_layers is not None, "resolve the config first"
    return RedistributionPlan(tuple(grids), cfg.lam, cfg.hook_layers)


def uniform_plan(layout: VisualLayout, sample: int, cfg: SCRConfig,
                 budgets: Sequence[int] | None = None, identity: int = 0) -> RedistributionPlan:
    """Uniform-Smooth plan for one prompt: random sources seeded by ``cfg.seed`` and ``identity``,
    a fingerprint of the prompt's own content (``PreparedBatch.identity``), so a prompt gets the
    same sources whatever batch it is in and two prompts of a batch get different ones."""
    rng = np.random.default_rng([cfg.seed, identity])
    grids = layout.grids_of(sample)
    plans = []
    for g, budget in zip(grids, _budgets(len(grids), cfg, budgets)):
        plans.append(select_uniform(g.height, g.width, _with_budget(cfg, budget), rng) if budget
                     else _empty(g.height, g.width))
    assert cfg.hook_layers is not None, "resolve the config first"
    return RedistributionPlan(tuple(plans), cfg.lam, cfg.hook_layers)
