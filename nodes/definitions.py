"""The pack's ComfyUI nodes (V3 schema): thin wrappers that convert ComfyUI types and call ``scr_core``.

torch and transformers load inside ``execute`` (a pack's import time is everyone's start-up time);
every error a user can cause is an ``SCRError`` whose message ComfyUI shows on the node.
``validate_inputs`` methods name only the inputs they check: an input in their signature (or any,
with ``**kwargs``) skips ComfyUI's own min/max and combo checks, so every node derives from ``Node``,
whose ``validate_inputs(**values)`` checks every combo and number against the node's current schema
(``checks``) before the node's own ``check_more``; ``execute`` checks again (linked values are only
known then). Folders and paths follow ``scr_core.allowed``.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

from comfy_api.latest import io, ui

from scr_core import CAPTION_PROMPT, SCRConfig, SCRError, parse_layer_ranges
from scr_core.runner import RUNNER_DEFAULT

from .checks import problem, require
from .convert import first, images_to_pils, pils_to_tensor, tensor_to_pils
from .paths import caption_targets, list_images, write_captions

CATEGORY = "SCR (Spatial Credit Redistribution)"
BUNDLED = "testbed (bundled, no download)"
# VLM_MODEL: a handle (nodes.memory.VLMHandle, nodes.onnx_handle.OnnxHandle) whose ``use()`` yields a
# scr_core.runner.VLMRunner (SCRPipeline or OnnxVLM): the nodes call only what that protocol offers.
VLMModel = io.Custom("VLM_MODEL")
SCRSettingsType = io.Custom("SCR_CONFIG")
SCRPlanType = io.Custom("SCR_PLAN")


# -- model folders ---------------------------------------------------------------------------
def llm_folders() -> list[str]:
    """``models/LLM`` (shared with other caption packs; ``extra_model_paths.yaml`` can add more)."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, "LLM")
    if "LLM" not in folder_paths.folder_names_and_paths or default not in folder_paths.get_folder_paths("LLM"):
        folder_paths.add_model_folder_path("LLM", default)
    return folder_paths.get_folder_paths("LLM")


NOT_DOWNLOADED = " (not downloaded)"


def model_choices() -> list[str]:
    """The bundled testbed first (every shipped workflow runs offline), then each checkpoint folder
    (one with config.json) under the LLM folders, one or two levels deep, then the curated hub models
    (``scr_core.known_models``) by hub id, marked as not downloaded until their folder is there."""
    from scr_core.known_models import KNOWN_MODELS

    known = {m.folder: m.hub_id for m in KNOWN_MODELS}
    names = []
    for root in llm_folders():
        base = Path(root)
        if not base.is_dir():
            continue
        for config in sorted(list(base.glob("*/config.json")) + list(base.glob("*/*/config.json"))):
            name = config.parent.relative_to(base).as_posix()
            names.append(known.get(name, name))
    present = set(names)
    hub = [m.hub_id if m.hub_id in present else m.hub_id + NOT_DOWNLOADED for m in KNOWN_MODELS]
    return [BUNDLED, *dict.fromkeys(n for n in names if n not in known.values()), *hub]


def known_choice(choice: str) -> str | None:
    """The hub id a combo value names (with or without the not-downloaded mark: a saved workflow keeps
    working after the download), else ``None``."""
    from scr_core.known_models import KNOWN_MODELS

    hub_id = str(choice).removesuffix(NOT_DOWNLOADED)
    return hub_id if any(m.hub_id == hub_id for m in KNOWN_MODELS) else None


def same_model_choice(choice):
    """``choice`` as the current combo spells it, so validation accepts either mark of a known model."""
    hub_id = known_choice(choice) if isinstance(choice, str) else None
    if hub_id is None:
        return choice
    return next(c for c in model_choices() if known_choice(c) == hub_id)


def onnx_choices() -> list[str]:
    """Exported folders (with scr_config.json) under the LLM folders, one or two levels deep."""
    from export.folder_config import CONFIG_NAME

    names = []
    for root in llm_folders():
        base = Path(root)
        if base.is_dir():
            for config in sorted(list(base.glob(f"*/{CONFIG_NAME}")) + list(base.glob(f"*/*/{CONFIG_NAME}"))):
                names.append(config.parent.relative_to(base).as_posix())
    return list(dict.fromkeys(names)) or ["(no exported folder in models/LLM)"]


