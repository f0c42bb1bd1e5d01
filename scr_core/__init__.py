"""Spatial Credit Redistribution (SCR) for vision-language models.

Public API (everything the CLI, the ComfyUI nodes and the ONNX exporter use):

* ``SCRPipeline`` — load (``LoadOptions``), ``prepare`` (a ``PreparedBatch``), ``diagnose``,
  ``caption`` / ``answer`` / ``generate`` (progress callback, stop check), ``early_exit`` (the
  two-pass floor benchmarks compare against), ``to``, ``release``;
* ``SCRConfig`` — the method's knobs;
* plans as data — ``RedistributionPlan`` / ``GridPlan`` (JSON round trip), ``plan_arrays`` →
  ``PlanArrays`` (the index arrays an exported graph takes), ``VisualLayout`` / ``VisualGrid``;
* results — ``Diagnosis``, ``GenerationResult``, ``Timings``;
* ``render_heatmap`` — a diagnosis drawn over its images (a clip: a strip of its slices), as an RGB array;
* video clips — ``Clip`` (a path or frames, with ``frames`` / ``fps`` sampling), accepted wherever an image
  is, and ``SampledClip`` (its sampled frames, what a ``PreparedBatch`` holds);
* adapters' declared options — ``AdapterOption``, ``declared_options``;
* input and output helpers the shells share with the CLI — ``load_image``, ``check_prompt``,
  ``CAPTION_PROMPT``, the caption presets (``CAPTION_PRESETS``, ``CAPTION_LENGTHS``, ``instruction_for``),
  ``parse_layer_ranges``, ``check_new_file``, ``write_atomically``,
  ``default_model`` (the bundled testbed);
* the ``SCRError`` family.

Everything except ``SCRPipeline``, ``PreparedBatch``, ``AdapterOption`` and ``declared_options``
imports without torch (the onnxruntime path uses the same plan and result types).
"""

from .config import SCRConfig, parse_layer_ranges
from .defaults import default_model
from .errors import (ConfigError, DataError, DependencyError, GenerationInterrupted, InputError, LayoutError,
                     MissingExtraError,
                     ModelLoadError, ReleasedError, SCRError, UnsupportedModelError)
from .heatmap import render_heatmap, save_heatmap
from .images import group_images, load_image
from .layout import VisualGrid, VisualLayout
from .loading import LoadOptions
from .outputs import check_new_file, write_atomically
from .plan import GridPlan, PlanArrays, RedistributionPlan, plan_arrays
from .prompts import CAPTION_LENGTHS, CAPTION_PRESETS, CAPTION_PROMPT, check_prompt, instruction_for
from .results import Diagnosis, GenerationResult, Timings, entropy_nats
from .video import Clip, SampledClip

__version__ = "0.1.0"

__all__ = [
    "SCRConfig", "SCRPipeline", "PreparedBatch", "LoadOptions", "RedistributionPlan", "GridPlan", "PlanArrays",
    "plan_arrays", "VisualLayout", "VisualGrid", "Diagnosis", "GenerationResult", "Timings", "render_heatmap",
    "save_heatmap", "AdapterOption", "declared_options", "load_image", "group_images", "entropy_nats", "check_prompt",
    "CAPTION_PROMPT",
    "CAPTION_PRESETS", "CAPTION_LENGTHS", "instruction_for", "Clip", "SampledClip",
    "parse_layer_ranges", "check_new_file", "write_atomically", "default_model",
    "SCRError", "ConfigError", "InputError", "ModelLoadError", "UnsupportedModelError", "LayoutError", "DataError",
    "DependencyError", "GenerationInterrupted", "ReleasedError", "MissingExtraError",
]

_TORCH_NAMES = {"SCRPipeline": "pipeline", "PreparedBatch": "pipeline", "AdapterOption": "adapters",
                "declared_options": "adapters"}


def __getattr__(name):
    # torch and transformers load only when the pipeline or the adapters are used (keeps `import scr_core` light).
    if name in _TORCH_NAMES:
        import importlib

        return getattr(importlib.import_module(f".{_TORCH_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'scr_core' has no attribute {name!r}")
