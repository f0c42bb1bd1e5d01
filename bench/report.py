"""docs/performance.md's tables, rendered as markdown from a benchmark JSON.

Why from the JSON alone: figures in the docs must be traceable to one run (its machine,
versions, threads and load are printed above the tables) and re-renderable without
re-measuring. Times are medians; "±" is half the interquartile range over the rounds.
"""

from __future__ import annotations

from . import targets

NAMES = {"vanilla": "vanilla", "scr": "SCR", "uniform": "Uniform-Smooth", "vcd": "VCD", "dola": "DoLa",
         "early_exit": "early exit (bare)", "diagnostic": "SCR diagnostic (early exit, rows captured)",
         "naive_eager": "naive: full depth, eager attention", "prefill": "vanilla prefill"}


def render(doc: dict, plot_name: str | None = None) -> str:
    parts = [_header(doc)]
    for key, renderer in (("end_to_end", _end_to_end), ("diagnostic", _diagnostic), ("decode_hooks", _hooks),
                          ("growth", _growth), ("throughput", _throughput), ("onnx_runtime", _onnx),
                          ("video", _video), ("scale_out", _scale_out)):
        if doc.get(key) is not None:
            parts.append(renderer(doc[key]))
    if any(doc.get(key) for key in ("end_to_end", "diagnostic", "decode_hooks", "onnx_runtime")):
        parts.append(_targets(doc))  # the targets are read from these sections
    if plot_name:
        parts.append(f"![SCR's extra time per generated token against VCD's and DoLa's, and its growth]({plot_name})")
    return "\n\n".join(parts) + "\n"


def _header(doc: dict) -> str:
    m, s, model = doc["machine"], doc["settings"], doc["model"]
    gpu = f", GPU {m['gpu']['name']} (CUDA {m['gpu']['cuda']})" if m.get("gpu") else ""
    if model["source"] == "random":
        shape = model["shape"]
        what = (f"a random {shape['name']} model ({model['family']}, {model['depth']} decoder layers of width "
                f"{shape['width']}, {model['visual_tokens']} visual tokens)")
    else:
        what = (f"`{model['source']}` ({model['family']}, {model['depth']} decoder layers, "
                f"{model['visual_tokens']} visual tokens)")
    params = f", {model['parameters'] / 1e6:.1f} M parameters" if "parameters" in model else ""
    return (f"Measured with `python -m bench` ({s['mode']} mode) on {m['cpu']} ({m.get('usable_cores', '?')} usable of "
            f"{m['logical_cores']} cores, {m['torch_threads']} torch threads{gpu}), {m['date']}; Python {m['python']}, "
            f"torch {m['torch']}, transformers {m['transformers']}, commit {m.get('commit') or '?'}; load average "
            f"{_load(m['load_average_start'])} at the start, {_load(m['load_average_end'])} at the end. "
            f"Model: {what}{params}, {model['dtype']} on {m['device']}; "
            f"SCR with K = {model['k']}, λ = {model['lam']}, diagnostic layers {_span(model['diag_layers'])}, "
            f"hook layers {_span(model['hook_layers'])}. "
            f"Medians of {s['repeats']} interleaved rounds after {s['warmup']} warm-up round(s); ± is half the "
            f"interquartile range; forced lengths (min_new_tokens = max_new_tokens). Run time {doc['duration_s']} s.")