def io_folders() -> list:
    """Where a posted workflow may read images and write captions (``scr_core.allowed``)."""
    import folder_paths

    from scr_core.allowed import allowed_folders

    return allowed_folders([folder_paths.get_input_directory(), folder_paths.get_output_directory()])


def user_folder(text: str) -> str | Path:
    """A folder a workflow names: a relative one is inside ComfyUI's input folder (so a shipped workflow can
    name ``scr_testbed``), an absolute one as given; ``scr_core.allowed`` decides if it may be used."""
    import folder_paths

    raw = str(text or "").strip()
    if not raw or Path(raw).expanduser().is_absolute():
        return raw
    return Path(folder_paths.get_input_directory()) / raw


def model_folders() -> list[str]:
    """Where models may load from: the LLM folders and the bundled testbed (plus ``SCR_ALLOWED_FOLDERS``,
    added by ``check_model_folder``) — never ``input/``, which any client can upload to."""
    from scr_core import default_model

    return [*llm_folders(), str(Path(default_model()[0]).parent)]


HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def model_path(choice: str, path: str, download: bool) -> str:
    """The folder to load: the free path (a folder inside the model folders, or with ``download`` a hub
    id) when given, else the combo's choice."""
    from scr_core import ModelLoadError, default_model
    from scr_core.allowed import check_model_folder

    text = (path or "").strip()
    if text and download:
        return _download(text)
    if text:
        local = Path(text).expanduser()
        candidates = [local] if local.is_absolute() else [Path(root) / local for root in llm_folders()]
        for candidate in candidates:
            folder = check_model_folder(candidate, model_folders())
            if folder.is_dir():
                return str(folder)
        return _missing(text)
    if choice == BUNDLED:
        return str(default_model()[0])
    if hub_id := known_choice(choice):
        return _download(hub_id)  # its own folder is used without network once there
    for root in llm_folders():
        candidate = Path(root) / choice
        if (candidate / "config.json").is_file():
            return str(check_model_folder(candidate, model_folders()))
    raise ModelLoadError(f"model {choice!r} is not in any LLM folder ({', '.join(llm_folders())})")


def _missing(text: str) -> str:
    from scr_core import ModelLoadError

    raise ModelLoadError(f"model folder not found: {text}. For a hub id (owner/name), turn on download_from_hub "
                         "(the model is then saved under models/LLM/<owner>--<name>)")


def _download(repo_id: str) -> str:
    """A hub model in its own folder ``models/LLM/<owner>--<name>`` — only when the server's owner allows
    downloads (``SCR_ALLOW_DOWNLOADS=1``) and never offline. A complete folder already there is used
    without the network, anything else there is refused; the download goes to a staging folder,
    renamed when complete, and stops on ComfyUI's interrupt (see ``download``)."""
    from scr_core import ModelLoadError
    from scr_core.allowed import DOWNLOADS_ENV, downloads_allowed
    from scr_core.known_models import hub_folder

    from .download import download

    if not HUB_ID.fullmatch(repo_id) or ".." in repo_id:
        raise ModelLoadError(f"{repo_id!r} is not a hub id (owner/name); a local model folder goes in path with "
                             "download_from_hub off")
    folders = [Path(root) / hub_folder(repo_id) for root in llm_folders()]
    target = next((f for f in folders if f.exists()), folders[0])
    if target.exists():
        if (target / "config.json").is_file():
            return str(target)  # downloaded before (or put there by hand): no network
        raise ModelLoadError(f"{target} exists but holds no complete checkpoint (no config.json); remove it "
                             "to download again")
    if not downloads_allowed():
        raise ModelLoadError(f"{repo_id}: this server does not download models (its owner can allow it by starting "
                             f"ComfyUI with {DOWNLOADS_ENV}=1); put the model folder under models/LLM/{target.name} "
                             "instead")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelLoadError(f"{repo_id}: HF_HUB_OFFLINE is set, so nothing is downloaded; put the model folder "
                             f"under models/LLM/{target.name}")
    return str(download(repo_id, target))


