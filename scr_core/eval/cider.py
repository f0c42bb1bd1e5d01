"""Optional CIDEr through ``pycocoevalcap``, the COCO caption toolkit.

Why: SCR reports CIDEr next to CHAIR to show captions stay good (docs/method.md §4.1). The official
scorer tokenises with the Stanford PTB tokenizer, which needs Java, and ``pycocoevalcap`` is not
a hard dependency; when either is missing ``cider_score`` returns ``None`` (and logs why)
instead of a number computed some other way.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)


def cider_unavailable_reason() -> str | None:
    """``None`` when CIDEr can be computed here, else a sentence saying what is missing."""
    if importlib.util.find_spec("pycocoevalcap") is None:
        return "pycocoevalcap is not installed (pip install pycocoevalcap)"
    if shutil.which("java") is None:
        return "java is not on PATH (pycocoevalcap's PTB tokenizer needs it)"
    return None


def cider_score(
    candidates: Mapping[int, str],
    references: Mapping[int, Sequence[str]],
) -> float | None:
    """Corpus CIDEr-D of one generated caption per image against its reference captions.

    Returns ``None`` when pycocoevalcap or Java is unavailable. Every candidate image must have
    references (``KeyError`` otherwise). The value is on pycocoevalcap's scale (papers multiply
    by 100: 1.085 is reported as 108.5).
    """
    reason = cider_unavailable_reason()
    if reason:
        log.warning("CIDEr skipped: %s", reason)
        return None
    if not candidates:
        raise ValueError("no captions to score")
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    missing = [i for i in candidates if not references.get(i)]
    if missing:
        raise KeyError(f"no reference captions for image ids {missing[:5]}")
    gts = {i: [{"caption": c} for c in references[i]] for i in candidates}
    res = {i: [{"caption": candidates[i]}] for i in candidates}
    tok = PTBTokenizer()
    score, _ = Cider().compute_score(tok.tokenize(gts), tok.tokenize(res))
    return float(score)
