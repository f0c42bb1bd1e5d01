"""The performance plot of docs/performance.md, from a benchmark JSON.

Left: extra milliseconds per generated token over vanilla as the response grows, SCR against
VCD, DoLa and Uniform-Smooth (the question a user asks: how much slower than vanilla, and
than the alternatives). Right: SCR / vanilla and the two-pass limit / vanilla as visual
tokens and decoder depth grow. Bars span the interquartile range over the rounds.
"""

from __future__ import annotations

from pathlib import Path

COLOURS = {"scr": "tab:red", "uniform": "tab:orange", "vcd": "tab:blue", "dola": "tab:green"}
LABELS = {"scr": "SCR", "uniform": "Uniform-Smooth", "vcd": "VCD", "dola": "DoLa"}


def save(doc: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    _per_token(axes[0], doc.get("end_to_end") or [])
    growth = doc.get("growth") or []
    _growth(axes[1], [p for p in growth if p["axis"] == "visual_tokens"], "visual_tokens", "visual tokens")
    _growth(axes[2], [p for p in growth if p["axis"] == "depth"], "depth", "decoder layers")
    m = doc["machine"]
    where = m["gpu"]["name"] if m.get("gpu") else f"{m['cpu']}, {m['torch_threads']} threads"
    model = doc["model"]
    fig.suptitle(f"SCR cost ({doc['settings']['mode']} run, {model['family']} {model['depth']} layers, "
                 f"{model['visual_tokens']} visual tokens, {model['dtype']}) on {where}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _per_token(ax, cells: list[dict]) -> None:
    ax.set_title("extra time per generated token over vanilla", fontsize=10)
    ax.set_xlabel("new tokens (forced length)")
    ax.set_ylabel("ms / token")
    if not cells:
        ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
        return
    batches = sorted({c["batch"] for c in cells})
    for method in ("scr", "uniform", "vcd", "dola"):
        for batch, style in zip(batches, ("-", "--", ":", "-.")):
            rows = sorted((c for c in cells if c["batch"] == batch), key=lambda c: c["new_tokens"])
            x = [c["new_tokens"] for c in rows]
            s = [c["overhead_ms_per_token"][method] for c in rows]
            ax.errorbar(x, [v["median"] for v in s], yerr=_spread(s), linestyle=style, marker="o",
                        color=COLOURS[method], capsize=3, label=f"{LABELS[method]}, batch {batch}")
    ax.axhline(0, color="grey", linewidth=0.8)
    lengths = sorted({c["new_tokens"] for c in cells})
    ax.set_xscale("log")
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.minorticks_off()
    ax.legend(fontsize=7)


def _growth(ax, points: list[dict], key: str, label: str) -> None:
    ax.set_title(f"SCR / vanilla as {label} grow", fontsize=10)
    ax.set_xlabel(label)
    ax.set_ylabel("end-to-end time / vanilla")
    if not points:
        ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
        return
    families = sorted({p["family"] for p in points})
    for family, marker in zip(families, "os^D"):
        line = sorted((p for p in points if p["family"] == family), key=lambda p: p[key])
        x = [p[key] for p in line]
        suffix = f" ({family})" if len(families) > 1 else ""
        for ratio, colour, name in (("scr/vanilla", "tab:red", "SCR"),
                                    ("two_pass_limit/vanilla", "black", "two-pass limit")):
            s = [p["ratios"][ratio] for p in line]
            ax.errorbar(x, [v["median"] for v in s], yerr=_spread(s), marker=marker, color=colour, capsize=3,
                        label=name + suffix)
        for xi, p in zip(x, line):
            ax.annotate(p["label"], (xi, p["ratios"]["scr/vanilla"]["median"]), fontsize=7, xytext=(3, 4),
                        textcoords="offset points")
    ax.axhline(1, color="grey", linewidth=0.8)
    ax.legend(fontsize=7)


def _spread(stats: list[dict]) -> list[list[float]]:
    """Error bars from the median down to the first quartile and up to the third."""
    return [[max(0.0, s["median"] - s["p25"]) for s in stats], [max(0.0, s["p75"] - s["median"]) for s in stats]]