def _end_to_end(cells: list[dict]) -> str:
    rows = ["**End to end** (images in, text out; two-pass limit = vanilla + one early-exit forward through the last "
            "diagnostic layer, from the same rounds)", "",
            "| batch | new tokens | vanilla | SCR | SCR / vanilla | two-pass limit | SCR / limit "
            "| Uniform-Smooth / vanilla | VCD / vanilla | DoLa / vanilla |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        ms, r = c["ms"], c["ratios"]
        rows.append(f"| {c['batch']} | {c['new_tokens']} | {_ms(ms['vanilla'])} | {_ms(ms['scr'])} | "
                    f"{_x(r['scr/vanilla'])} | {_ms(ms['two_pass_limit'])} | {_x(r['scr/two_pass_limit'])} | "
                    f"{_x(r['uniform/vanilla'])} | {_x(r['vcd/vanilla'])} | {_x(r['dola/vanilla'])} |")
    rows += ["", "**Where the time goes** (SCR's run, with vanilla's decode for comparison; the pipeline's own "
             "timings)", "",
             "| batch | new tokens | vision | diagnostic | prefill | decode / token (SCR) | decode / token (vanilla) "
             "| diagnostic / prefill |", "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        p, v = c["parts"]["scr"], c["parts"]["vanilla"]
        rows.append(f"| {c['batch']} | {c['new_tokens']} | {_ms(p['vision_ms'])} | {_ms(p['diagnostic_ms'])} | "
                    f"{_ms(p['prefill_ms'])} | {_ms(p['decode_ms_per_token'])} | {_ms(v['decode_ms_per_token'])} | "
                    f"{_x(c['ratios']['diagnostic/prefill'])} |")
    rows += ["", "**Extra time over vanilla per generated token** (the whole response's extra time / new tokens; "
             "SCR's is a fixed cost per response, the contrastive peers pay on every token)", "",
             "| batch | new tokens | SCR per response | SCR | Uniform-Smooth | VCD | DoLa |",
             "|---|---|---|---|---|---|---|"]
    for c in cells:
        o = c["overhead_ms_per_token"]
        rows.append(f"| {c['batch']} | {c['new_tokens']} | {_ms(c['overhead_ms']['scr'])} | "
                    + " | ".join(_ms(o[m]) for m in ("scr", "uniform", "vcd", "dola")) + " |")
    return "\n".join(rows)


def _diagnostic(cells: list[dict]) -> str:
    method = next((c["memory_method"] for c in cells if c["memory_method"]), "not measurable on this platform")
    rows = [f"**Diagnostic pass** (one prepared batch, vision features shared; peak memory: {method})", "",
            "| batch | call | time | × prefill | peak memory | × prefill |", "|---|---|---|---|---|---|"]
    for c in cells:
        for call in ("diagnostic", "early_exit", "naive_eager", "prefill"):
            ratio = c["ratios"].get(f"{call}/prefill")
            mem_ratio = c["memory_ratios"].get(f"{call}/prefill")
            rows.append(f"| {c['batch']} | {NAMES[call]} | {_ms(c['ms'][call])} | {_x(ratio) if ratio else '1'} | "
                        f"{_mib(c['peak_bytes'][call])} | {_plain_x(mem_ratio) if call != 'prefill' else '1'} |")
    worst = max(c["naive_max_abs_diff"] for c in cells)
    rows += ["", f"The naive diagnostic's maps differ from the shipped one's by at most {worst:.2e} "
                 "(same maps, different cost)."]
    return "\n".join(rows)


def _hooks(cells: list[dict]) -> str:
    rows = ["**Decode steps with the SCR hooks installed vs none** (model forward per new token)", "",
            "| batch | new tokens | hooked layers | with hooks | without | ratio |", "|---|---|---|---|---|---|"]
    for c in cells:
        rows.append(f"| {c['batch']} | {c['new_tokens']} | {_span(c['hook_layers'])} | "
                    f"{_ms(c['ms_per_token']['hooks'], 3)} | {_ms(c['ms_per_token']['none'], 3)} | "
                    f"{_x(c['ratio'], 4)} |")
    return "\n".join(rows)


def _growth(points: list[dict]) -> str:
    rows = ["**How the cost grows** (random models, batch 1; one thing changed at a time)", "",
            "| axis | point | visual tokens | layers | new tokens | vanilla | SCR | SCR / vanilla | SCR / limit "
            "| diagnostic / prefill | SCR extra per response |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        r = p["ratios"]
        rows.append(f"| {p['axis'].replace('_', ' ')} | {p['label']} | {p['visual_tokens']} | {p['depth']} | "
                    f"{p['new_tokens']} | {_ms(p['ms']['vanilla'])} | {_ms(p['ms']['scr'])} | {_x(r['scr/vanilla'])} | "
                    f"{_x(r['scr/two_pass_limit'])} | {_x(r['diagnostic/prefill'])} | {_ms(p['overhead_ms'])} |")
    return "\n".join(rows)


def _video(cells: list[dict]) -> str:
    rows = ["**A video clip** (a random Qwen2-VL of the base shape, batch 1, one synthetic clip at the family's "
            "default sampling; every temporal slice a grid of its own)", "",
            "| frames | slices | visual tokens | layers | new tokens | vanilla | SCR | two-pass limit | SCR / vanilla "
            "| SCR / limit | diagnostic / prefill |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        r = c["ratios"]
        rows.append(f"| {c['frames']} | {c['slices']} | {c['visual_tokens']} | {c['depth']} | {c['new_tokens']} | "
                    f"{_ms(c['ms']['vanilla'])} | {_ms(c['ms']['scr'])} | {_ms(c['ms']['two_pass_limit'])} | "
                    f"{_x(r['scr/vanilla'])} | {_x(r['scr/two_pass_limit'])} | {_x(r['diagnostic/prefill'])} |")
    return "\n".join(rows)


def _throughput(cells: list[dict]) -> str:
    batches = list(cells[0]["images_per_s"])
    rows = ["**Captioning throughput** (SCR, images per second; one process, batches of the same images)", "",
            "| model | images | new tokens | " + " | ".join(f"batch {b}" for b in batches) + " | "
            + " | ".join(f"batch {b} / batch {batches[0]}" for b in batches[1:]) + " |",
            "|---|---|---|" + "---|" * (2 * len(batches) - 1)]
    for c in cells:
        rows.append(f"| {c['model']} | {c['images']} | {c['new_tokens']} | "
                    + " | ".join(f"{c['images_per_s'][b]['median']:.2f}" for b in batches) + " | "
                    + " | ".join(_x(c['speedup'][b], 2) for b in batches[1:]) + " |")
    return "\n".join(rows)


def _scale_out(section: dict) -> str:
    if section.get("status") != "measured":
        return f"**Scale-out** (Ray engine): skipped: {section.get('reason', 'not measured')}"
    rows = [f"**Scale-out** (caption-folder's batches: {section['images']} testbed scenes, batch {section['batch']}, "
            f"up to {section['max_new_tokens']} new tokens, SCR; one process with "
            f"{section['torch_threads_one_process']} torch thread(s) against Ray actors of "
            f"{section['cpus_per_actor']} CPU each; items/s from nothing loaded to the last caption; medians of "
            f"{section['rounds']} interleaved round(s))", "",
            "| run | items/s | × one process | first batch (s) | items/s after it |", "|---|---|---|---|---|"]
    for c in section["cells"]:
        name = "one process" if c["actors"] == 0 else f"Ray, {c['actors']} actor{'s' * (c['actors'] > 1)}"
        rows.append(f"| {name} | {_x(c['items_per_s'], 2)} | {_x(c['vs_one_process'], 2)} | "
                    f"{_x(c['first_batch_s'], 1)} | {_x(c['steady_items_per_s'], 2)} |")
    return "\n".join(rows)


def _onnx(section: dict) -> str:
    if section.get("status") != "measured":
        return f"**ONNX Runtime vs PyTorch**: {section.get('status')} — {section.get('reason', '')}"
    int4 = "int4" in section  # runs before the int4 rows have none
    rows = [f"**ONNX Runtime vs PyTorch** (`python -m export.onnx` graphs in `export.runtime.OnnxVLM`, "
            f"{_opset(section)}{section['provider']}, {section['threads']} intra-op threads; both sides prefill "
            "with the same SCR "
            "plans and decode greedily to the forced length)", "",
            "| batch | new tokens | PyTorch decode | onnxruntime decode | onnxruntime / PyTorch | PyTorch prefill "
            "| onnxruntime prefill |" + _INT4_HEAD * int4, "|---|---|---|---|---|---|---|" + "---|---|" * int4]
    for c in section["cells"]:
        t, p = c["decode_tokens_per_s"], c["prefill_ms"]
        rows.append(f"| {c['batch']} | {c['new_tokens']} | {_per_s(t['pytorch'])} | {_per_s(t['onnxruntime'])} | "
                    f"{_x(c['ratio'])} | {_ms(p['pytorch'])} | {_ms(p['onnxruntime'])} |"
                    + (f" {_per_s(t['onnxruntime_int4'])} | {_x(c['ratio_int4'])} |" if int4 else ""))
    if int4:
        q = section["int4"]
        kind = f"{q['bits']}-bit {'symmetric ' if q['symmetric'] else ''}"
        rows += ["", f"int4: the same export with `--dtype int4` ({kind}"
                     f"blocks of {q['block_size']}, accuracy level {q['accuracy_level']}, parts: "
                     f"{', '.join(q['parts'])}); how close it stays to fp32: `python -m bench.onnx_int4`."]
    m = section["memory"]
    disk = ", ".join(f"{name.replace('_', ' ')} {value} MiB" for name, value in m["disk_mib"].items())
    rows += ["", f"Memory ({m['method']}): the SCR sessions (head, tail, select: every weight once) "
                 f"{m['scr_sessions_mib']} MiB, a plain one-graph export of the same decoder {m['plain_sessions_mib']} "
                 f"MiB; peak RSS {m['scr_peak_rss_mib']} vs {m['plain_peak_rss_mib']} MiB; the PyTorch model's "
                 f"weights {m['torch_weights_mib']} MiB; on disk: {disk}."]
    return "\n".join(rows)


_INT4_HEAD = " onnxruntime int4 decode | int4 / PyTorch |"


def _opset(section: dict) -> str:
    """Which attention the graphs hold (runs before the opset was recorded: opset 18)."""
    opset = section.get("opset", 18)
    kind = "ONNX Attention op" if opset >= 23 else "decomposed attention"
    return f"opset {opset}, {kind}; "


def _per_s(s: dict) -> str:
    return f"{s['median']:.1f} ± {(s['p75'] - s['p25']) / 2:.1f} tokens/s"


def _targets(doc: dict) -> str:
    rows = ["**Targets**", "", "| target | measured | met |", "|---|---|---|"]
    for t in targets.evaluate(doc):
        met = {True: "yes", False: "**no**", None: "—"}[t["met"]]
        rows.append(f"| {t['target']} | {t['measured']} | {met} |")
    return "\n".join(rows)


def _ms(s: dict, digits: int = 1) -> str:
    spread = (s["p75"] - s["p25"]) / 2
    return f"{s['median']:.{digits}f} ± {spread:.{digits}f} ms"


def _x(s: dict, digits: int = 3) -> str:
    return f"{s['median']:.{digits}f} ± {(s['p75'] - s['p25']) / 2:.{digits}f}"


def _plain_x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:.1f} MiB"


def _load(values) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "?"


def _span(layers) -> str:
    layers = list(layers)
    if layers and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}–{layers[-1]}" if len(layers) > 1 else str(layers[0])
    return ",".join(map(str, layers))
