"""The fields of a benchmark JSON that the report reads, and a check that a document has them.

Why: the report renders from the JSON alone, possibly months later or from another machine;
a file that lacks a field must be refused with its name, not half-rendered. Paths are dotted;
``[]`` walks every element of a list; a trailing ``#`` means a statistics record (median,
quartiles, range, count). A section is required when the run's settings list it.
"""

from __future__ import annotations

import math

STATS = ("median", "p25", "p75", "min", "max", "n")

COMMON = (
    "schema", "duration_s",
    "settings.mode", "settings.device", "settings.dtype", "settings.lengths", "settings.batches",
    "settings.repeats", "settings.warmup", "settings.sections",
    "machine.date", "machine.cpu", "machine.logical_cores", "machine.torch_threads", "machine.python",
    "machine.torch", "machine.transformers", "machine.device", "machine.load_average_start",
    "machine.load_average_end",
    "model.source", "model.family", "model.depth", "model.visual_tokens", "model.diag_layers",
    "model.hook_layers", "model.k", "model.lam", "model.dtype",
)

METHODS = ("scr", "uniform", "vcd", "dola")
PARTS = ("vision_ms", "diagnostic_ms", "prefill_ms", "decode_ms_per_token")

SECTIONS = {
    "end_to_end": (
        "end_to_end[].batch", "end_to_end[].new_tokens",
        *(f"end_to_end[].ms.{v}#" for v in ("vanilla", "early_exit", "two_pass_limit", *METHODS)),
        *(f"end_to_end[].parts.{v}.{p}#" for v in ("vanilla", *METHODS) for p in PARTS),
        *(f"end_to_end[].ratios.{r}#" for r in ("scr/vanilla", "scr/two_pass_limit", "two_pass_limit/vanilla",
                                                 "diagnostic/prefill", "uniform/vanilla", "vcd/vanilla",
                                                 "dola/vanilla")),
        *(f"end_to_end[].overhead_ms.{m}#" for m in METHODS),
        *(f"end_to_end[].overhead_ms_per_token.{m}#" for m in METHODS),
    ),
    "diagnostic": (
        "diagnostic[].batch", "diagnostic[].memory_method", "diagnostic[].naive_max_abs_diff",
        *(f"diagnostic[].ms.{c}#" for c in ("diagnostic", "early_exit", "naive_eager", "prefill")),
        *(f"diagnostic[].ratios.{c}/prefill#" for c in ("diagnostic", "early_exit", "naive_eager")),
        *(f"diagnostic[].peak_bytes.{c}" for c in ("diagnostic", "early_exit", "naive_eager", "prefill")),
        *(f"diagnostic[].memory_ratios.{c}/prefill" for c in ("diagnostic", "early_exit", "naive_eager")),
    ),
    "decode_hooks": (
        "decode_hooks[].batch", "decode_hooks[].new_tokens", "decode_hooks[].hook_layers",
        "decode_hooks[].ms_per_token.hooks#", "decode_hooks[].ms_per_token.none#", "decode_hooks[].ratio#",
    ),
    "growth": (
        "growth[].axis", "growth[].label", "growth[].family", "growth[].visual_tokens", "growth[].depth",
        "growth[].new_tokens", "growth[].overhead_ms#",
        *(f"growth[].ms.{v}#" for v in ("vanilla", "scr", "early_exit", "two_pass_limit")),
        *(f"growth[].ratios.{r}#" for r in ("scr/vanilla", "scr/two_pass_limit", "two_pass_limit/vanilla",
                                             "diagnostic/prefill")),
    ),
    "throughput": ("throughput[].model", "throughput[].images", "throughput[].new_tokens",
                   "throughput[].images_per_s", "throughput[].speedup"),
    "onnx_runtime": ("onnx_runtime.status",),
    "video": (
        "video[].new_tokens", "video[].frames", "video[].slices", "video[].visual_tokens", "video[].depth",
        "video[].read_ms",
        *(f"video[].ms.{v}#" for v in ("vanilla", "scr", "early_exit", "two_pass_limit")),
        *(f"video[].ratios.{r}#" for r in ("scr/vanilla", "scr/two_pass_limit", "two_pass_limit/vanilla",
                                            "diagnostic/prefill")),
    ),
    "scale_out": ("scale_out.status",),
}