# -- nodes -------------------------------------------------------------------------------------
class Node(io.ComfyNode):
    """The pack's nodes: every combo and number a workflow sends is checked against the current schema."""

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return problem(cls.define_schema().inputs, values) or cls.check_more(**values)

    @classmethod
    def check_more(cls, **values) -> bool | str:
        """A node's own checks of its (unlinked) values: ``True`` or one line."""
        return True

    @classmethod
    def recheck(cls, values: dict) -> None:
        """The schema checks again in ``execute``, where linked values are known."""
        require(cls.define_schema().inputs, values)


def _family_inputs() -> list:
    """One optional widget per option the adapters declare (0 = the family's default)."""
    from scr_core import declared_options

    widgets = []
    for name, (option, families) in declared_options().items():
        widgets.append(io.Int.Input(name, default=int(option.default or 0), min=0, max=1 << 30, optional=True,
                                    tooltip=f"{option.help} (only for {', '.join(families)}; 0 = default)"))
    return widgets


def _quantization_tooltip() -> str:
    from scr_core.loading import bitsandbytes_missing

    from .memory import handle_statuses

    missing = bitsandbytes_missing()
    if missing:
        return f"unavailable here: {missing}"
    loaded = [f"{m['name']} {m['bytes'] / 2**20:,.1f} MiB ({m['quantization'] or 'not quantized'})"
              for m in handle_statuses() if m.get("bytes")]
    return ("bitsandbytes: 8bit ≈ half of fp16's bytes, 4bit (NF4) ≈ a quarter; the vision tower, projector and "
            "LM head stay unquantized. Loaded now (also GET /scr/models): " + ("; ".join(loaded) or "none"))


def _model_tooltip() -> str:
    from scr_core.known_models import KNOWN_MODELS

    return ("a checkpoint folder under models/LLM (the bundled testbed needs no download), or a known hub model: "
            "one marked not downloaded is downloaded into models/LLM/<owner>--<name> when the server allows "
            "downloads (SCR_ALLOW_DOWNLOADS=1). Known: " + "; ".join(f"{m.hub_id}: {m.note}" for m in KNOWN_MODELS))


class LoadVLM(Node):
    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        if "model" in values:
            values["model"] = same_model_choice(values["model"])
        return super().validate_inputs(**values)

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
                io.Combo.Input("dtype", options=["auto", "fp16", "bf16", "fp32"], default="auto"),
                io.Combo.Input("device", options=["auto", "cuda", "cpu", "mps"], default="auto"),
                io.Combo.Input("attention", options=["sdpa", "eager", "flash_attention_2"], default="sdpa"),
                io.Boolean.Input("keep_loaded", default=True,
                                 tooltip="keep the model on the GPU between runs (ComfyUI may still offload it "
                                         "when another model needs the memory)"),
                *_family_inputs(),
                # last: saved UI workflows fill widgets by position, so a new widget goes after the others
                io.Combo.Input("quantization", options=["none", "8bit", "4bit"], default="none", optional=True,
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
                io.Combo.Input("model", options=onnx_choices(), tooltip="an exported folder under models/LLM"),
                io.String.Input("path", default="", optional=True,
                                tooltip="optional: an exported folder under models/LLM or SCR_ALLOWED_FOLDERS"),
                io.Combo.Input("provider", options=["auto", "cuda", "cpu"], default="auto",
                               tooltip="auto: CUDA when it really loads, else CPU"),
            ],
            outputs=[VLMModel.Output(display_name="vlm")],
        )

    @classmethod
    def execute(cls, model, provider, path="") -> io.NodeOutput:
        from export.runtime import OnnxVLM

        from scr_core import ModelLoadError
        from scr_core.allowed import check_model_folder

        from .onnx_handle import OnnxHandle

        cls.recheck({"model": model, "provider": provider})
        folder = Path(path.strip()).expanduser() if (path or "").strip() else None
        if folder is None:
            folder = next((Path(root) / model for root in llm_folders() if (Path(root) / model).is_dir()), None)
        if folder is not None:
            folder = check_model_folder(folder, model_folders())
        if folder is None or not folder.is_dir():
            raise ModelLoadError(f"exported folder not found: {path or model}; make one with "
                                 "python -m export.onnx --out models/LLM/<name>")
        return io.NodeOutput(OnnxHandle(OnnxVLM(folder, provider=provider), (path or model).strip()))


