"""The ``ai.scr`` ops as ONNX functions whose bodies use standard ops only.

Why functions: onnxruntime inlines a FunctionProto carried by the model at load time, so the
same ``.onnx`` file runs on every execution provider (CPU, CUDA, TensorRT, …) with no custom
kernel library; a fused kernel registered with ``register_custom_ops_library`` takes
precedence where one exists (see docs/onnx.md, "The `ai.scr` op domain").

Both ops work on the *visual-token form* of a batch of plans (``scr_core.plan_arrays``):
``visual_positions[B, Nv]`` is the sequence position of prompt b's v-th visual token (all its
grids in sequence order, ``-1`` pads prompts with fewer visual tokens) and ``scr_map[B, Nv]``
says what happens to it: ``-1`` untouched, ``v`` itself a source (× 1/λ), another ``u`` a
neighbour of the source at visual index u (gains (λ−1)·h_u, u's state before the edit).

* ``SpatialCreditRedistribution(hidden[B,S,D], visual_positions[B,Nv], scr_map[B,Nv]) -> hidden``,
  attribute ``lam``: docs/method.md §1.4. Acts only when every visual position lies inside the
  input (a prefill); a decode step (S = 1) or an empty map is an exact no-op.
* ``SCRSelect(scores[B,Nv], grid_shape[B,G,2], budgets[B,G]) -> scr_map[B,Nv]``, attribute
  ``exclude_border`` (default 1): docs/method.md §1.3. The greedy exclusive claiming is
  non-maximum suppression with one 2×2 box per patch (IoU > 0.1 exactly when the Chebyshev
  distance is ≤ 1), one NMS class per grid; neighbours go to the best-ranked adjacent source.
  Ties rank the lower row-major index first (TopK's documented tie rule).

This module imports onnx/onnxscript only (no torch), so tests and tools can build graphs from it.
"""

from __future__ import annotations

import onnx
from onnxscript import FLOAT, INT64, script
from onnxscript import opset18 as op
from onnxscript.values import Opset

DOMAIN = "ai.scr"
VERSION = 1
OPSET = Opset(DOMAIN, VERSION)
# Larger than any rank; marks "no source here" in the ownership stencil.
_NO_RANK = 1 << 62


@script(OPSET, default_opset=op)
def SpatialCreditRedistribution(hidden, visual_positions: INT64, scr_map: INT64, lam: float):
    """hidden[B,S,D] with Eq. 1 applied at the visual positions named by scr_map (prefill only)."""
    seq = op.Shape(hidden, start=1, end=2)
    flat = op.Reshape(visual_positions, op.Constant(value_ints=[-1]))
    last = op.ReduceMax(op.Concat(flat, op.Constant(value_ints=[-1]), axis=0), keepdims=1)
    fits = op.Less(last, seq)  # [1]: every visual position is inside this input (a prefill)
    act = op.And(op.And(op.GreaterOrEqual(scr_map, 0), op.GreaterOrEqual(visual_positions, 0)), fits)
    bv = op.Transpose(op.NonZero(act), perm=[1, 0])  # [n, 2]: (sample, visual index) of each edited token
    b = op.Slice(bv, op.Constant(value_ints=[0]), op.Constant(value_ints=[1]), op.Constant(value_ints=[1]))
    v = op.Squeeze(op.Slice(bv, op.Constant(value_ints=[1]), op.Constant(value_ints=[2]),
                            op.Constant(value_ints=[1])), op.Constant(value_ints=[1]))
    owner = op.GatherND(scr_map, bv)
    pos = op.GatherND(visual_positions, bv)
    owner_pos = op.GatherND(visual_positions, op.Concat(b, op.Unsqueeze(owner, op.Constant(value_ints=[1])), axis=1))
    at_self = op.Concat(b, op.Unsqueeze(pos, op.Constant(value_ints=[1])), axis=1)
    at_owner = op.Concat(b, op.Unsqueeze(owner_pos, op.Constant(value_ints=[1])), axis=1)
    h_self = op.Cast(op.GatherND(hidden, at_self), to=FLOAT.dtype)  # [n, D], math in fp32
    h_owner = op.Cast(op.GatherND(hidden, at_owner), to=FLOAT.dtype)
    lam_f = op.Constant(value_float=lam)
    one = op.Constant(value_float=1.0)
    is_source = op.Unsqueeze(op.Equal(owner, v), op.Constant(value_ints=[1]))
    edited = op.Where(is_source, op.Div(h_self, lam_f), op.Add(h_self, op.Mul(op.Sub(lam_f, one), h_owner)))
    return op.ScatterND(hidden, at_self, op.CastLike(edited, hidden))


