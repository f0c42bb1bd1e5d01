"""Between ``scr_core``'s plan types and the arrays the exported graphs take (numpy only).

``SCRSelect`` returns a plan as an ``scr_map`` row per prompt; the runtime turns it back into a
``RedistributionPlan`` with the same order of sources (greedy order) and neighbours (claim
order) as ``scr_core.selection.greedy_claim``, so results from onnxruntime and PyTorch compare
equal as data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scr_core import GridPlan, RedistributionPlan, VisualGrid
from scr_core.grid import neighbours8  # the method's 8-neighbourhood, in scr_core's order


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


def visual_positions(grids_per_prompt: Sequence[Sequence[VisualGrid]]) -> np.ndarray:
    """``visual_positions[B, Nv]``: every grid's positions in sequence order, ``-1`` padding."""
    rows = [np.concatenate([g.positions for g in grids]) if grids else np.zeros(0, np.int64)
            for grids in grids_per_prompt]
    out = np.full((len(rows), max((r.size for r in rows), default=0)), -1, dtype=np.int64)
    for b, row in enumerate(rows):
        out[b, :row.size] = row
    return out


def plan_from_map(scr_map: np.ndarray, scores: np.ndarray, grids: Sequence[VisualGrid], lam: float,
                  hook_layers: Sequence[int]) -> RedistributionPlan:
    """One prompt's ``scr_map`` row (and the scores that ranked it) as a ``RedistributionPlan``."""
    plans, offset = [], 0
    for grid in grids:
        size = grid.height * grid.width
        local = np.asarray(scr_map[offset:offset + size], dtype=np.int64) - offset
        ranked = np.argsort(-np.asarray(scores[offset:offset + size], dtype=np.float64), kind="stable")
        sources = [int(v) for v in ranked if local[v] == v]
        neighbours, owners = [], []
        for s in sources:  # claim order of greedy_claim: sources in order, neighbours row-major
            for q in neighbours8(s, grid.height, grid.width):
                if local[q] == s and q != s:
                    neighbours.append(q)
                    owners.append(s)
        plans.append(GridPlan(grid.height, grid.width, tuple(sources), tuple(neighbours), tuple(owners)))
        offset += size
    return RedistributionPlan(tuple(plans), float(lam), tuple(int(i) for i in hook_layers))
