"""What every node module shares: the menu category, the typed sockets, the ``Node`` base, the checked
combo (``Choice``), the ``validates`` decorator, and the widgets and caption helpers that several nodes offer.

Validation (ComfyUI v0.3.64): ComfyUI checks every number's min/max and every combo whose type is its list
of options, each failure once under its own input; it does not check V3 combos (type ``COMBO``), and it
skips its own checks of every input a ``validate_inputs`` names (all of them with ``**kwargs``), then
shows that function's failure under each input it names. So the pack's combos are ``Choice`` (typed by
their options, as core nodes' combos are), and a node's ``validate_inputs`` names only the inputs its own
check reads (``validates`` re-checks those against the schema); ``execute`` checks again (linked values
are only known then). torch and transformers load inside ``execute`` (a pack's import time is everyone's
start-up time); every error a user can cause is an ``SCRError`` whose message ComfyUI shows on the node.
"""

from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager

from comfy_api.latest import io

from scr_core import CAPTION_PROMPT, RedistributionPlan, SCRConfig

from .checks import problem, require
from .handle import ModelHandle

CATEGORY = "SCR (Spatial Credit Redistribution)"


@io.comfytype(io_type="VLM_MODEL")
class VLMModel(io.ComfyTypeIO):
    """A loaded VLM: a handle (``nodes.handle.ModelHandle``) whose ``use()`` yields a ``VLMRunner``."""

    Type = ModelHandle


@io.comfytype(io_type="SCR_CONFIG")
class SCRSettingsType(io.ComfyTypeIO):
    """The settings the Settings node makes."""

    Type = SCRConfig


@io.comfytype(io_type="SCR_PLAN")
class SCRPlanType(io.ComfyTypeIO):
    """Diagnose's plans: a tuple with one ``RedistributionPlan`` per image."""

    Type = tuple[RedistributionPlan, ...]


class Choice(io.Combo.Input):
    """A combo ComfyUI checks itself: its type is its list of options (as core nodes' combos are), so a
    posted value outside them is refused before anything runs, once, under this input."""

    def get_io_type(self):
        return list(self.options)


def validates(check):
    """``check(cls, <the inputs it reads>)`` as a node's ``validate_inputs``: ComfyUI passes it only the
    inputs its signature names and skips its own checks of those, so they are checked against the schema
    here first. The signature stays ``check``'s (ComfyUI reads it), so a failure is shown under those
    inputs only."""

    @functools.wraps(check)
    def validate_inputs(cls, **values) -> bool | str:
        return problem(cls.define_schema().inputs, values) or check(cls, **values)

    validate_inputs.__signature__ = inspect.signature(check)  # type: ignore[attr-defined]
    return classmethod(validate_inputs)


class Node(io.ComfyNode):
    """The pack's nodes: ``execute`` re-checks the schema's combos and numbers (linked values included)."""

    @classmethod
    def recheck(cls, values: dict) -> None:
        """The schema checks again in ``execute``, where linked values are known."""
        require(cls.define_schema().inputs, values)


def instruction_input() -> io.String.Input:
    return io.String.Input("instruction", multiline=True, default=CAPTION_PROMPT,
                           tooltip="the instruction for preset custom; the other presets ignore it")


def generate_inputs() -> list:
    return [
        io.Int.Input("max_new_tokens", default=64, min=1, max=4096),
        io.Boolean.Input("sample", default=False, tooltip="sampling instead of greedy decoding"),
        io.Float.Input("temperature", default=0.7, min=0.01, max=5.0, step=0.01),
        io.Float.Input("top_p", default=0.9, min=0.01, max=1.0, step=0.01),
        io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=True),
    ]


def caption_inputs() -> list:
    """Preset, length and batch size of the caption nodes: optional, so workflows saved before them still run."""
    from scr_core import CAPTION_LENGTHS, CAPTION_PRESETS
    from scr_core.defaults import TESTBED_PRESET_NOTE

    return [
        Choice("preset", options=list(CAPTION_PRESETS), default="descriptive", optional=True,
               tooltip="what to ask for: descriptive (the paper's one-sentence caption), short, detailed, "
                       "tags (comma-separated), training (a LoRA training caption) or custom (the "
                       f"instruction as typed). Note: {TESTBED_PRESET_NOTE}"),
        Choice("length", options=list(CAPTION_LENGTHS), default="any", optional=True,
               tooltip="a length asked of the model, added to the preset's instruction"),
        io.Int.Input("batch_size", default=4, min=1, max=256, optional=True,
                     tooltip="images per model run (any sizes mix: the processor resizes each); more is faster "
                             "and takes more memory; greedy captions do not change with it"),
    ]


def clip_inputs(video: bool = True) -> list:
    """How the caption nodes read video (``nodes.media``): optional, so workflows saved before them run as
    they did (every image of a batch captioned on its own). ``video``: the core ``VIDEO`` socket too."""
    from .media import IMAGE_BATCH_IS

    sampling = [
        io.Int.Input("frames", default=0, min=0, max=1024, optional=True,
                     tooltip="frames sampled from a clip, evenly spread; 0 = the family's default for a video, "
                             "every frame for an IMAGE batch taken as one clip"),
        io.Float.Input("fps", default=0.0, min=0.0, max=120.0, step=0.5, optional=True,
                       tooltip="frames sampled per second of video (at most frames, when set); 0 = off. A video "
                               "has its frame rate; an IMAGE batch has none"),
    ]
    if not video:
        return sampling
    return [Choice("image_batch_is", options=list(IMAGE_BATCH_IS), default=IMAGE_BATCH_IS[0], optional=True,
                   tooltip="one clip: the frames that arrive are one video clip, one caption (natively "
                           "video on Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision; a multi-image "
                           "prompt on the other families)"),
            io.Video.Input("video", optional=True, tooltip="a clip from core Load Video, in place of image: only "
                                                           "the sampled frames are decoded"),
            *sampling]


def caption_instruction(preset, length, instruction) -> str:
    """The instruction sent: the preset's (``scr_core.instruction_for``). A workflow saved before presets
    (no preset value) keeps its typed instruction."""
    from scr_core import instruction_for

    return instruction_for(preset or "custom", length or "any", instruction)


def preset_note_for(pipe, instruction: str) -> str | None:
    """``scr_core.defaults.preset_note`` for a runner: the checkpoint it loaded (an ONNX export has none,
    so it gets no note)."""
    from scr_core.defaults import preset_note

    return preset_note(getattr(getattr(pipe, "model", None), "name_or_path", None), instruction)


def check_instruction(instruction) -> bool | str:
    """An instruction typed in the widget: refused only when empty (``check_prompt`` has the rest)."""
    if isinstance(instruction, str) and not instruction.strip():
        return "instruction is empty: type a question or an instruction"
    return True


def check_caption_values(preset, instruction) -> bool | str:
    """An empty instruction matters only when it is sent (preset custom, or no preset)."""
    found = check_instruction(instruction) if preset in (None, "custom") else True
    return found if found is True or preset is None else f"{found} (preset custom sends it; or pick another preset)"


@contextmanager
def interruptible():
    """Yields ComfyUI's interrupt check for ``should_stop``; a stop becomes ComfyUI's own interrupt."""
    import comfy.model_management as mm

    from scr_core import GenerationInterrupted

    try:
        yield mm.processing_interrupted
    except GenerationInterrupted:
        mm.throw_exception_if_processing_interrupted()
        raise