@script(OPSET, default_opset=op)
def SCRSelect(scores, grid_shape: INT64, budgets: INT64, exclude_border: int = 1):
    """scr_map[B,Nv] of the greedy claiming over each grid's map (budgets[b,g] sources at most)."""
    zero = op.Constant(value_ints=[0])
    one_i = op.Constant(value_ints=[1])
    two = op.Constant(value_ints=[2])
    nv = op.Shape(scores, start=1, end=2)
    heights = op.Squeeze(op.Slice(grid_shape, zero, one_i, two), two)  # [B, G]
    widths = op.Squeeze(op.Slice(grid_shape, one_i, two, two), two)
    sizes = op.Mul(heights, widths)
    ends = op.CumSum(sizes, op.Constant(value_int=1))
    starts = op.Sub(ends, sizes)
    num_grids = op.Shape(grid_shape, start=1, end=2)
    index = op.Range(op.Constant(value_int=0), op.Squeeze(nv), op.Constant(value_int=1))  # [Nv]
    # grid of each visual index: how many grids end at or before it ([B, Nv]); == G past the last grid
    grid = op.ReduceSum(op.Cast(op.LessOrEqual(op.Unsqueeze(ends, one_i),
                                               op.Unsqueeze(index, op.Constant(value_ints=[0, 2]))),
                                to=INT64.dtype), two, keepdims=0)
    valid = op.Less(grid, num_grids)
    safe_grid = op.Where(valid, grid, op.Constant(value_int=0))
    start_v = op.GatherElements(starts, safe_grid, axis=1)
    height_v = op.GatherElements(heights, safe_grid, axis=1)
    width_v = op.Max(op.GatherElements(widths, safe_grid, axis=1), op.Constant(value_int=1))
    local = op.Sub(op.Unsqueeze(index, zero), start_v)
    row = op.Div(local, width_v)
    col = op.Mod(local, width_v)
    border = op.Constant(value_int=exclude_border)
    inside_rows = op.And(op.GreaterOrEqual(row, border), op.LessOrEqual(row, op.Sub(op.Sub(height_v, 1), border)))
    inside_cols = op.And(op.GreaterOrEqual(col, border), op.LessOrEqual(col, op.Sub(op.Sub(width_v, 1), border)))
    candidate = op.And(valid, op.And(inside_rows, inside_cols))

    # rank[b, v]: position of v in descending score order over the candidates (ties: lower index first)
    masked = op.Where(candidate, op.Cast(scores, to=FLOAT.dtype), op.Constant(value_float=float("-inf")))
    _, order = op.TopK(masked, nv, axis=1, largest=1, sorted=1)
    batch_rows = op.Shape(scores, start=0, end=1)
    positions = op.Expand(op.Unsqueeze(index, zero), op.Concat(batch_rows, nv, axis=0))
    rank = op.ScatterElements(positions, order, positions, axis=1)

    # NMS: one class per grid, distinct integer scores (Nv - rank), 2x2 boxes at (row, col)
    classes = op.Unsqueeze(op.Range(op.Constant(value_int=0), op.Squeeze(num_grids), op.Constant(value_int=1)),
                           op.Constant(value_ints=[0, 2]))  # [1, G, 1]
    in_class = op.And(op.Equal(op.Unsqueeze(grid, one_i), classes), op.Unsqueeze(candidate, one_i))
    strength = op.Cast(op.Sub(nv, rank), to=FLOAT.dtype)
    nms_scores = op.Where(in_class, op.Unsqueeze(strength, one_i), op.Constant(value_float=0.0))
    row_f = op.Unsqueeze(op.Cast(row, to=FLOAT.dtype), two)
    col_f = op.Unsqueeze(op.Cast(col, to=FLOAT.dtype), two)
    size_f = op.Constant(value_float=2.0)
    boxes = op.Concat(row_f, col_f, op.Add(row_f, size_f), op.Add(col_f, size_f), axis=2)
    most = op.ReduceMax(op.Concat(op.Reshape(budgets, op.Constant(value_ints=[-1])), zero, axis=0), keepdims=1)
    picked = op.NonMaxSuppression(boxes, nms_scores, most, op.Constant(value_floats=[0.1]),
                                  op.Constant(value_floats=[0.5]))  # [n, 3]: (sample, grid, visual index)
    pick_b = op.Slice(picked, zero, one_i, one_i)
    pick_g = op.Slice(picked, one_i, two, one_i)
    pick_v = op.Slice(picked, two, op.Constant(value_ints=[3]), one_i)
    at = op.Concat(pick_b, pick_v, axis=1)
    pick_rank = op.GatherND(rank, at)  # [n]
    # keep the first budgets[b, g] picks of each (sample, grid): greedy with budget k is a prefix
    same = op.And(op.Equal(pick_b, op.Transpose(pick_b)), op.Equal(pick_g, op.Transpose(pick_g)))
    before = op.And(same, op.Less(op.Unsqueeze(pick_rank, zero), op.Unsqueeze(pick_rank, one_i)))
    earlier = op.ReduceSum(op.Cast(before, to=INT64.dtype), one_i, keepdims=0)
    keep = op.Less(earlier, op.GatherND(budgets, op.Concat(pick_b, pick_g, axis=1)))
    no_rank = op.Constant(value_int=_NO_RANK)
    source_rank = op.ScatterND(op.Expand(no_rank, op.Shape(scores)), at, op.Where(keep, pick_rank, no_rank))

    # owner of each patch: the best-ranked source among itself and its 8 neighbours on its grid
    d_row = op.Constant(value_ints=[-1, -1, -1, 0, 0, 0, 1, 1, 1])
    d_col = op.Constant(value_ints=[-1, 0, 1, -1, 0, 1, -1, 0, 1])
    n_row = op.Add(op.Unsqueeze(row, two), d_row)  # [B, Nv, 9]
    n_col = op.Add(op.Unsqueeze(col, two), d_col)
    on_grid = op.And(op.And(op.GreaterOrEqual(n_row, 0), op.Less(n_row, op.Unsqueeze(height_v, two))),
                     op.And(op.GreaterOrEqual(n_col, 0), op.Less(n_col, op.Unsqueeze(width_v, two))))
    on_grid = op.And(on_grid, op.Unsqueeze(valid, two))
    n_index = op.Where(on_grid, op.Add(op.Unsqueeze(start_v, two), op.Add(op.Mul(n_row, op.Unsqueeze(width_v, two)),
                                                                          n_col)), op.Constant(value_int=0))
    flat_shape = op.Concat(batch_rows, op.Constant(value_ints=[-1]), axis=0)
    n_rank = op.Reshape(op.GatherElements(source_rank, op.Reshape(n_index, flat_shape), axis=1), op.Shape(n_index))
    n_rank = op.Where(on_grid, n_rank, no_rank)
    best = op.ArgMin(n_rank, axis=2, keepdims=1)
    best_rank = op.Squeeze(op.GatherElements(n_rank, best, axis=2), two)
    owner = op.Squeeze(op.GatherElements(n_index, best, axis=2), two)
    return op.Where(op.Less(best_rank, no_rank), owner, op.Constant(value_int=-1))


