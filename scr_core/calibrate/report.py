"""``calibrate``'s verdict, markdown report and plot (HR change against accuracy change per setting)."""

from __future__ import annotations

import json
from pathlib import Path

from ..outputs import write_atomically
from .grid import format_layers

SPLIT_TITLES = {"heldout": "Held-out split (the verdict)", "tune": "Tuning split (the pick)"}


def _p(value: float) -> str:
    return f"{value:.3g}" if value >= 1e-3 else f"{value:.1e}"


def _summary(r, split: str = "heldout") -> str:
    s = r.scores[split]
    low, high = s.hr_change_ci
    return (f"HR {s.hr - s.hr_change:.1f} → {s.hr:.1f} % (Δ {s.hr_change:+.1f}, 95 % CI {low:+.1f} … {high:+.1f}), "
            f"accuracy Δ {s.accuracy_change:+.1f}, {s.corrections} corrections / {s.new_errors} new errors, "
            f"McNemar p = {_p(s.p)}, Holm p = {_p(s.p_holm)}")


def verdict(cal) -> str:
    """One honest paragraph: a setting only when its held-out improvement is significant."""
    alpha, n = cal.meta["alpha"], cal.meta["heldout_questions"]
    if cal.recommended is not None:
        r = cal.result(cal.recommended)
        return (f"Recommended: {r.setting.label}. Picked on the tuning split and significant on the "
                f"{n} held-out questions (Holm-corrected over {len(cal.results)} settings, α = {alpha:g}): "
                f"{_summary(r)}.")
    if cal.picked is None:
        best = max(cal.results, key=lambda r: (r.tune_net, -r.scores["tune"].hr))
        return (f"SCR does not measurably help this model on this data: no setting made more corrections "
                f"than new errors on the tuning split (best: {best.setting.label}, "
                f"{best.scores['tune'].corrections} / {best.scores['tune'].new_errors}). Held-out for that "
                f"setting: {_summary(best)}.")
    r = cal.result(cal.picked)
    return (f"SCR does not measurably help this model on this data: the tuning split's best setting, "
            f"{r.setting.label}, is not a significant improvement on the {n} held-out questions "
            f"(Holm-corrected over {len(cal.results)} settings, α = {alpha:g}): {_summary(r)}.")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def table(cal, split: str) -> str:
    rows = ["| setting | HR % | ΔHR [95 % CI] | accuracy % | Δacc | F1 % | yes % | changed | corrections / "
            "new errors | McNemar p | Holm p |", "|---" * 11 + "|"]
    v = cal.vanilla[split]
    rows.append(f"| vanilla | {v.hr:.1f} | | {v.accuracy:.1f} | | {_pct(v.f1)} | {v.yes_ratio:.1f} | | | | |")
    for r in cal.results:
        s = r.scores[split]
        low, high = s.hr_change_ci
        mark = " **(picked)**" if r.setting == cal.picked else ""
        rows.append(f"| {r.setting.label}{mark} | {s.hr:.1f} | {s.hr_change:+.1f} [{low:+.1f}, {high:+.1f}] | "
                    f"{s.accuracy:.1f} | {s.accuracy_change:+.1f} | {_pct(s.f1)} | {s.yes_ratio:.1f} | {s.changed} | "
                    f"{s.corrections} / {s.new_errors} | {_p(s.p)} | {_p(s.p_holm)} |")
    return "\n".join(rows)


def markdown(cal, title: str = "SCR calibration") -> str:
    m = cal.meta
    lines = [f"# {title}", ""]
    if m.get("model"):
        lines.append(f"Model: {m['model']}. Questions: {m.get('data', '')}.")
    lines += [f"{m['questions']} yes/no questions; tuning split {m['tune_questions']} questions on "
              f"{m['tune_images']} images, held-out split {m['heldout_questions']} questions on "
              f"{m['heldout_images']} other images (seed {m['seed']}). {len(cal.results)} settings; diagnostic "
              f"layers {format_layers(m['diag_layers'])} (one diagnosis per image for the whole grid), query "
              f"{m['query']}; greedy, 10 new tokens, parser {m['rule']!r}.", "",
              f"**{cal.verdict}**", ""]
    for split in ("heldout", "tune"):
        lines += [f"## {SPLIT_TITLES[split]}", "", table(cal, split), ""]
    lines += ["HR = share of ground-truth-\"no\" questions answered \"yes\"; Δ against vanilla on the same questions, "
              f"with a percentile bootstrap CI ({m['bootstrap_resamples']} resamples of those questions). "
              "Corrections: wrong under vanilla, right with the setting; new errors: the reverse. McNemar: exact "
              "two-sided binomial test on those two counts; Holm: corrected over every setting of the grid on "
              "that split. The pick is the setting with the most corrections minus new errors on the tuning "
              "split; it is recommended only if that gain holds on the held-out split with Holm p < "
              f"{m['alpha']:g}.", ""]
    return "\n".join(lines)


def plot(cal, path: Path, split: str = "heldout") -> Path:
    """Scatter of ΔHR against Δaccuracy per setting (vanilla at the origin), atomically written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    points: dict[tuple[float, float], list[str]] = {}  # settings on the same point share one label
    for r in cal.results:
        s = r.scores[split]
        chosen = r.setting == cal.picked
        ax.scatter(s.accuracy_change, s.hr_change, s=60 if chosen else 25,
                   color="tab:red" if chosen else "tab:blue", zorder=4 if chosen else 3)
        points.setdefault((round(s.accuracy_change, 9), round(s.hr_change, 9)), []).append(r.setting.label)
    for (x, y), labels in points.items():
        ax.annotate("\n".join(labels), (x, y), fontsize=5, xytext=(3, 3), textcoords="offset points",
                    va="bottom")
    ax.scatter([0], [0], marker="x", color="black", label="vanilla")
    ax.set_xlabel("accuracy change vs vanilla (points)")
    ax.set_ylabel("HR change vs vanilla (points, lower is better)")
    ax.set_title(f"SCR grid, {SPLIT_TITLES[split].split(' (')[0].lower()} (red: picked on the tuning split)")
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    try:
        write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
    return Path(path)


OUTPUT_FILES = ("report.md", "calibration.json", "calibration.png", "answers.json")


def write_outputs(cal, out: Path) -> dict[str, Path]:
    """report.md, calibration.json, calibration.png and answers.json (every raw answer) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in OUTPUT_FILES}
    write_atomically(paths["report.md"], lambda tmp: tmp.write_text(markdown(cal), encoding="utf-8"))
    write_atomically(paths["calibration.json"],
                     lambda tmp: tmp.write_text(json.dumps(cal.to_dict(), indent=2) + "\n", encoding="utf-8"))
    write_atomically(paths["answers.json"], lambda tmp: tmp.write_text(json.dumps(cal.answers) + "\n"))
    plot(cal, paths["calibration.png"])
    return paths