class Settings(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRSettings", display_name="SCR Settings", category=CATEGORY,
            description="Spatial Credit Redistribution settings (defaults: the paper's).",
            inputs=[
                io.Int.Input("k", default=SCRConfig.k, min=1, max=4096, tooltip="source patches per image grid"),
                io.Float.Input("lam", default=SCRConfig.lam, min=1.0, max=4.0, step=0.01, round=0.001,
                               tooltip="λ: sources × 1/λ, each neighbour + (λ−1)·h_source"),
                io.String.Input("diag_layers", default="", tooltip="e.g. 8-16; blank = the paper's"),
                io.String.Input("hook_layers", default="", tooltip="e.g. 0-11; blank = the family's default"),
                io.Combo.Input("selection", options=["attention", "uniform"], default="attention",
                               tooltip="uniform = the Uniform-Smooth ablation (random sources)"),
                io.Combo.Input("query", options=["post_image", "last"], default="post_image",
                               tooltip="which text tokens' attention forms the map"),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="seed of the uniform ablation"),
            ],
            outputs=[SCRSettingsType.Output(display_name="scr_config")],
        )

    @classmethod
    def check_more(cls, diag_layers="", hook_layers="", **_):
        for name, text in (("diag_layers", diag_layers), ("hook_layers", hook_layers)):
            try:
                parse_layer_ranges(text)
            except SCRError as err:
                return f"{name}: {err}"
        return True

    @classmethod
    def execute(cls, k, lam, diag_layers, hook_layers, selection, query, seed) -> io.NodeOutput:
        cls.recheck({"k": k, "lam": lam, "selection": selection, "query": query, "seed": seed})
        return io.NodeOutput(SCRConfig(k=k, lam=float(lam), diag_layers=parse_layer_ranges(diag_layers),
                                       hook_layers=parse_layer_ranges(hook_layers), selection=selection,
                                       query=query, seed=seed))


def _instruction(text: str) -> str:
    from scr_core import check_prompt

    return check_prompt(text)


def _heatmaps(images, diagnoses):
    """One heatmap per diagnosis over its prompt's images (``images[i]``); one IMAGE batch when they share a size."""
    from scr_core import render_heatmap

    maps = [render_heatmap(images[i], d) for i, d in enumerate(diagnoses)]
    shapes = {m.shape for m in maps}
    return pils_to_tensor(maps) if len(shapes) == 1 else pils_to_tensor(maps[:1])


class Diagnose(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRDiagnose", display_name="SCR Diagnose (heatmap)", category=CATEGORY,
            description="The diagnostic pass: where the model's attention collapses, which patches SCR will "
                        "spread it from (red) and to (cyan).",
            inputs=[VLMModel.Input("vlm"), io.Image.Input("image"),
                    io.String.Input("instruction", multiline=True, default=CAPTION_PROMPT),
                    SCRSettingsType.Input("scr_config", optional=True)],
            outputs=[SCRPlanType.Output(display_name="scr_plan"), io.Image.Output(display_name="heatmap"),
                     io.Float.Output(display_name="entropy"), io.String.Output(display_name="report")],
        )

    @classmethod
    def check_more(cls, instruction=None, **_):
        return _validate_instruction(instruction)

    @classmethod
    def execute(cls, vlm, image, instruction, scr_config=None) -> io.NodeOutput:
        pictures = tensor_to_pils(image)
        with vlm.use() as pipe:
            batch = pipe.prepare(pictures, _instruction(instruction))
            diagnoses = pipe.diagnose(batch, config=scr_config or RUNNER_DEFAULT)
        report = "\n".join(_report_line(i, d) for i, d in enumerate(diagnoses))
        entropy = sum(d.entropy for d in diagnoses) / len(diagnoses)
        return io.NodeOutput(tuple(d.plan for d in diagnoses), _heatmaps(batch.images, diagnoses), entropy, report,
                             ui=ui.PreviewText(report))


def _report_line(index: int, diagnosis) -> str:
    grids = ", ".join(f"{g.height}x{g.width}: {g.num_sources} sources, {len(g.neighbours)} neighbours"
                      for g in diagnosis.plan.grids)
    return (f"image {index}: entropy {diagnosis.entropy:.3f} nats; {grids}; "
            f"λ={diagnosis.plan.lam}, hook layers {diagnosis.plan.hook_layers[0]}-{diagnosis.plan.hook_layers[-1]}")


