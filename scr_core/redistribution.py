"""The redistribution (Eq. 1) as a pure function, and the scoped hooks that apply it.

At each hooked decoder layer, for every source s and every neighbour n it owns:
    h_n <- h_n + (λ-1)·h_s      (pre-update h_s; the full amount goes to *each* neighbour)
    h_s <- h_s / λ
on visual positions of the prefill only. Decode steps (one new token, no visual block)
pass through untouched and read the edited visual states from the KV cache.

The removal ablation (EAZY, arXiv 2503.07772: the same high-attention sources blamed, the opposite
remedy) zeroes the planned sources instead, ``h_s <- 0``, in the same layers and with the same plans,
so "does redistribution beat removal?" is one flag (``BatchEdit(remove=True)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .errors import LayoutError
from .layout import VisualLayout
from .plan import PlanArrays, RedistributionPlan, plan_arrays


def redistribute(hidden: torch.Tensor, sources: torch.Tensor, neighbours: torch.Tensor,
                 owners: torch.Tensor, lam: float) -> torch.Tensor:
    """Return a copy of ``hidden`` (rows = token states, shape (N, D)) with Eq. 1 applied.

    ``sources``, ``neighbours`` and ``owners`` are row indices; ``owners[i]`` is the source row
    injected into ``neighbours[i]``. Sources and neighbours must be disjoint.
    """
    out = hidden.clone()
    out[neighbours] += (lam - 1.0) * hidden[owners]
    out[sources] = hidden[sources] / lam
    return out


def remove_sources(hidden: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """Return a copy of ``hidden`` (N, D) with the ``sources`` rows zeroed (the removal ablation)."""
    out = hidden.clone()
    out[sources] = 0
    return out


@dataclass(frozen=True)
class BatchEdit:
    """A batch of plans as (sample, position) index pairs into (batch, seq, D) hidden states."""

    samples: torch.Tensor         # (n_nb,) sample index of each neighbour (and of its owner)
    sources: torch.Tensor         # (n_src,) positions
    source_samples: torch.Tensor  # (n_src,) sample index of each source
    neighbours: torch.Tensor      # (n_nb,) positions
    owners: torch.Tensor          # (n_nb,) positions of the owning sources
    lam: float
    batch_size: int
    seq_len: int
    remove: bool = False          # zero the sources instead (the removal ablation; neighbours untouched)

    @classmethod
    def build(cls, plans: Sequence[RedistributionPlan], layout: VisualLayout,
              device: torch.device | str = "cpu", remove: bool = False) -> BatchEdit:
        """One plan per prompt of ``layout`` (checked to fit it and to share λ and hook layers)."""
        return cls.from_arrays(plan_arrays(plans, layout), device, remove)

    @classmethod
    def from_arrays(cls, arrays: PlanArrays, device: torch.device | str = "cpu",
                    remove: bool = False) -> BatchEdit:
        """The flat (sample, position) form of ``PlanArrays`` as index tensors on ``device``."""
        def column(rows, j: int) -> torch.Tensor:
            return torch.as_tensor(rows[:, j], dtype=torch.long, device=device)

        return cls(column(arrays.neighbours, 0), column(arrays.sources, 1), column(arrays.sources, 0),
                   column(arrays.neighbours, 1), column(arrays.owners, 1), arrays.lam, arrays.batch_size,
                   arrays.seq_len, remove)

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        """Edit a (batch, seq, D) tensor that holds the prompt; shorter inputs (decode steps) pass unchanged.

        Sequences longer than the prompt (generation without a KV cache re-runs the prompt)
        are edited at the same prompt positions, so cached and uncached runs agree.
        """
        if hidden.dim() != 3 or hidden.shape[1] < self.seq_len:
            return hidden
        if hidden.shape[0] != self.batch_size:
            raise LayoutError(
                f"hooked layer saw batch {hidden.shape[0]} but the plan is for {self.batch_size} prompts "
                "(beam search and num_return_sequences > 1 are not supported with SCR)"
            )
        seq = hidden.shape[1]
        flat = hidden.reshape(-1, hidden.shape[-1])
        if self.remove:
            return remove_sources(flat, self.source_samples * seq + self.sources).view_as(hidden)
        edited = redistribute(
            flat,
            self.source_samples * seq + self.sources,  # row of (sample, position) in the flat view
            self.samples * seq + self.neighbours,
            self.samples * seq + self.owners,
            self.lam,
        )
        return edited.view_as(hidden)


def _edit_output(edit: BatchEdit, handles: list | None = None):
    """The hook; with ``handles`` it removes itself once it has edited the prompt (see ``redistribution``)."""
    def hook(module: nn.Module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        edited = edit.apply(hidden)
        if handles is not None and edited is not hidden:
            handles[0].remove()
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    return hook


@contextmanager
def redistribution(layers: nn.ModuleList | Sequence[nn.Module], hook_layers: Sequence[int], edit: BatchEdit | None,
                   prefill_only: bool = False) -> Iterator[None]:
    """Hook ``layers[i]`` for each ``i`` in ``hook_layers`` for the duration of the block.

    ``prefill_only``: each hook removes itself right after it has edited the prompt, so decode
    steps run with no hook at all (not even one that returns at once). Only for generation with
    a KV cache: without one every step re-runs the prompt and must be edited again.
    The hooks are removed on exit, also when the block raises.
    """
    handles = []
    try:
        for i in hook_layers:
            assert edit is not None  # None only with no hook_layers (the vanilla model)
            own: list[RemovableHandle] | None = [] if prefill_only else None
            handles.append(layers[i].register_forward_hook(_edit_output(edit, own)))
            if own is not None:
                own.append(handles[-1])
        yield
    finally:
        for handle in handles:
            handle.remove()