# The scale-out section's fields once it has measured (a skipped run holds status and reason).
SCALE_OUT_MEASURED = (
    "scale_out.model", "scale_out.rounds", "scale_out.images", "scale_out.batch", "scale_out.max_new_tokens",
    "scale_out.torch_threads_one_process", "scale_out.cpus_per_actor", "scale_out.cells[].variant",
    "scale_out.cells[].actors", *(f"scale_out.cells[].{what}#" for what in (
        "items_per_s", "first_batch_s", "steady_items_per_s", "vs_one_process")),
)

# The ONNX Runtime section's fields once it has measured (a skipped run holds status and reason).
ONNX_MEASURED = (
    "onnx_runtime.provider", "onnx_runtime.threads", "onnx_runtime.ratio#",
    "onnx_runtime.cells[].batch", "onnx_runtime.cells[].new_tokens", "onnx_runtime.cells[].ratio#",
    *(f"onnx_runtime.cells[].{what}.{side}#" for what in ("ms", "prefill_ms", "decode_tokens_per_s")
      for side in ("pytorch", "onnxruntime")),
    "onnx_runtime.memory.method", "onnx_runtime.memory.torch_weights_mib", "onnx_runtime.memory.disk_mib",
    *(f"onnx_runtime.memory.{kind}_{what}" for kind in ("scr", "plain") for what in ("sessions_mib", "peak_rss_mib")),
)

# The int4 rows (runs before them have no ``onnx_runtime.int4``).
ONNX_INT4 = ("onnx_runtime.int4.block_size", "onnx_runtime.int4.parts", "onnx_runtime.cells[].ratio_int4#",
             *(f"onnx_runtime.cells[].{what}.onnxruntime_int4#"
               for what in ("ms", "prefill_ms", "decode_tokens_per_s")),
             "onnx_runtime.memory.disk_mib.int4_decoder")

# Fields that may hold null (memory where the platform cannot measure it).
NULLABLE = ("diagnostic[].peak_bytes.", "diagnostic[].memory_ratios.", "diagnostic[].memory_method")


def problems(doc) -> list[str]:
    """Every required field that is missing or malformed, as readable paths; empty when the document is fine."""
    if not isinstance(doc, dict):
        return ["the document is not a JSON object"]
    found = [p for path in COMMON for p in _check(doc, path)]
    if found:
        return found
    for section in doc["settings"]["sections"]:
        if section not in SECTIONS:
            found.append(f"settings.sections names an unknown section {section!r}")
            continue
        if section not in doc:
            found.append(f"{section}: missing (the settings say it ran)")
            continue
        found += [p for path in SECTIONS[section] for p in _check(doc, path)]
        if section == "onnx_runtime" and doc[section].get("status") == "measured":
            found += [p for path in ONNX_MEASURED for p in _check(doc, path)]
            if "int4" in doc[section]:
                found += [p for path in ONNX_INT4 for p in _check(doc, path)]
        if section == "scale_out" and doc[section].get("status") == "measured":
            found += [p for path in SCALE_OUT_MEASURED for p in _check(doc, path)]
    return found


def _check(doc, path: str) -> list[str]:
    stats = path.endswith("#")
    path = path.rstrip("#")
    nullable = any(path.startswith(prefix) for prefix in NULLABLE)
    out = []
    for where, value in _resolve(doc, path.split("."), ""):
        if value is _MISSING:
            out.append(f"{where}: missing")
        elif value is None:
            if not nullable:
                out.append(f"{where}: null")
        elif stats:
            out += [f"{where}.{key}: missing or not a finite number" for key in STATS
                    if not (isinstance(value, dict) and _finite(value.get(key)))]
    return out


_MISSING = object()


def _resolve(node, parts: list[str], where: str):
    if not parts:
        yield where, node
        return
    head, rest = parts[0], parts[1:]
    is_list = head.endswith("[]")
    key = head[:-2] if is_list else head
    # keys may contain "/" (ratio names); they never contain "."
    here = f"{where}.{key}" if where else key
    value = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
    if not is_list or value is _MISSING:
        if value is _MISSING or not rest:
            yield here, value
        else:
            yield from _resolve(value, rest, here)
        return
    if not isinstance(value, list) or not value:
        yield here, _MISSING
        return
    for index, item in enumerate(value):
        yield from _resolve(item, rest, f"{here}[{index}]")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