def _validate_instruction(instruction) -> bool | str:
    if isinstance(instruction, str) and not instruction.strip():
        return "instruction is empty: type a question or an instruction"
    return True


def _generate_inputs() -> list:
    return [
        io.Int.Input("max_new_tokens", default=64, min=1, max=4096),
        io.Boolean.Input("sample", default=False, tooltip="sampling instead of greedy decoding"),
        io.Float.Input("temperature", default=0.7, min=0.01, max=5.0, step=0.01),
        io.Float.Input("top_p", default=0.9, min=0.01, max=1.0, step=0.01),
        io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=True),
    ]


def _caption_inputs() -> list:
    """Preset, length and batch size of the caption nodes: optional, so workflows saved before them still run."""
    from scr_core import CAPTION_LENGTHS, CAPTION_PRESETS

    return [
        io.Combo.Input("preset", options=list(CAPTION_PRESETS), default="descriptive", optional=True,
                       tooltip="what to ask for: descriptive (the paper's one-sentence caption), short, detailed, "
                               "tags (comma-separated), training (a LoRA training caption) or custom (the "
                               "instruction as typed)"),
        io.Combo.Input("length", options=list(CAPTION_LENGTHS), default="any", optional=True,
                       tooltip="a length asked of the model, added to the preset's instruction"),
        io.Int.Input("batch_size", default=4, min=1, max=256, optional=True,
                     tooltip="images per model run (any sizes mix: the processor resizes each); more is faster "
                             "and takes more memory; greedy captions do not change with it"),
    ]


def _instruction_input() -> io.String.Input:
    return io.String.Input("instruction", multiline=True, default=CAPTION_PROMPT,
                           tooltip="the instruction for preset custom; the other presets ignore it")


def _caption_instruction(preset, length, instruction) -> str:
    """The instruction sent: the preset's (``scr_core.instruction_for``). A workflow saved before presets
    (no preset value) keeps its typed instruction."""
    from scr_core import instruction_for

    return instruction_for(preset or "custom", length or "any", instruction)


def _check_caption_values(preset, instruction) -> bool | str:
    """An empty instruction matters only when it is sent (preset custom, or no preset)."""
    return _validate_instruction(instruction) if preset in (None, "custom") else True


@contextmanager
def _interruptible():
    """Yields ComfyUI's interrupt check for ``should_stop``; a stop becomes ComfyUI's own interrupt."""
    import comfy.model_management as mm

    from scr_core import GenerationInterrupted

    try:
        yield mm.processing_interrupted
    except GenerationInterrupted:
        mm.throw_exception_if_processing_interrupted()
        raise


def _caption_all(pipe, pictures, instruction, scr, max_new_tokens, sample, temperature, top_p, seed, bar,
                 offset=0, total=None, batch_size=4):
    """Caption the pictures ``batch_size`` at a time (any sizes: the processor resizes each, prompts are
    left-padded), advancing ``bar`` by the batch's size every token and stopping within a token on
    ComfyUI's interrupt. ``scr``: a config, ``None``, or a tuple with one plan per picture. Sampling is
    seeded with ``seed`` + the index of the batch's first picture."""
    from transformers import set_seed

    total = total or len(pictures) * max_new_tokens
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if sample else {}
    plans = list(scr) if isinstance(scr, tuple) else None
    if plans is not None and len(plans) != len(pictures):
        raise SCRError(f"the SCR plan holds {len(plans)} plan(s) for {len(pictures)} image(s); diagnose the same "
                       "images you caption")
    texts = []
    for start in range(0, len(pictures), batch_size):
        chunk = pictures[start:start + batch_size]
        done = offset + start * max_new_tokens
        set_seed(seed + start)
        with _interruptible() as stop:
            results = pipe.caption(chunk, instruction, scr=plans[start:start + len(chunk)] if plans is not None
                                   else scr, max_new_tokens=max_new_tokens, should_stop=stop,
                                   progress=lambda step, n, done=done, size=len(chunk): bar.update_absolute(
                                       done + step * size, total),
                                   **sampling)
        texts.extend(r.text for r in results)
    return texts


