"""Spatial Credit Redistribution (SCR) for vision-language models.

Public API: ``SCRPipeline`` (load, diagnose, caption, answer), ``SCRConfig`` (the knobs),
``RedistributionPlan`` (what the redistribution does, per prompt), ``Diagnosis`` and
``GenerationResult`` (outputs), and the ``SCRError`` family.
"""

from .config import SCRConfig
from .errors import (ConfigError, DataError, InputError, LayoutError, ModelLoadError, SCRError,
                     UnsupportedModelError)
from .selection import GridPlan, RedistributionPlan

__version__ = "0.1.0"

__all__ = [
    "SCRConfig", "SCRPipeline", "RedistributionPlan", "GridPlan", "Diagnosis", "GenerationResult", "Timings",
    "SCRError", "ConfigError", "InputError", "ModelLoadError", "UnsupportedModelError", "LayoutError", "DataError",
]


def __getattr__(name):
    # torch and transformers load only when the pipeline is used (keeps `import scr_core` light).
    if name in ("SCRPipeline", "GenerationResult", "Timings"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "Diagnosis":
        from .diagnosis import Diagnosis

        return Diagnosis
    raise AttributeError(f"module 'scr_core' has no attribute {name!r}")