FUNCTIONS = (SpatialCreditRedistribution, SCRSelect)


def function_protos() -> list[onnx.FunctionProto]:
    """The FunctionProtos of both ops (what an exported model carries)."""
    return [f.to_function_proto() for f in FUNCTIONS]


def attach_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add the ``ai.scr`` function bodies and opset imports to ``model`` (in place; returned).

    The bodies are written at opset 18; a model importing a newer default opset gets them at its
    own version (the checker requires one version per domain), which changes nothing: every op
    they use keeps its opset-18 meaning up to opset 23 (the later versions only add types).
    """
    imports = {o.domain: o for o in model.opset_import}
    default = imports[""].version if "" in imports else 18
    present = {(f.domain, f.name) for f in model.functions}
    for proto in function_protos():
        if (proto.domain, proto.name) not in present:
            for opset in proto.opset_import:
                if opset.domain == "" and default > opset.version:
                    opset.version = default
            model.functions.append(proto)
    if DOMAIN not in imports:
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, VERSION))
    if "" not in imports:
        model.opset_import.append(onnx.helper.make_opsetid("", 18))
    return model


IR_VERSION = 10  # onnxruntime-gpu 1.31 reads IR <= 13; onnx 1.23 writes 14 by default


def select_model(exclude_border: bool = True, score_type: int = onnx.TensorProto.FLOAT) -> onnx.ModelProto:
    """A graph holding one ``SCRSelect`` node: map → plan (``select.onnx`` of an export)."""
    h = onnx.helper
    node = h.make_node("SCRSelect", ["scores", "grid_shape", "budgets"], ["scr_map"], domain=DOMAIN,
                       exclude_border=int(bool(exclude_border)))
    graph = h.make_graph(
        [node], "scr_select",
        [h.make_tensor_value_info("scores", score_type, ["batch", "num_visual"]),
         h.make_tensor_value_info("grid_shape", onnx.TensorProto.INT64, ["batch", "num_grids", 2]),
         h.make_tensor_value_info("budgets", onnx.TensorProto.INT64, ["batch", "num_grids"])],
        [h.make_tensor_value_info("scr_map", onnx.TensorProto.INT64, ["batch", "num_visual"])])
    return _model(graph)


def redistribution_model(lam: float, hidden_type: int = onnx.TensorProto.FLOAT) -> onnx.ModelProto:
    """A graph holding one ``SpatialCreditRedistribution`` node (tests and benchmarks)."""
    h = onnx.helper
    node = h.make_node("SpatialCreditRedistribution", ["hidden", "visual_positions", "scr_map"], ["out"],
                       domain=DOMAIN, lam=float(lam))
    graph = h.make_graph(
        [node], "scr_redistribution",
        [h.make_tensor_value_info("hidden", hidden_type, ["batch", "seq", "dim"]),
         h.make_tensor_value_info("visual_positions", onnx.TensorProto.INT64, ["batch", "num_visual"]),
         h.make_tensor_value_info("scr_map", onnx.TensorProto.INT64, ["batch", "num_visual"])],
        [h.make_tensor_value_info("out", hidden_type, ["batch", "seq", "dim"])])
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18),
                                                         onnx.helper.make_opsetid(DOMAIN, VERSION)],
                                   ir_version=IR_VERSION, producer_name="scr-export")
    return attach_functions(model)