class Caption(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRCaption", display_name="VLM Caption (SCR)", category=CATEGORY,
            description="Caption every image (a batch or a list of any sizes, batch_size at a time) as the preset "
                        "asks, with SCR when a config or plan is connected, else the vanilla model.",
            is_input_list=True, is_output_node=True,
            inputs=[VLMModel.Input("vlm"), io.Image.Input("image"), _instruction_input(),
                    SCRSettingsType.Input("scr_config", optional=True, tooltip="SCR with these settings"),
                    SCRPlanType.Input("scr_plan", optional=True, tooltip="SCR with a diagnosed plan"),
                    *_generate_inputs(),
                    io.Boolean.Input("join", default=False, tooltip="one text with a caption per line"),
                    *_caption_inputs()],
            outputs=[io.String.Output(display_name="captions", is_output_list=True)],
        )

    @classmethod
    def check_more(cls, instruction=None, preset=None, **_):
        return _check_caption_values(first(preset), first(instruction))

    @classmethod
    def execute(cls, vlm, image, instruction, max_new_tokens, sample, temperature, top_p, seed, join,
                scr_config=None, scr_plan=None, preset=None, length=None, batch_size=None) -> io.NodeOutput:
        import comfy.utils

        cls.recheck({"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
                     "preset": preset, "length": length, "batch_size": batch_size})
        prompt = _caption_instruction(first(preset), first(length), first(instruction))
        if scr_config and scr_plan:
            raise SCRError("connect either scr_config or scr_plan, not both")
        scr = tuple(p for plans in scr_plan for p in plans) if scr_plan else first(scr_config)
        pictures = images_to_pils(image)
        tokens = first(max_new_tokens)
        bar = comfy.utils.ProgressBar(len(pictures) * tokens)
        with first(vlm).use() as pipe:
            texts = _caption_all(pipe, pictures, prompt, scr, tokens, first(sample), first(temperature),
                                 first(top_p), first(seed), bar, batch_size=first(batch_size) or 4)
        out = ["\n".join(texts)] if first(join) else texts
        return io.NodeOutput(out, ui={"text": out})


class CaptionCompare(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRCaptionCompare", display_name="Caption Compare: vanilla vs SCR", category=CATEGORY,
            description="Vanilla and SCR captions of the same images (per batch one vision pass and one "
                        "diagnostic pass), side by side, with the heatmap.",
            is_output_node=True,
            inputs=[VLMModel.Input("vlm"), io.Image.Input("image"), _instruction_input(),
                    SCRSettingsType.Input("scr_config", optional=True),
                    io.Int.Input("max_new_tokens", default=64, min=1, max=4096), *_caption_inputs()],
            outputs=[io.String.Output(display_name="vanilla", is_output_list=True),
                     io.String.Output(display_name="scr", is_output_list=True),
                     io.String.Output(display_name="side_by_side"), io.Image.Output(display_name="heatmap")],
        )

    @classmethod
    def check_more(cls, instruction=None, preset=None, **_):
        return _check_caption_values(preset, instruction)

    @classmethod
    def execute(cls, vlm, image, instruction, max_new_tokens, scr_config=None, preset=None, length=None,
                batch_size=None) -> io.NodeOutput:
        import comfy.utils

        cls.recheck({"max_new_tokens": max_new_tokens, "preset": preset, "length": length, "batch_size": batch_size})
        prompt = _caption_instruction(preset, length, instruction)
        size = batch_size or 4
        pictures = tensor_to_pils(image)
        total = 2 * len(pictures) * max_new_tokens
        bar = comfy.utils.ProgressBar(total)
        vanilla, scr, images, diagnoses = [], [], [], []
        with vlm.use() as pipe:
            for start in range(0, len(pictures), size):
                batch = pipe.prepare(pictures[start:start + size], prompt)
                found = pipe.diagnose(batch, config=scr_config or RUNNER_DEFAULT)
                for phase, (texts, plans) in enumerate(((vanilla, None), (scr, [d.plan for d in found]))):
                    done = (2 * start + phase * batch.batch_size) * max_new_tokens
                    with _interruptible() as stop:
                        results = pipe.caption(batch, scr=plans, max_new_tokens=max_new_tokens, should_stop=stop,
                                               progress=lambda s, n, done=done, rows=batch.batch_size:
                                               bar.update_absolute(done + s * rows, total))
                    texts.extend(r.text for r in results)
                images.extend(batch.images)
                diagnoses.extend(found)
        side = "\n\n".join(f"image {i}\n  vanilla: {v}\n  SCR:     {s}" for i, (v, s) in enumerate(zip(vanilla, scr)))
        return io.NodeOutput(vanilla, scr, side, _heatmaps(images, diagnoses), ui=ui.PreviewText(side))


