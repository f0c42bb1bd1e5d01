"""SCR as an lmms-eval model (requirements-lmms.txt): ``python -m lmms_eval --model scr --model_args …``.

lmms-eval 0.7 finds it through the ``lmms_eval.models`` entry-point group (pyproject.toml), whose
payload is ``manifest`` below: kept import-light, since lmms-eval loads every plug-in's entry point
on each run; the model itself (``scr_core.lmms.model.SCRLmms``) is imported only when asked for.
"""

from __future__ import annotations

MODEL_ID = "scr"
CLASS_PATH = "scr_core.lmms.model.SCRLmms"


def manifest():
    """The ``ModelManifest`` lmms-eval registers: model id ``scr``, a "simple" (text + images) model."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(MODEL_ID, simple_class_path=CLASS_PATH)
