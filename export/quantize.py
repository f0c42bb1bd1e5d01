"""int4 weight-only quantization of exported graphs (``python -m export.onnx --dtype int4``).

Decode is memory-bound: a decoder in int4 reads a quarter of fp16's bytes per token (7B: ~4 GB
instead of ~14 GB), the format onnxruntime-genai ships by default for CPU and CUDA. onnxruntime's
own ``MatMulNBitsQuantizer`` rewrites each ``MatMul`` with a constant weight (every Linear) into a
``com.microsoft`` ``MatMulNBits`` with blockwise symmetric int4 weights; the ``ai.scr`` nodes and
functions, the diagnostic output and the activations (fp32, or fp16 for CUDA) are left as they were.
The LM head stays unquantized unless asked (its logits decide every greedy token); the vision
tower likewise (it runs once per image, not per token).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scr_core import ConfigError

from .folder_config import EXTERNAL_DATA_BYTES, Quantization

if TYPE_CHECKING:
    import onnx

BITS = 4
SYMMETRIC = True
ACCURACY_LEVEL = 4  # CPU: int8 activations inside MatMulNBits (onnxruntime-genai's CPU default); CUDA ignores it
DEFAULT_BLOCK_SIZE = 32
BLOCK_SIZES = (16, 32, 64, 128, 256)  # suggested when the asked one does not fit
GRAPHS = {"decoder": ("decoder_head", "decoder_tail"), "lm_head": ("decoder_tail",), "vision": ("vision",)}


@dataclass(frozen=True)
class Int4:
    """What gets quantized and how; recorded as ``model.quantization`` in ``scr_config.json``."""

    block_size: int = DEFAULT_BLOCK_SIZE
    parts: tuple[str, ...] = ("decoder",)

    def check(self, model: Path) -> None:
        """One ``ConfigError`` line unless every quantized width of ``model``'s config.json is a
        multiple of the block size (a power of two >= 16, what ``MatMulNBits`` takes)."""
        size = self.block_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 16 or size & (size - 1):
            raise ConfigError(f"--block-size must be a power of two >= 16 (got {size!r})")
        found = widths(model, self.parts)
        for name, width in found.items():
            if width % size:
                fits = [b for b in BLOCK_SIZES if all(w % b == 0 for w in found.values())]
                hint = f"--block-size {fits[-1]} divides every one" if fits else "no block size >= 16 divides them all"
                raise ConfigError(f"--block-size {size} does not divide {name} = {width} of {model}; {hint}")

    def graphs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g for part in self.parts for g in GRAPHS[part]))

    def record(self) -> Quantization:
        """``model.quantization`` in ``scr_config.json``."""
        return Quantization(bits=BITS, block_size=self.block_size, symmetric=SYMMETRIC, accuracy_level=ACCURACY_LEVEL,
                            parts=self.parts, op="com.microsoft.MatMulNBits")


def widths(model: Path, parts: tuple[str, ...]) -> dict[str, int]:
    """The input widths of the Linears to quantize, read from ``config.json`` (no weights read):
    the decoder's hidden, attention-output and MLP widths; the vision tower's when it is quantized."""
    from scr_core.loading import checkpoint_config, decoder_section

    config = checkpoint_config(model) or {}

    text, found = decoder_section(config), {}
    if text:
        heads, head_dim = text.get("num_attention_heads"), text.get("head_dim")
        found = {"hidden_size": text.get("hidden_size"), "intermediate_size": text.get("intermediate_size"),
                 "num_attention_heads x head_dim": heads * head_dim if isinstance(heads, int)
                 and isinstance(head_dim, int) else None}
    if "vision" in parts and isinstance(config.get("vision_config"), dict):
        vision = config["vision_config"]
        found |= {f"vision_config.{key}": vision.get(key) for key in ("hidden_size", "intermediate_size", "embed_dim")}
    return {name: w for name, w in found.items() if isinstance(w, int) and not isinstance(w, bool) and w > 0}


def lm_head_nodes(model: onnx.ModelProto, output: str = "logits") -> list[str]:
    """The MatMul(s) nearest to ``output`` walking back through the graph: the LM head (after it
    come only element-wise ops: the suppressed tokens' mask). Empty for a graph without ``output``."""
    producer = {out: node for node in model.graph.node for out in node.output}
    seen: set[int] = set()
    frontier = [output]
    found: list[str] = []
    while frontier and not found:
        following = []
        for name in frontier:
            node = producer.get(name)
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type == "MatMul":
                found.append(node.name)
            else:
                following.extend(node.input)
        frontier = following
    return found


def quantize_graph(path: Path, spec: Int4, keep_lm_head: bool) -> dict:
    """Rewrite ``path`` in place with int4 ``MatMulNBits``; large graphs keep their weights in
    ``NAME.onnx.data`` (those that had it, as the decoder graphs always do, and any past
    ``folder_config.EXTERNAL_DATA_BYTES``). Returns the graph's counts."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    stale = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    onnx.load_external_data_for_model(model, str(path.parent))  # the weights in memory: the old files may go
    excluded = lm_head_nodes(model) if keep_lm_head else []
    quantizer = _quantizer_class()(model, bits=BITS, block_size=spec.block_size, is_symmetric=SYMMETRIC,
                                   accuracy_level=ACCURACY_LEVEL, nodes_to_exclude=excluded)
    quantizer.process()
    model = quantizer.model.model
    for name in stale:
        (path.parent / Path(name).name).unlink(missing_ok=True)
    external = bool(stale) or sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_DATA_BYTES
    onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=f"{path.name}.data", size_threshold=1024)
    return {"matmul_nbits": sum(n.op_type == "MatMulNBits" for n in model.graph.node),
            "matmul_kept": excluded, "external_data": external}


def _quantizer_class():
    """onnxruntime's ``MatMulNBitsQuantizer``, imported without the ``logging.basicConfig(level=INFO)`` its
    module runs on import (the root logger is put back) and with its per-node INFO lines off."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    logging.getLogger(MatMulNBitsQuantizer.__module__).setLevel(logging.WARNING)
    return MatMulNBitsQuantizer
