"""Yes/no parsing for the benchmarks: the answer rules of the reference scripts by name (``scr_core.yes_no``,
re-exported here) and the ground-truth labels of the benchmark files.
"""

from __future__ import annotations

from ..yes_no import LABELS, NO, RULES, UNKNOWN, YES, available_rules, get_rule, parse_many, parse_yes_no

__all__ = ["LABELS", "NO", "RULES", "UNKNOWN", "YES", "available_rules", "get_rule", "normalize_label", "parse_many",
           "parse_yes_no"]


def normalize_label(value: object, source: str = "") -> str:
    """A ground-truth label as ``"yes"``/``"no"``; accepts yes/no in any case and 1/0 (HallusionBench).

    Raises ``ValueError`` for anything else; readers wrap it in a ``DataError`` naming the file.
    """
    s = str(value).strip().lower()
    if s in (YES, "1", "true"):
        return YES
    if s in (NO, "0", "false"):
        return NO
    where = f" in {source}" if source else ""
    raise ValueError(f"ground-truth label {value!r}{where} is not yes/no")
