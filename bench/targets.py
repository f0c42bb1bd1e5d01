"""The performance targets (docs/performance.md), checked against a benchmark document (the report
states them; tests do not).

Each check takes the worst case over the measured cells and returns what was measured and
whether the target is met (None: not measured, or not applicable to this model).
"""

from __future__ import annotations


def evaluate(doc: dict) -> list[dict]:
    return [_limit(doc), _diagnostic_time(doc), _hooks(doc), _diagnostic_memory(doc), _peers(doc), _onnx(doc)]


def _row(target: str, measured: str, met: bool | None) -> dict:
    return {"target": target, "measured": measured, "met": met}


def _limit(doc):
    target = "end-to-end SCR within 5 % of the two-pass limit measured in the same run"
    cells = doc.get("end_to_end")
    if not cells:
        return _row(target, "not measured", None)
    worst = max(cells, key=lambda c: c["ratios"]["scr/two_pass_limit"]["median"])
    r = worst["ratios"]["scr/two_pass_limit"]
    excess = r["median"] - 1
    return _row(target, f"worst {excess * 100:+.1f} % (quartiles {(r['p25'] - 1) * 100:+.1f} .. "
                        f"{(r['p75'] - 1) * 100:+.1f} %, batch {worst['batch']}, {worst['new_tokens']} tokens)",
                excess <= 0.05)


def _diagnostic_time(doc):
    target = "diagnostic <= 0.56 x a vanilla prefill at 32 layers"
    cells = doc.get("diagnostic")
    if not cells:
        return _row(target, "not measured", None)
    worst = max(cells, key=lambda c: c["ratios"]["diagnostic/prefill"]["median"])
    ratio = worst["ratios"]["diagnostic/prefill"]["median"]
    depth, last = doc["model"]["depth"], max(doc["model"]["diag_layers"])
    measured = f"worst x{ratio:.3f} (batch {worst['batch']}; layers 0..{last} of {depth})"
    if depth != 32:
        return _row(target, measured + "; stated for 32 layers, not checked", None)
    return _row(target, measured, ratio <= 0.56)


def _hooks(doc):
    target = "hook overhead on decode steps <= 1 % (within noise)"
    cells = doc.get("decode_hooks")
    if not cells:
        return _row(target, "not measured", None)
    worst = max(cells, key=lambda c: c["ratio"]["median"])
    r = worst["ratio"]
    return _row(target, f"worst {(r['median'] - 1) * 100:+.2f} % (quartiles {(r['p25'] - 1) * 100:+.2f} .. "
                        f"{(r['p75'] - 1) * 100:+.2f} %, batch {worst['batch']})", r["median"] <= 1.01)


def _diagnostic_memory(doc):
    target = "diagnostic peak memory <= 1.1 x a vanilla prefill's"
    cells = doc.get("diagnostic")
    if not cells:
        return _row(target, "not measured", None)
    ratios = [(c["memory_ratios"]["diagnostic/prefill"], c["batch"]) for c in cells]
    if any(r is None for r, _ in ratios):
        return _row(target, "memory not measurable on this platform", None)
    ratio, batch = max(ratios)
    return _row(target, f"worst x{ratio:.2f} (batch {batch})", ratio <= 1.1)


def _peers(doc):
    target = "SCR overhead per token below VCD's and DoLa's at every length"
    cells = doc.get("end_to_end")
    if not cells:
        return _row(target, "not measured", None)
    below = [c for c in cells if all(c["overhead_ms_per_token"]["scr"]["median"]
                                     < c["overhead_ms_per_token"][peer]["median"] for peer in ("vcd", "dola"))]
    return _row(target, f"{len(below)} of {len(cells)} (batch, length) cells", len(below) == len(cells))


def _onnx(doc):
    target = "ONNX Runtime decode >= 1.0 x PyTorch tokens/s"
    section = doc.get("onnx_runtime")
    if not section or section.get("status") != "measured":
        return _row(target, "pending" if section else "not measured", None)
    worst = min(section["cells"], key=lambda c: c["ratio"]["median"])
    ratio = worst["ratio"]["median"]
    return _row(target, f"worst x{ratio:.2f} (batch {worst['batch']}, {section['provider']})", ratio >= 1.0)
