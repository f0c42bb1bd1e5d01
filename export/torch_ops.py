"""The torch side of ``ai.scr::SpatialCreditRedistribution``: a ``torch.library`` op that the
dynamo exporter turns into one custom-domain node.

Why a custom op rather than tracing the edit as plain torch: the exported graph then carries one
named ``ai.scr`` node per hook layer (documented, replaceable by a fused kernel), and its body
comes from ``export.ops`` — the same function that the op tests check.
"""

from __future__ import annotations

import onnx
import torch
from onnxscript import values as osv

from .ops import DOMAIN, VERSION

_OP_NAME = "SpatialCreditRedistribution"


@torch.library.custom_op("scr::redistribute", mutates_args=())
def redistribute(hidden: torch.Tensor, visual_positions: torch.Tensor, scr_map: torch.Tensor,
                 lam: float) -> torch.Tensor:
    """Eager version of the ONNX function (used only when a wrapper runs outside export)."""
    out = hidden.clone()
    if visual_positions.numel() == 0 or int(visual_positions.max()) >= hidden.shape[1]:
        return out
    b, v = torch.nonzero((scr_map >= 0) & (visual_positions >= 0), as_tuple=True)
    owner = scr_map[b, v]
    pos, owner_pos = visual_positions[b, v], visual_positions[b, owner]
    h_self, h_owner = hidden[b, pos].float(), hidden[b, owner_pos].float()
    edited = torch.where((owner == v)[:, None], h_self / lam, h_self + (lam - 1.0) * h_owner)
    out[b, pos] = edited.to(hidden.dtype)
    return out


@redistribute.register_fake
def _(hidden, visual_positions, scr_map, lam):
    return torch.empty_like(hidden)


def _register_schema() -> None:
    """The exporter needs an ONNX schema to emit a node of a custom domain."""
    if onnx.defs.has(_OP_NAME, DOMAIN):
        return
    T = "T"
    schema = onnx.defs.OpSchema(
        _OP_NAME, DOMAIN, VERSION,
        inputs=[onnx.defs.OpSchema.FormalParameter("hidden", T),
                onnx.defs.OpSchema.FormalParameter("visual_positions", "tensor(int64)"),
                onnx.defs.OpSchema.FormalParameter("scr_map", "tensor(int64)")],
        outputs=[onnx.defs.OpSchema.FormalParameter("out", T)],
        type_constraints=[(T, ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], "hidden-state types")],
        attributes=[onnx.defs.OpSchema.Attribute("lam", onnx.defs.OpSchema.AttrType.FLOAT, "λ")],
    )
    onnx.defs.register_schema(schema)


def translation_table() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export``: scr::redistribute → ai.scr node."""
    _register_schema()
    opset = osv.Opset(DOMAIN, VERSION)
    node = osv.Op(opset, _OP_NAME, onnx.defs.get_schema(_OP_NAME, VERSION, DOMAIN))

    def translate(hidden, visual_positions, scr_map, lam: float):
        return node(hidden, visual_positions, scr_map, lam=lam)

    return {torch.ops.scr.redistribute.default: translate}