def folder_inputs(default: str) -> list:
    """The image-folder inputs of the folder nodes (``user_folder`` and ``list_images`` read them)."""
    return [io.String.Input("folder", default=default,
                            tooltip="a folder of images: relative to ComfyUI's input folder, or inside input, output "
                                    "or SCR_ALLOWED_FOLDERS"),
            io.String.Input("filter", default="", tooltip="e.g. *.png;*cat* (blank = every image)"),
            io.Boolean.Input("recursive", default=False)]


class LoadImageFolder(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRLoadImageFolder", display_name="Load Image Folder (SCR)", category=CATEGORY,
            description="Every image of a folder as a list (any sizes), sorted by path, with their paths "
                        "(folders inside input, output or SCR_ALLOWED_FOLDERS).",
            inputs=[*folder_inputs(""),
                    io.Int.Input("limit", default=0, min=0, max=1_000_000, tooltip="0 = all")],
            outputs=[io.Image.Output(display_name="images", is_output_list=True),
                     io.String.Output(display_name="paths", is_output_list=True)],
        )

    @classmethod
    def fingerprint_inputs(cls, folder, filter, recursive, limit):
        """Re-run when the folder's files change (names and modification times), not only the inputs."""
        try:
            return [(str(p), p.stat().st_mtime_ns)
                    for p in list_images(user_folder(folder), filter, recursive, limit, allowed=io_folders())]
        except (SCRError, OSError):
            return float("nan")

    @classmethod
    def execute(cls, folder, filter, recursive, limit) -> io.NodeOutput:
        from scr_core import load_image
        from scr_core.allowed import check_pixel_budget, folder_pixel_budget

        cls.recheck({"limit": limit})
        paths = list_images(user_folder(folder), filter, recursive, limit, allowed=io_folders())
        check_pixel_budget(paths, folder_pixel_budget())  # from the headers, before anything is decoded
        images = [pils_to_tensor([load_image(p)]) for p in paths]
        return io.NodeOutput(images, [str(p) for p in paths])


class SaveCaptions(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRSaveCaptions", display_name="Save Captions (SCR)", category=CATEGORY,
            description="Write each caption as a .txt file: beside its image (an image inside input, output or "
                        "SCR_ALLOWED_FOLDERS) or into ComfyUI's output folder. Never overwrites unless asked.",
            is_input_list=True, is_output_node=True,
            inputs=[io.String.Input("captions", force_input=True), io.String.Input("paths", force_input=True),
                    io.Combo.Input("mode", options=["beside images", "output folder"], default="beside images"),
                    io.String.Input("subfolder", default="captions", tooltip="inside the output folder"),
                    io.Boolean.Input("overwrite", default=False)],
            outputs=[io.String.Output(display_name="files", is_output_list=True)],
        )

    @classmethod
    def fingerprint_inputs(cls, **_):
        """Always runs: its result is the files on disk, so a re-queue after deleting them writes them again
        (and with them still there it says so instead of silently writing nothing)."""
        return float("nan")

    @classmethod
    def execute(cls, captions, paths, mode, subfolder, overwrite) -> io.NodeOutput:
        import folder_paths

        cls.recheck({"mode": mode})
        targets = caption_targets(paths, first(mode), folder_paths.get_output_directory(), first(subfolder),
                                  allowed=io_folders())
        written = [str(p) for p in write_captions(list(captions), targets, bool(first(overwrite)))]
        return io.NodeOutput(written, ui={"text": written})


def register_routes() -> None:
    """``GET /scr/models``: the loaded VLMs and whether ComfyUI counts them as loaded."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is None:
        return

    from .memory import handle_statuses

    @PromptServer.instance.routes.get("/scr/models")
    async def models(request):
        return web.json_response(handle_statuses())
