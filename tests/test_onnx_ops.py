"""The ``ai.scr`` ONNX functions alone, run by onnxruntime, against independent references.

SCRSelect is checked against the numpy greedy loop of ``tests/reference.py`` and against
``scr_core.selection.select_sources`` (the plan as data, order included); the redistribution
against the explicit matrix H' = M·H of docs/method.md §1.4.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export.ops import DOMAIN, redistribution_model, select_model
from export.runtime import grid_inputs
from scr_core import SCRConfig
from scr_core.layout import VisualGrid
from scr_core.plan import plan_from_map, visual_positions
from scr_core.selection import select_sources, source_capacity
from tests.reference import ref_redistribute, ref_select

CPU = ["CPUExecutionProvider"]


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=CPU)


@pytest.fixture(scope="module")
def select():
    return _session(select_model())


@pytest.fixture(scope="module")
def select_all():
    return _session(select_model(exclude_border=False))


def _prompt_grids(rng, shapes, start=3):
    """VisualGrids of one prompt at consecutive positions starting at ``start`` (a text gap between grids)."""
    grids, pos = [], start
    for image, (h, w) in enumerate(shapes):
        grids.append(VisualGrid(0, h, w, np.arange(pos, pos + h * w, dtype=np.int64), image))
        pos += h * w + int(rng.integers(1, 4))
    return grids


def _run_select(session, maps_per_prompt, budgets):
    grids = [[VisualGrid(0, m.shape[0], m.shape[1], np.arange(m.size)) for m in maps] for maps in maps_per_prompt]
    shape, budget = grid_inputs(grids, budgets)
    width = max(sum(m.size for m in maps) for maps in maps_per_prompt)
    scores = np.zeros((len(maps_per_prompt), width), np.float32)
    for b, maps in enumerate(maps_per_prompt):
        flat = np.concatenate([m.ravel() for m in maps])
        scores[b, :flat.size] = flat
    return session.run(None, {"scores": scores, "grid_shape": shape, "budgets": budget})[0], scores


def _expected_map(maps, budgets, width, exclude_border=True):
    expect = np.full(width, -1, np.int64)
    offset = 0
    for amap, k in zip(maps, budgets):
        sources, owner = ref_select(amap, k, exclude_border) if k else ([], {})
        for s in sources:
            expect[offset + s] = offset + s
        for n, s in owner.items():
            expect[offset + n] = offset + s
        offset += amap.size
    return expect


@pytest.mark.parametrize("seed", range(6))
def test_select_matches_numpy_greedy_on_random_batches(select, seed):
    """Random batches: 1-3 prompts, 1-3 grids each of different sizes, K per grid; every third with ties."""
    rng = np.random.default_rng(seed)
    for trial in range(8):
        maps_per_prompt, budgets = [], []
        for _ in range(int(rng.integers(1, 4))):
            shapes = [(int(rng.integers(3, 14)), int(rng.integers(3, 14))) for _ in range(int(rng.integers(1, 4)))]
            maps = [rng.random(s).astype(np.float32) for s in shapes]
            if trial % 3 == 0:
                maps = [np.round(m * 4).astype(np.float32) / 4 for m in maps]  # many exact ties
            maps_per_prompt.append(maps)
            budgets.append([int(rng.integers(0, 12)) for _ in maps])
        got, _ = _run_select(select, maps_per_prompt, budgets)
        for b, (maps, ks) in enumerate(zip(maps_per_prompt, budgets)):
            np.testing.assert_array_equal(got[b], _expected_map(maps, ks, got.shape[1]))


def test_select_whole_grid_when_border_allowed(select_all):
    rng = np.random.default_rng(7)
    maps = [rng.random((5, 7)).astype(np.float32), rng.random((2, 3)).astype(np.float32)]
    got, _ = _run_select(select_all, [maps], [[6, 2]])
    np.testing.assert_array_equal(got[0], _expected_map(maps, [6, 2], got.shape[1], exclude_border=False))


def test_select_gives_scr_core_plans_in_greedy_order(select):
    """The map, read back by ``plan_from_map``, is the very ``GridPlan`` scr_core selects (order included)."""
    rng = np.random.default_rng(3)
    shapes = [(8, 8), (6, 9), (24, 24)]
    maps = [rng.random(s).astype(np.float32) for s in shapes]
    ks = [4, 3, 32]
    got, scores = _run_select(select, [maps], [ks])
    grids = _prompt_grids(rng, shapes)
    plan = plan_from_map(got[0], scores[0], grids, 1.1, (0, 1))
    for grid_plan, amap, k in zip(plan.grids, maps, ks):
        assert grid_plan == select_sources(amap, SCRConfig(k=k))
    assert plan.lam == 1.1 and plan.hook_layers == (0, 1)


def test_select_at_and_beyond_capacity(select):
    """K at the capacity bound, and K above what the greedy walk can place: the same shortfall as scr_core."""
    rng = np.random.default_rng(11)
    for h, w in ((7, 7), (10, 6), (5, 12)):
        amap = rng.random((h, w)).astype(np.float32)
        interior = (h - 2) * (w - 2)
        for k in (source_capacity(h, w), interior):
            got, scores = _run_select(select, [[amap]], [[k]])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = select_sources(amap, SCRConfig(k=k))
            grid = VisualGrid(0, h, w, np.arange(h * w))
            assert plan_from_map(got[0], scores[0], [grid], 1.1, (0,)).grids[0] == expected
            assert (got[0] == np.arange(h * w)).sum() == expected.num_sources <= source_capacity(h, w)


def test_select_empty_budgets_and_padding(select):
    """Budget 0 gives an empty plan; prompts with fewer visual tokens have -1 past their grids."""
    rng = np.random.default_rng(5)
    maps_a = [rng.random((6, 6)).astype(np.float32)]
    maps_b = [rng.random((4, 5)).astype(np.float32), rng.random((3, 3)).astype(np.float32)]
    got, _ = _run_select(select, [maps_a, maps_b], [[0], [2, 1]])
    assert (got[0] == -1).all()
    np.testing.assert_array_equal(got[1], _expected_map(maps_b, [2, 1], got.shape[1]))
    assert (got[1, 29:] == -1).all()


def _random_plan_arrays(rng, batch_shapes, seq_len):
    """A left-padded batch: per prompt some grids at random offsets, a random plan on each."""
    grids_per_prompt, maps = [], []
    for shapes in batch_shapes:
        total = sum(h * w for h, w in shapes) + 3 * len(shapes)
        grids = _prompt_grids(rng, shapes, start=int(rng.integers(1, seq_len - total)))
        grids_per_prompt.append(grids)
        row = []
        for g in grids:
            sources, owner = ref_select(rng.random((g.height, g.width)), int(rng.integers(0, 6)))
            row.append((sources, owner))
        maps.append(row)
    positions = visual_positions(grids_per_prompt)
    scr_map = np.full(positions.shape, -1, np.int64)
    for b, (grids, row) in enumerate(zip(grids_per_prompt, maps)):
        offset = 0
        for g, (sources, owner) in zip(grids, row):
            for s in sources:
                scr_map[b, offset + s] = offset + s
            for n, s in owner.items():
                scr_map[b, offset + n] = offset + s
            offset += g.height * g.width
    return grids_per_prompt, maps, positions, scr_map


def _reference_hidden(hidden, grids_per_prompt, maps, lam):
    out = hidden.astype(np.float64)
    for b, (grids, row) in enumerate(zip(grids_per_prompt, maps)):
        for g, (sources, owner) in zip(grids, row):
            out[b, g.positions] = ref_redistribute(hidden[b, g.positions].astype(np.float64), sources, owner, lam)
    return out


@pytest.mark.parametrize("lam", [1.1, 0.8, 1.0])
def test_redistribution_matches_matrix_reference(lam):
    rng = np.random.default_rng(int(lam * 10))
    session = _session(redistribution_model(lam))
    batch_shapes = [[(5, 5), (3, 4)], [(6, 7)], [(4, 4), (3, 3), (5, 3)]]
    grids, maps, positions, scr_map = _random_plan_arrays(rng, batch_shapes, seq_len=80)
    hidden = rng.standard_normal((3, 80, 16)).astype(np.float32)
    out = session.run(None, {"hidden": hidden, "visual_positions": positions, "scr_map": scr_map})[0]
    expected = _reference_hidden(hidden, grids, maps, lam)
    np.testing.assert_allclose(out, expected, atol=2e-6, rtol=0)
    touched = np.zeros(hidden.shape[:2], bool)
    for b in range(3):
        touched[b, positions[b][scr_map[b] >= 0]] = True
    np.testing.assert_array_equal(out[~touched], hidden[~touched])  # everything else bit-identical
    if lam == 1.0:
        np.testing.assert_array_equal(out, hidden)


def test_redistribution_fp16_hidden_states():
    rng = np.random.default_rng(2)
    session = _session(redistribution_model(1.1, onnx.TensorProto.FLOAT16))
    grids, maps, positions, scr_map = _random_plan_arrays(rng, [[(8, 8)], [(5, 6), (4, 4)]], seq_len=90)
    hidden = rng.standard_normal((2, 90, 32)).astype(np.float16)
    out = session.run(None, {"hidden": hidden, "visual_positions": positions, "scr_map": scr_map})[0]
    assert out.dtype == np.float16
    expected = _reference_hidden(hidden, grids, maps, 1.1)
    np.testing.assert_allclose(out.astype(np.float64), expected, atol=4e-3, rtol=1e-3)  # fp16 resolution


def test_redistribution_is_a_no_op_on_decode_steps_and_empty_maps():
    rng = np.random.default_rng(4)
    session = _session(redistribution_model(1.1))
    _, _, positions, scr_map = _random_plan_arrays(rng, [[(6, 6)], [(6, 6)]], seq_len=60)
    assert (scr_map >= 0).any()
    step = rng.standard_normal((2, 1, 8)).astype(np.float32)  # one new token: the visual block is in the cache
    same = session.run(None, {"hidden": step, "visual_positions": positions, "scr_map": scr_map})[0]
    np.testing.assert_array_equal(same, step)
    prompt = rng.standard_normal((2, 60, 8)).astype(np.float32)
    empty = np.zeros((2, 0), np.int64)
    np.testing.assert_array_equal(
        session.run(None, {"hidden": prompt, "visual_positions": empty, "scr_map": empty})[0], prompt)
    untouched = np.full_like(scr_map, -1)
    np.testing.assert_array_equal(
        session.run(None, {"hidden": prompt, "visual_positions": positions, "scr_map": untouched})[0], prompt)


def test_functions_are_inlined_to_standard_ops(tmp_path):
    """onnxruntime inlines the ai.scr bodies: the optimised graph has default-domain nodes only."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(select_model().SerializeToString(), options, providers=CPU)
    optimized = onnx.load(options.optimized_model_filepath)
    domains = {n.domain for n in optimized.graph.node}
    assert DOMAIN not in domains and len(optimized.graph.node) > 20
