"""The loaders: Load VLM (a transformers checkpoint under ComfyUI's memory manager) and Load ONNX VLM
(an exported folder run by onnxruntime), both onto the one ``VLM_MODEL`` socket."""

from __future__ import annotations

from comfy_api.latest import io

from .model_folders import (BUNDLED, NOT_DOWNLOADED, model_choices, model_path, onnx_choices, onnx_path,
                            same_model_choice)
from .checks import problem
from .shared import CATEGORY, Choice, Node, VLMModel


def _family_inputs() -> list:
    """One optional widget per option the adapters declare (0 = the family's default)."""
    from scr_core import declared_options

    widgets = []
    for name, (option, families) in declared_options().items():
        widgets.append(io.Int.Input(name, default=int(option.default or 0), min=0,
                                    max=option.maximum if option.maximum is not None else 1 << 30, optional=True,
                                    tooltip=f"{option.help} (only for {', '.join(families)}; 0 = default)"))
    return widgets


def _quantization_tooltip() -> str:
    from scr_core.loading import bitsandbytes_missing

    from .handle import handle_statuses

    missing = bitsandbytes_missing()
    if missing:
        return f"unavailable here: {missing}"
    loaded = [f"{m['name']} {m['bytes'] / 2**20:,.1f} MiB ({m['quantization'] or 'not quantized'})"
              for m in handle_statuses() if m.get("bytes")]
    return ("bitsandbytes: 8bit ≈ half of fp16's bytes, 4bit (NF4) ≈ a third; the vision tower, projector and "
            "LM head stay unquantized. Loaded now (also GET /scr/models): " + ("; ".join(loaded) or "none"))


def _model_tooltip() -> str:
    from scr_core.known_models import KNOWN_MODELS

    present = {c for c in model_choices() if not c.endswith(NOT_DOWNLOADED)}
    return ("a checkpoint folder under models/LLM (the bundled testbed needs no download), or a known hub model: "
            "one marked not downloaded is downloaded into models/LLM/<owner>--<name> when the server was started "
            "with SCR_ALLOW_DOWNLOADS=1 (a restart turns it on). Known: "
            + "; ".join(f"{m.hub_id} ({'present' if m.hub_id in present else 'not downloaded'}): {m.note}"
                        for m in KNOWN_MODELS))


class LoadVLM(Node):
    @classmethod
    def validate_inputs(cls, model=None) -> bool | str:
        """The model combo stays ComfyUI's unchecked ``COMBO``: a known hub model is accepted with either
        mark (downloaded or not), so a workflow saved before a download still runs after it."""
        return problem(cls.define_schema().inputs, {"model": same_model_choice(model)}) or True

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRLoadVLM", display_name="Load VLM (SCR)", category=CATEGORY,
            description="Load a vision-language model from models/LLM (or a path) for SCR captioning.",
            inputs=[
                io.Combo.Input("model", options=model_choices(), default=BUNDLED,
                               tooltip=_model_tooltip()),
                io.String.Input("path", default="", optional=True,
                                tooltip="optional: a checkpoint folder under models/LLM or SCR_ALLOWED_FOLDERS, "
                                        "or a hub id (owner/name)"),
                io.Boolean.Input("download_from_hub", default=False, optional=True,
                                 tooltip="download a hub id into models/LLM/<owner>--<name> (only when the server "
                                         "runs with SCR_ALLOW_DOWNLOADS=1, never with HF_HUB_OFFLINE)"),
                Choice("dtype", options=["auto", "fp16", "bf16", "fp32"], default="auto"),
                Choice("device", options=["auto", "cuda", "cpu", "mps"], default="auto"),
                Choice("attention", options=["sdpa", "eager", "flash_attention_2"], default="sdpa"),
                io.Boolean.Input("keep_loaded", default=True,
                                 tooltip="keep the model on the GPU between runs (ComfyUI may still offload it "
                                         "when another model needs the memory)"),
                *_family_inputs(),
                # last: saved UI workflows fill widgets by position, so a new widget goes after the others
                Choice("quantization", options=["none", "8bit", "4bit"], default="none", optional=True,
                       tooltip=_quantization_tooltip()),
            ],
            outputs=[VLMModel.Output(display_name="vlm")],
        )

    @classmethod
    def execute(cls, model, dtype, device, attention, keep_loaded, path="", download_from_hub=False,
                quantization="none", **family) -> io.NodeOutput:
        import comfy.model_management as mm

        from scr_core import LoadOptions, SCRPipeline, declared_options

        from .memory import VLMHandle

        cls.recheck(dict(family, model=same_model_choice(model), dtype=dtype, device=device, attention=attention,
                         quantization=quantization))
        source = model_path(model, path, download_from_hub)
        load_device = mm.get_torch_device() if device == "auto" else device
        options = {name: value for name, value in family.items()
                   if name in declared_options() and value and value != (declared_options()[name][0].default or 0)}
        dtype_name = None if dtype == "auto" else {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}[dtype]
        pipe = SCRPipeline.from_pretrained(source, LoadOptions(
            dtype=dtype_name, device=str(load_device), attn_implementation=attention,
            local_files_only=not download_from_hub, adapter_options=options, quantization=quantization))
        # bitsandbytes weights stay where they were loaded: ComfyUI does not move a quantized model
        offload = pipe.device if quantization != "none" else mm.unet_offload_device()
        return io.NodeOutput(VLMHandle(pipe, (path or model).strip(), pipe.device, offload, keep_loaded))


class LoadOnnxVLM(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRLoadOnnxVLM", display_name="Load ONNX VLM (SCR)", category=CATEGORY,
            description="Load a folder made by python -m export.onnx: the same VLM_MODEL, run by onnxruntime "
                        "(SCR baked into the graphs; greedy decoding).",
            inputs=[
                Choice("model", options=onnx_choices(), tooltip="an exported folder under models/LLM"),
                io.String.Input("path", default="", optional=True,
                                tooltip="optional: an exported folder under models/LLM or SCR_ALLOWED_FOLDERS"),
                Choice("provider", options=["auto", "cuda", "cpu"], default="auto",
                       tooltip="auto: CUDA when it really loads, else CPU"),
            ],
            outputs=[VLMModel.Output(display_name="vlm")],
        )

    @classmethod
    def execute(cls, model, provider, path="") -> io.NodeOutput:
        cls.recheck({"model": model, "provider": provider})
        folder = onnx_path(model, path)

        from export.runtime import OnnxVLM

        from .onnx_handle import OnnxHandle

        return io.NodeOutput(OnnxHandle(OnnxVLM(folder, provider=provider), (path or model).strip()))
