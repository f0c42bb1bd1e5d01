import numpy as np
import pytest

from scr_core.config import SCRConfig
from scr_core.errors import ConfigError
from scr_core.selection import select_sources, select_uniform

from tests.reference import ref_select


@pytest.mark.parametrize("seed", range(25))
def test_selection_matches_reference_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(3, 26, size=2)
    amap = rng.random((h, w))
    if seed % 5 == 0:
        amap = np.round(amap, 1)  # many ties
    k = int(rng.integers(1, max(2, (h - 2) * (w - 2)) + 1))
    plan = select_sources(amap, SCRConfig(k=k))
    sources, owner = ref_select(amap, k)
    assert list(plan.sources) == sources
    assert dict(zip(plan.neighbours, plan.owners)) == owner


def test_plan_invariants_on_paper_grid():
    amap = np.random.default_rng(1).random((24, 24))
    plan = select_sources(amap, SCRConfig())
    assert plan.num_sources == 32
    src = set(plan.sources)
    assert not src & set(plan.neighbours)
    assert len(set(plan.neighbours)) == len(plan.neighbours)
    for s in src:  # interior only
        assert 0 < s // 24 < 23 and 0 < s % 24 < 23
    for a in src:  # sources are >= 2 apart (Chebyshev)
        for b in src - {a}:
            assert max(abs(a // 24 - b // 24), abs(a % 24 - b % 24)) >= 2
    for n, s in zip(plan.neighbours, plan.owners):
        assert s in src and max(abs(n // 24 - s // 24), abs(n % 24 - s % 24)) == 1
    # the first source is the interior maximum
    interior = amap[1:-1, 1:-1]
    r, c = np.unravel_index(interior.argmax(), interior.shape)
    assert plan.sources[0] == (r + 1) * 24 + (c + 1)


def test_all_equal_attention_is_row_major_and_deterministic():
    plan = select_sources(np.ones((6, 6)), SCRConfig(k=4))
    assert plan.sources == (7, 9, 19, 21)  # (1,1), (1,3), (3,1), (3,3)
    assert list(plan.sources) == ref_select(np.ones((6, 6)), 4)[0]


def test_k_larger_than_interior_is_a_clear_error():
    with pytest.raises(ConfigError, match="exceeds the 4 patches"):
        select_sources(np.ones((4, 4)), SCRConfig(k=5))


def test_k_that_fits_the_interior_but_not_the_claims_is_clamped_with_a_warning():
    with pytest.warns(UserWarning, match="only 9 of k=30"):
        plan = select_sources(np.random.default_rng(0).random((8, 8)), SCRConfig(k=30))
    assert plan.num_sources == 9


@pytest.mark.parametrize("shape", [(2, 2), (1, 7), (7, 1), (2, 9)])
def test_degenerate_grids(shape):
    amap = np.random.default_rng(0).random(shape)
    with pytest.raises(ConfigError, match="interior"):
        select_sources(amap, SCRConfig(k=1))
    plan = select_sources(amap, SCRConfig(k=1, exclude_border=False))
    sources, owner = ref_select(amap, 1, exclude_border=False)
    assert list(plan.sources) == sources and dict(zip(plan.neighbours, plan.owners)) == owner


def test_uniform_smooth_is_seeded_and_follows_the_same_rules():
    cfg = SCRConfig(k=8, selection="uniform", seed=3)
    a = select_uniform(12, 12, cfg, np.random.default_rng(3))
    b = select_uniform(12, 12, cfg, np.random.default_rng(3))
    c = select_uniform(12, 12, cfg, np.random.default_rng(4))
    assert a == b and a.sources != c.sources
    assert not set(a.sources) & set(a.neighbours)
    # Uniform-Smooth = the greedy loop over a random order: same as SCR on a map ranking that order.
    order = np.random.default_rng(3).permutation(np.flatnonzero(np.pad(np.ones((10, 10)), 1)))
    ranks = np.zeros(144)
    ranks[order] = np.arange(order.size, 0, -1)
    assert select_sources(ranks.reshape(12, 12), cfg.with_(selection="attention")).sources == a.sources
