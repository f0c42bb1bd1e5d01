import math

import pytest

from scr_core.config import (IDENTITY_LAM, SCRConfig, check_lam_value, check_redistributes, paper_range,
                             resolve_layers)
from scr_core.plan import RedistributionPlan
from scr_core.errors import ConfigError, SCRError
from scr_core.grid import interior_mask, neighbours8, to_index, to_row_col


@pytest.mark.parametrize("kwargs", [
    {"lam": 0}, {"lam": -1.0}, {"lam": math.nan}, {"lam": math.inf}, {"k": 0}, {"k": -3}, {"k": 2.5},
    {"k": True}, {"diag_layers": ()}, {"hook_layers": (-1, 2)}, {"query": "first"}, {"selection": "top"},
])
def test_bad_config_raises_one_clear_error(kwargs):
    with pytest.raises(ConfigError) as info:
        SCRConfig(**kwargs)
    assert isinstance(info.value, SCRError)
    assert next(iter(kwargs)) in str(info.value)


def test_lam_bounds_have_one_owner():
    """Every λ (a config's, a plan's) passes the one lower bound of config.py: a finite number > 0, named as
    its caller knows it; λ = 1 is the identity, and only a grid of SCR settings also asks for more."""
    assert check_lam_value(1.1) == 1.1 and check_lam_value(1, "plan.lam") == 1.0 and check_lam_value(0.5) == 0.5
    for bad in (0, -1.0, math.nan, math.inf, True, "1.1", None):
        with pytest.raises(ConfigError, match=r"^plan\.lam must be a finite number > 0 \(got "):
            check_lam_value(bad, "plan.lam")
    plan = {"lam": 0, "hook_layers": [0], "grids": [{"size": [4, 4], "sources": [], "neighbours": [], "owners": []}]}
    for build in (lambda: SCRConfig(lam=0), lambda: RedistributionPlan.from_dict(plan)):
        with pytest.raises(ConfigError, match=r"lam must be a finite number > 0 \(got 0\); the paper uses 1\.10"):
            build()
    assert IDENTITY_LAM == 1.0 and SCRConfig(lam=IDENTITY_LAM).lam == 1.0  # allowed: the identity
    check_redistributes(1.05)
    for lam in (IDENTITY_LAM, 0.9):
        with pytest.raises(ConfigError, match=r"does not redistribute \(λ must be > 1 for SCR\)"):
            check_redistributes(lam)


def test_defaults_follow_the_paper():
    cfg = SCRConfig()
    assert (cfg.k, cfg.lam, cfg.query, cfg.exclude_border) == (32, 1.10, "post_image", True)
    resolved = resolve_layers(cfg, 32, paper_range(0, 11, 32))
    assert resolved.diag_layers == tuple(range(8, 17))
    assert resolved.hook_layers == tuple(range(0, 12))
    assert resolve_layers(cfg, 28, paper_range(0, 15, 28)).hook_layers == tuple(range(16))


def test_shallow_decoders_get_scaled_ranges_and_explicit_ranges_are_checked():
    assert paper_range(8, 16, 16) == tuple(range(4, 8))
    assert paper_range(0, 11, 16) == tuple(range(0, 6))
    with pytest.raises(ConfigError, match="only 8 decoder layers"):
        resolve_layers(SCRConfig(diag_layers=(8, 9)), 8, (0, 1))


def test_layers_are_sorted_and_deduplicated():
    assert SCRConfig(hook_layers=[3, 1, 1, 2]).hook_layers == (1, 2, 3)


def test_grid_geometry():
    assert to_row_col(to_index(3, 5, 7), 7) == (3, 5)
    mask = interior_mask(4, 5)
    assert mask.sum() == 2 * 3 and not mask[0].any() and not mask[:, -1].any()
    assert interior_mask(4, 5, exclude_border=False).all()
    assert sorted(neighbours8(0, 3, 3)) == [1, 3, 4]
    assert len(neighbours8(4, 3, 3)) == 8
    assert neighbours8(1, 1, 3) == [0, 2]
