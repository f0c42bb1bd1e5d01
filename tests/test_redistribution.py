"""The redistribution math against the explicit matrix of docs/method.md §1.4."""

import numpy as np
import pytest
import torch

from scr_core.config import SCRConfig
from scr_core.layout import VisualGrid, VisualLayout
from scr_core.redistribution import BatchEdit, redistribute
from scr_core.plan import RedistributionPlan
from scr_core.selection import select_sources

from tests.reference import ref_redistribute, ref_select


@pytest.mark.parametrize("seed", range(10))
def test_redistribute_matches_matrix_reference(seed):
    rng = np.random.default_rng(seed)
    h, w, d = int(rng.integers(4, 12)), int(rng.integers(4, 12)), 8
    lam = float(rng.uniform(0.5, 2.0))
    amap = rng.random((h, w))
    sources, owner = ref_select(amap, 4)
    hidden = rng.standard_normal((h * w, d))
    expected = ref_redistribute(hidden, sources, owner, lam)
    got = redistribute(torch.tensor(hidden), torch.tensor(sources), torch.tensor(list(owner)),
                       torch.tensor(list(owner.values())), lam).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_redistribute_uses_pre_update_source_and_full_amount_per_neighbour():
    hidden = torch.tensor([[10.0], [1.0], [2.0]])
    out = redistribute(hidden, torch.tensor([0]), torch.tensor([1, 2]), torch.tensor([0, 0]), 1.1)
    assert torch.allclose(out, torch.tensor([[10.0 / 1.1], [2.0], [3.0]]))
    assert hidden[0, 0] == 10.0  # the input is not modified


def test_batch_edit_touches_only_planned_positions_with_left_padding():
    # sample 0: image at positions 3..18 (4x4), sample 1 (shorter prompt, padded): 5..20
    seq, d = 24, 6
    grids = (VisualGrid(0, 4, 4, np.arange(3, 19)), VisualGrid(1, 4, 4, np.arange(5, 21)))
    layout = VisualLayout(grids, 2, seq)
    rng = np.random.default_rng(0)
    maps = [rng.random((4, 4)), rng.random((4, 4))]
    cfg = SCRConfig(k=2, hook_layers=(0,))
    plans = [RedistributionPlan((select_sources(m, cfg),), 1.1, (0,)) for m in maps]
    edit = BatchEdit.build(plans, layout)
    hidden = torch.tensor(rng.standard_normal((2, seq, d)))
    out = edit.apply(hidden)
    for sample, (grid, plan) in enumerate(zip(grids, plans)):
        gp = plan.grids[0]
        vis = hidden[sample, grid.positions].numpy()
        expected_vis = ref_redistribute(vis, list(gp.sources), dict(zip(gp.neighbours, gp.owners)), 1.1)
        np.testing.assert_allclose(out[sample, grid.positions].numpy(), expected_vis, atol=1e-12)
        others = np.setdiff1d(np.arange(seq), grid.positions[list(gp.sources) + list(gp.neighbours)])
        assert torch.equal(out[sample, others], hidden[sample, others])
    step = torch.randn(2, 1, d)
    assert edit.apply(step) is step  # decode step: untouched, not even copied
