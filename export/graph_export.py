"""Trace each graph with the dynamo exporter (opset 23 by default, 18-21 on request) and save it onnxruntime-ready.

Per graph: ``torch.onnx.export(dynamo=True)`` on example inputs of batch 2 and past length 3 (a
batch or past of 1 would be specialised to a constant), the ``ai.scr``
FunctionProtos attached, the IR version lowered to what onnxruntime-gpu 1.31 reads,
and a check that every dimension meant to be dynamic came out symbolic.

Memory: the decoder graphs always keep their weights in ``NAME.onnx.data`` (as onnxruntime-genai's
``model.onnx.data``), other graphs past ``EXTERNAL_DATA_BYTES``. onnx_ir writes those tensors one at a
time into the data file and serialises the graph alone, so the functions and the IR version are set on a
weight-free proto; an inline graph would be held twice (its proto and its bytes). After a graph is
written, ``release`` empties the weights no later graph reads: an export holds about one part at a time.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import cast

import onnx
import onnx_ir as ir
import torch
from torch import nn
from torch.export import Dim

from scr_core import SCRError

from . import ops
from .dtypes import ExportDtype
from .folder_config import (EXTERNAL_DATA_BYTES, Decoder, DecoderGraph, FolderConfig, Graph, LayoutRule, Model,
                            Provenance)
from .graphs import FUSED_ATTENTION_OPSET, DecoderPart, Embedding, use_export_attention
from .release import release
from .torch_ops import translation_table

BATCH, SEQ, PAST = 2, 7, 3


class ExportFailed(SCRError):
    """A graph did not come out as required (e.g. a dimension specialised to a constant)."""


class GraphExporter:
    def __init__(self, pipe, family, cfg, opset: int) -> None:
        self.pipe, self.family, self.cfg, self.opset = pipe, family, cfg, opset
        self.model = pipe.model
        self.lm = pipe.adapter.language_model()
        self.text = self.lm.config
        self.depth = pipe.depth
        self.split = max(cfg.diag_layers)  # last layer of the head
        use_export_attention(pipe.adapter.decoder_config(), fused=opset >= FUSED_ATTENTION_OPSET)

    # -- graphs ------------------------------------------------------------------------
    def vision(self, path: Path) -> Graph:
        inputs, shapes = self.family.vision_example()
        return self._export(self.family.vision_module().eval(), inputs, shapes, list(inputs),
                            [self.family.vision_output],
                            path, dynamic={name: list(dims) for name, dims in shapes.items()})

    def embedding(self, path: Path) -> Graph:
        image_id = self.family.image_token_id()
        ids = torch.full((BATCH, SEQ), int(self.text.bos_token_id or 0), dtype=torch.long)
        ids[:, 2:4] = image_id
        features = torch.randn(4, self.text.hidden_size, dtype=self.model.dtype)
        module = Embedding(self.lm.get_input_embeddings(), image_id).eval()
        shapes = {"input_ids": {0: Dim("batch"), 1: Dim("sequence")}, "image_features": {0: Dim("image_tokens")}}
        return self._export(module, {"input_ids": ids, "image_features": features}, shapes,
                            ["input_ids", "image_features"], ["inputs_embeds"], path,
                            dynamic={"input_ids": [0, 1], "image_features": [0]})

    def release(self, later: tuple[str, ...]) -> int:
        """Empty every weight that none of the graphs ``later`` reads (the pipeline cannot run afterwards);
        returns the bytes dropped. ``later``: of ``embedding``, ``decoder_head``, ``decoder_tail``."""
        embed, layers = self.lm.get_input_embeddings(), list(self.lm.layers)
        head = {id(p) for layer in layers[:self.split + 1] for p in layer.parameters()}
        needs = {"embedding": {id(p) for p in embed.parameters()}, "decoder_head": head,
                 # the tail: the rest of the language model (its layers, final norm) and the LM head
                 "decoder_tail": {id(p) for p in self.lm.parameters()} - head - {id(p) for p in embed.parameters()}
                 | {id(p) for p in self.model.get_output_embeddings().parameters()}}
        keep = set().union(*(needs[name] for name in later))
        return release(p for p in self.model.parameters() if id(p) not in keep)

    def head(self, path: Path) -> DecoderGraph:
        part = DecoderPart(self.lm, 0, self.split, lm_head=None, hook_layers=self.cfg.hook_layers, lam=self.cfg.lam,
                           diag_layers=self.cfg.diag_layers).eval()
        return self._decoder(part, path, first=0, last=self.split, head=True)

    def tail(self, path: Path) -> DecoderGraph:
        part = DecoderPart(self.lm, self.split + 1, self.depth - 1, lm_head=self.model.get_output_embeddings(),
                           hook_layers=self.cfg.hook_layers, lam=self.cfg.lam,
                           suppressed_tokens=self.family.suppressed_tokens()).eval()
        return self._decoder(part, path, first=self.split + 1, last=self.depth - 1, head=False)

    def full_decoder(self, path: Path) -> DecoderGraph:
        """The whole decoder as one graph without SCR: the plain export that ``export.measure`` compares with."""
        part = DecoderPart(self.lm, 0, self.depth - 1, lm_head=self.model.get_output_embeddings(), hook_layers=(),
                           lam=1.0, suppressed_tokens=self.family.suppressed_tokens()).eval()
        return self._decoder(part, path, first=0, last=self.depth - 1, head=False)

    # -- helpers -----------------------------------------------------------------------
    def _decoder(self, part: DecoderPart, path: Path, first: int, last: int, head: bool) -> DecoderGraph:
        from .graphs import renumbered

        dtype = self.model.dtype
        kv_heads = self.text.num_key_value_heads
        head_dim = getattr(self.text, "head_dim", None) or self.text.hidden_size // self.text.num_attention_heads
        layers = range(first, last + 1)
        batch, seq, past_len = Dim("batch"), Dim("sequence"), Dim("past_sequence")
        total = PAST + SEQ
        mask = torch.ones(BATCH, total, dtype=torch.long)
        mask[0, :2] = 0  # a left-padded row, so the padding path is traced
        kwargs = {
            "inputs_embeds": torch.randn(BATCH, SEQ, self.text.hidden_size, dtype=dtype),
            "attention_mask": mask,
            "position_ids": self.family.position_example(BATCH, SEQ, PAST),
            "past": [torch.randn(BATCH, kv_heads, PAST, head_dim, dtype=dtype) for _ in range(2 * len(layers))],
        }
        shapes = {"inputs_embeds": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: Dim.DYNAMIC},
                  "position_ids": self.family.position_dims(batch, seq),
                  "past": [{0: batch, 2: past_len}] * (2 * len(layers))}
        past_names = [f"past_key_values.{i}.{kind}" for i in layers for kind in ("key", "value")]
        present_names = [f"present.{i}.{kind}" for i in layers for kind in ("key", "value")]
        names = ["inputs_embeds" if head else "hidden_state", "attention_mask", "position_ids", *past_names]
        if part.has_hooks or head:
            kwargs["visual_positions"] = torch.tensor([[3, 4, 5, 6], [4, 5, 6, -1]])
            kwargs["scr_map"] = torch.tensor([[-1, 4, 4, -1], [0, 0, -1, -1]])
            shapes["visual_positions"] = shapes["scr_map"] = {0: batch, 1: Dim("num_visual")}
            names += ["visual_positions", "scr_map"]
        if head:
            kwargs["query_start"] = torch.tensor([7, 8])
            shapes["query_start"] = {0: batch}
            names.append("query_start")
        outputs = (["hidden_state", "scr_scores"] if head else ["logits"]) + present_names
        dynamic = {"inputs_embeds" if head else "hidden_state": [0, 1], "attention_mask": [0, 1],
                   **{n: [0, 2] for n in past_names}}
        with renumbered(cast(nn.ModuleList, part.part.layers)):
            graph = self._export(part, kwargs, shapes, names, outputs, path, dynamic=dynamic, external=True)
        return DecoderGraph(**vars(graph), layers=(first, last), past_names=tuple(past_names),
                            present_names=tuple(present_names),
                            hook_layers=tuple(i for i in self.cfg.hook_layers if first <= i <= last))

    def _export(self, module, kwargs, shapes, input_names, output_names, path: Path, dynamic: dict,
                external: bool = False) -> Graph:
        """Trace ``module`` into ``path``; ``external``: weights in ``path.onnx.data`` whatever their size."""
        program = torch.onnx.export(module, (), kwargs=kwargs, dynamic_shapes=shapes, input_names=input_names,
                                    output_names=output_names, dynamo=True, opset_version=self.opset, optimize=True,
                                    custom_translation_table=translation_table(), verbose=False)
        assert program is not None  # dynamo=True returns the ONNXProgram
        weights = sum(v.const_value.nbytes for v in program.model.graph.initializers.values()
                      if v.const_value is not None)
        external = external or weights > EXTERNAL_DATA_BYTES
        if external:  # the tensors stream into the data file; the graph is read back without them
            program.save(path, external_data=True)
            del program
            model = onnx.load(str(path), load_external_data=False)
        else:
            model = ir.to_proto(program.model)
            del program
        if any(node.domain == ops.DOMAIN for node in model.graph.node):
            ops.attach_functions(model)
        model.ir_version = min(model.ir_version, ops.IR_VERSION)
        onnx.save(model, str(path))
        _check_dynamic(model, dynamic, path.name)
        return Graph(filename=path.name, inputs=tuple(i.name for i in model.graph.input),
                     outputs=tuple(o.name for o in model.graph.output), external_data=external)

    # -- scr_config.json -----------------------------------------------------------------
    def config(self, cfg, files: dict[str, Graph], dtype: ExportDtype) -> FolderConfig:
        """What ``scr_config.json`` records of this export."""
        import onnxruntime
        import transformers

        generation = self.model.generation_config
        eos = generation.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        head_dim = getattr(self.text, "head_dim", None) or self.text.hidden_size // self.text.num_attention_heads
        decoder = Decoder(head_size=head_dim, hidden_size=self.text.hidden_size,
                          num_attention_heads=self.text.num_attention_heads,
                          num_key_value_heads=self.text.num_key_value_heads, num_hidden_layers=self.depth,
                          past_key_names="past_key_values.%d.key", past_value_names="past_key_values.%d.value",
                          present_key_names="present.%d.key", present_value_names="present.%d.value",
                          head=cast(DecoderGraph, files["decoder_head"]),  # built by _decoder
                          tail=cast(DecoderGraph, files["decoder_tail"]),
                          position_ids=self.family.position_rule)
        model = Model(type=self.model.config.model_type, image_token_id=self.family.image_token_id(),
                      context_length=self.pipe.adapter.context_length(),
                      short_answer_suffix=self.pipe.adapter.short_answer_suffix, eos_token_id=tuple(eos),
                      pad_token_id=generation.pad_token_id if generation.pad_token_id is not None else (eos or [0])[0],
                      dtype=dtype.json, vision=files["vision"], embedding=files["embedding"], decoder=decoder,
                      select=Graph(filename="select.onnx", inputs=("scores", "grid_shape", "budgets"),
                                   outputs=("scr_map",)),
                      layout=LayoutRule.of(self.family.layout_rule()), processor=self.family.processor_rule())
        provenance = Provenance(opset=self.opset, ir_version=ops.IR_VERSION, torch=torch.__version__,
                                transformers=transformers.__version__, onnx=onnx.__version__,
                                onnxruntime=onnxruntime.__version__, python=platform.python_version())
        return FolderConfig(model=model, scr=cfg, scr_opset={ops.DOMAIN: ops.VERSION}, export=provenance)


def _check_dynamic(model: onnx.ModelProto, dynamic: dict, filename: str) -> None:
    """Raise if an axis meant to be dynamic was specialised to a number while tracing."""
    by_name = {i.name: i for i in model.graph.input}
    for name, axes in dynamic.items():
        dims = by_name[name].type.tensor_type.shape.dim
        fixed = [a for a in axes if dims[a].HasField("dim_value")]
        if fixed:
            raise ExportFailed(f"{filename}: input {name} has fixed size on axes {fixed}; the export would only run "
                               "at the example's shape (report this with your transformers version)")
