"""Plans as data: what the redistribution does, as JSON and as the index arrays a graph takes.

A ``RedistributionPlan`` is made by the diagnostic pass (or by hand, or read from JSON) and
applied by the hooks (PyTorch) or by the ``ai.scr`` ops of an exported graph (onnxruntime).
Everything here is numpy only, so the onnxruntime path shares it without importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import check_lam_value
from .errors import ConfigError, LayoutError
from .grid import neighbours8
from .layout import VisualGrid, VisualLayout

PLAN_FORMAT_VERSION = 1


@dataclass(frozen=True)
class GridPlan:
    """The redistribution plan of one image grid, in flat row-major grid indices."""

    height: int
    width: int
    sources: tuple[int, ...]
    neighbours: tuple[int, ...]
    owners: tuple[int, ...]  # owners[i] is the source whose state is injected into neighbours[i]

    @property
    def num_sources(self) -> int:
        return len(self.sources)

    @property
    def coverage(self) -> float:
        """Fraction of the grid touched by the edit, (|S| + |N|) / N_v (docs/method.md §6 #15)."""
        return (len(self.sources) + len(self.neighbours)) / (self.height * self.width)

    def to_dict(self) -> dict:
        return {"height": self.height, "width": self.width, "sources": list(self.sources),
                "neighbours": list(self.neighbours), "owners": list(self.owners)}

    @classmethod
    def from_dict(cls, data: dict, where: str = "grid") -> GridPlan:
        """Read and check one grid: indices on the grid, sources and neighbours disjoint, every
        neighbour an 8-neighbour of its owner (a plan that breaks these is not an SCR plan)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
        missing = sorted({"height", "width", "sources", "neighbours", "owners"} - set(data))
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        height, width = (_int(data[k], f"{where}.{k}", minimum=1) for k in ("height", "width"))
        lists = {}
        for key in ("sources", "neighbours", "owners"):
            if not isinstance(data[key], (list, tuple)):
                raise ConfigError(f"{where}.{key}: expected a list of patch indices")
            lists[key] = tuple(_int(v, f"{where}.{key}", minimum=0) for v in data[key])
            out_of_grid = [v for v in lists[key] if v >= height * width]
            if out_of_grid:
                raise ConfigError(f"{where}.{key}: index {out_of_grid[0]} is outside the {height}x{width} grid")
        sources, neighbours, owners = lists["sources"], lists["neighbours"], lists["owners"]
        if len(neighbours) != len(owners):
            raise ConfigError(f"{where}: {len(neighbours)} neighbours but {len(owners)} owners (one owner each)")
        if len(set(sources)) != len(sources) or len(set(neighbours)) != len(neighbours):
            raise ConfigError(f"{where}: a patch is listed twice as a source or as a neighbour")
        if set(sources) & set(neighbours):
            raise ConfigError(f"{where}: patches {sorted(set(sources) & set(neighbours))} are both source and "
                              "neighbour; SCR's claiming keeps them disjoint")
        source_set = set(sources)
        for n, o in zip(neighbours, owners):
            if o not in source_set:
                raise ConfigError(f"{where}: neighbour {n} is owned by {o}, which is not a source")
            if n not in neighbours8(o, height, width):
                raise ConfigError(f"{where}: neighbour {n} is not an 8-neighbour of its owner {o}")
        return cls(height, width, sources, neighbours, owners)


@dataclass(frozen=True)
class RedistributionPlan:
    """What the redistribution pass does for one prompt: one ``GridPlan`` per image grid,
    in the order the grids appear in the sequence, plus the λ and hook layers to apply."""

    grids: tuple[GridPlan, ...]
    lam: float
    hook_layers: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"version": PLAN_FORMAT_VERSION, "lam": self.lam, "hook_layers": list(self.hook_layers),
                "grids": [g.to_dict() for g in self.grids]}

    @classmethod
    def from_dict(cls, data: dict) -> RedistributionPlan:
        """The inverse of ``to_dict``, checked field by field (``ConfigError`` names the field)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a plan must be a JSON object, got {type(data).__name__}")
        version = data.get("version", PLAN_FORMAT_VERSION)
        if version != PLAN_FORMAT_VERSION:
            raise ConfigError(f"plan format version {version!r} is not supported (this is {PLAN_FORMAT_VERSION})")
        missing = sorted({"lam", "hook_layers", "grids"} - set(data))
        if missing:
            raise ConfigError(f"plan: missing {', '.join(missing)}")
        lam = check_lam_value(data["lam"], "plan.lam")
        layers = data["hook_layers"]
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ConfigError("plan.hook_layers must be a non-empty list of layer indices")
        hook_layers = tuple(sorted({_int(i, "plan.hook_layers", minimum=0) for i in layers}))
        if not isinstance(data["grids"], (list, tuple)) or not data["grids"]:
            raise ConfigError("plan.grids must be a non-empty list (one entry per image grid)")
        grids = tuple(GridPlan.from_dict(g, f"plan.grids[{i}]") for i, g in enumerate(data["grids"]))
        return cls(grids, float(lam), hook_layers)

    def check_fits(self, grids: Sequence[VisualGrid], prompt: int = 0) -> None:
        """Raise ``LayoutError`` unless this plan has one grid of the right size per image grid of the prompt."""
        if len(grids) != len(self.grids):
            raise LayoutError(
                f"prompt {prompt} has {len(grids)} image grids but its plan has {len(self.grids)}; "
                "a plan only fits the image and prompt it was diagnosed on"
            )
        for index, (grid, gp) in enumerate(zip(grids, self.grids)):
            if (grid.height, grid.width) != (gp.height, gp.width):
                raise LayoutError(
                    f"plan grid {index} is {gp.height}x{gp.width} but image grid {index} of prompt {prompt} is "
                    f"{grid.height}x{grid.width}; a plan only fits the image (and resolution) it was diagnosed on"
                )


@dataclass(frozen=True)
class PlanArrays:
    """A batch of plans as the index arrays an exported graph (or the PyTorch hooks) take.

    Two equivalent forms, both over a left-padded batch of ``batch_size`` sequences:

    * the visual-token form (``ai.scr`` ops): ``visual_positions[b, v]`` is the sequence
      position of prompt b's v-th visual token (all its grids, in sequence order; ``-1`` pads
      prompts with fewer visual tokens) and ``scr_map[b, v]`` says what happens to it: ``-1``
      untouched, ``v`` itself a source (scaled by 1/λ), any other ``u`` a neighbour of the
      source at visual index ``u`` (gains (λ−1)·h_u, u's state before the edit);
    * the flat form: ``sources``, ``neighbours`` and ``owners`` as (sample, position) rows,
      ``owners[i]`` being the source injected into ``neighbours[i]``.
    """

    visual_positions: np.ndarray  # int64 (B, Nv_max), -1 = padding
    scr_map: np.ndarray  # int64 (B, Nv_max)
    sources: np.ndarray  # int64 (n_src, 2): (sample, position)
    neighbours: np.ndarray  # int64 (n_nb, 2)
    owners: np.ndarray  # int64 (n_nb, 2)
    lam: float
    hook_layers: tuple[int, ...]
    batch_size: int
    seq_len: int

    @property
    def num_visual(self) -> np.ndarray:
        """Visual tokens per prompt, int64 (B,)."""
        return (self.visual_positions >= 0).sum(axis=1).astype(np.int64)

    @property
    def visual_start(self) -> np.ndarray | None:
        """First visual position per prompt when every prompt's visual tokens are one contiguous
        block (the ``vis_start`` input of the single-block op form); ``None`` otherwise."""
        starts = self.visual_positions[:, 0]
        for row, n in zip(self.visual_positions, self.num_visual):
            if n and not np.array_equal(row[:n], np.arange(row[0], row[0] + n)):
                return None
        return starts.copy()


def visual_positions(grids_per_prompt: Sequence[Sequence[VisualGrid]]) -> np.ndarray:
    """``visual_positions[B, Nv]``: every grid's positions in sequence order, ``-1`` padding."""
    rows = [np.concatenate([g.positions for g in grids]) if grids else np.zeros(0, np.int64)
            for grids in grids_per_prompt]
    out = np.full((len(rows), max((r.size for r in rows), default=0)), -1, dtype=np.int64)
    for b, row in enumerate(rows):
        out[b, :row.size] = row
    return out


def plan_arrays(plans: Sequence[RedistributionPlan], layout: VisualLayout) -> PlanArrays:
    """The index arrays of one plan per prompt of ``layout`` (checked to fit it).

    All plans of a batch must share λ and the hook layers: one forward applies one edit per
    layer, so mixing them would silently apply the first plan's settings to every prompt.
    """
    if len(plans) != layout.batch_size:
        raise LayoutError(f"got {len(plans)} plans for a batch of {layout.batch_size} prompts")
    if len({p.lam for p in plans}) != 1:
        raise LayoutError(f"all plans of one batch must share lam (got {sorted({p.lam for p in plans})}); "
                          "run prompts with different λ in separate batches")
    if len({p.hook_layers for p in plans}) != 1:
        raise LayoutError("all plans of one batch must share hook_layers (got "
                          f"{[list(p.hook_layers) for p in plans]}); run them in separate batches")
    per_prompt = []
    for sample, plan in enumerate(plans):
        grids = layout.grids_of(sample)
        plan.check_fits(grids, sample)
        per_prompt.append((grids, plan))
    positions = visual_positions([grids for grids, _ in per_prompt]) if per_prompt else \
        np.full((layout.batch_size, 0), -1, dtype=np.int64)
    scr_map = np.full(positions.shape, -1, dtype=np.int64)
    src, nb, own = [], [], []
    for sample, (grids, plan) in enumerate(per_prompt):
        offset = 0
        for grid, gp in zip(grids, plan.grids):
            size = grid.height * grid.width
            for s in gp.sources:
                scr_map[sample, offset + s] = offset + s
                src.append((sample, int(grid.positions[s])))
            for n, o in zip(gp.neighbours, gp.owners):
                scr_map[sample, offset + n] = offset + o
                nb.append((sample, int(grid.positions[n])))
                own.append((sample, int(grid.positions[o])))
            offset += size

    def pairs(rows: list[tuple[int, int]]) -> np.ndarray:
        return np.asarray(rows, dtype=np.int64).reshape(-1, 2)

    first = plans[0] if plans else None
    return PlanArrays(positions, scr_map, pairs(src), pairs(nb), pairs(own),
                      float(first.lam) if first else 1.0, tuple(first.hook_layers) if first else (),
                      layout.batch_size, layout.seq_len)


def plan_from_map(scr_map: np.ndarray, scores: np.ndarray, grids: Sequence[VisualGrid], lam: float,
                  hook_layers: Sequence[int]) -> RedistributionPlan:
    """One prompt's ``scr_map`` row (and the scores that ranked it) back as a ``RedistributionPlan``: the
    inverse of ``plan_arrays`` (an ``scr_map`` entry is the index of the patch's source, ``-1`` untouched),
    with the sources in greedy order and the neighbours in claim order, as ``selection.greedy_claim``
    gives them, so plans from onnxruntime's ``SCRSelect`` and from PyTorch compare equal as data."""
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


def _int(value, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return int(value)
