"""The grid of SCR settings ``calibrate`` tries (λ × K × hook layers).

Defaults: λ 1.05, 1.10, 1.15 (the paper's optimum and the ends of the range its peak-preserving
proposition covers, docs/method.md §3), K 16 and 32 (the paper's 32 and half of it), hook layers
0-7, 0-11, 0-15 (LLaVA's 0-11 and the 0-15 of the other families, plus a shallower range): the
paper's ablation grids themselves were not published (docs/method.md, sources).
Hook ranges left as defaults are the paper's indices, scaled like every default range on
decoders shallower than 28 layers (``config.paper_range``); ranges a user gives are used as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..config import SCRConfig, check_depth, check_redistributes, paper_range, parse_layer_ranges
from ..errors import ConfigError

DEFAULT_LAMS = (1.05, 1.10, 1.15)
DEFAULT_KS = (16, 32)
PAPER_HOOK_RANGES = ((0, 7), (0, 11), (0, 15))


@dataclass(frozen=True)
class Setting:
    """One point of the grid; the diagnostic layers are shared by the whole grid.

    remove: the removal ablation at this K and these hook layers (the same plans, sources zeroed;
    ``lam`` is None: it has none).
    """

    lam: float | None
    k: int
    hook_layers: tuple[int, ...]
    remove: bool = False

    @property
    def label(self) -> str:
        what = "remove" if self.remove else f"λ={self.lam:g}"
        return f"{what} K={self.k} hooks {format_layers(self.hook_layers)}"

    def config(self, base: SCRConfig) -> SCRConfig:
        lam = base.lam if self.lam is None else self.lam
        return base.with_(lam=lam, k=self.k, hook_layers=self.hook_layers, selection="attention")

    def to_dict(self) -> dict:
        return {"lam": self.lam, "k": self.k, "hook_layers": list(self.hook_layers),
                **({"remove": True} if self.remove else {})}


def format_layers(layers: Sequence[int]) -> str:
    """(0, 1, 2, 5) -> "0-2,5"."""
    parts: list[list[int]] = []
    run: list[int] = []
    for layer in sorted(layers):
        if run and layer != run[-1] + 1:
            parts.append(run)
            run = []
        run.append(layer)
    parts.append(run)
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in parts if r)


def default_hook_grid(depth: int) -> list[tuple[int, ...]]:
    """The paper's hook ranges on a decoder of ``depth`` layers (duplicates after scaling dropped)."""
    return list(dict.fromkeys(paper_range(lo, hi, depth) for lo, hi in PAPER_HOOK_RANGES))


def parse_numbers(text: str, kind: type, flag: str) -> tuple:
    """"1.05,1.1" -> (1.05, 1.1); ConfigError naming ``flag`` for anything else."""
    try:
        values = tuple(kind(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{flag}: bad list {text!r}; use comma-separated numbers, e.g. 1.05,1.1") from None
    if not values:
        raise ConfigError(f"{flag}: empty list")
    return values


def parse_hook_grid(text: str | Sequence[str]) -> tuple[tuple[int, ...], ...]:
    """The hook-layer sets to try. Each set is written as ``--hook-layers`` is everywhere else
    (``config.parse_layer_ranges``: "0-11", "0,2,4" and "0-3,8" are one set each); several sets are
    separated by ``;`` ("0-7;0-11;0-15") or given one per flag (a sequence: the repeated flag).

    Before, a comma separated the sets ("0-7,0-11" meant two ranges). Ranges that overlap inside one set
    can only be that spelling, so they are refused with the new one instead of becoming their union.
    """
    texts = [text] if isinstance(text, str) else list(text)
    items = [item for t in texts for item in str(t).split(";") if item.strip()]
    if not items:
        raise ConfigError("--hook-layers: empty list")
    for item in items:
        parts = [parse_layer_ranges(part) or () for part in item.split(",") if part.strip()]
        if any(set(a) & set(b) for i, a in enumerate(parts) for b in parts[i + 1:]):
            raise ConfigError(f"--hook-layers {item.strip()!r}: overlapping ranges in one set; several sets are "
                              f"separated by ';' (e.g. \"{';'.join(p.strip() for p in item.split(','))}\") or given "
                              "as a repeated --hook-layers")
    return tuple(tuple(sorted(set(parse_layer_ranges(item) or ()))) for item in items)  # items are not blank


def build_grid(lams: Sequence[float], ks: Sequence[int], hook_sets: Sequence[Sequence[int]],
               depth: int) -> list[Setting]:
    """Every combination, in a fixed order (hook layers, then K, then λ), each validated."""
    settings = []
    for hooks in hook_sets:
        hooks = tuple(sorted(set(hooks)))
        check_depth(f"hook layers {format_layers(hooks)}", hooks, depth)
        for k in ks:
            for lam in lams:
                SCRConfig(k=k, lam=lam, hook_layers=hooks)  # validates k and λ
                check_redistributes(lam)
                settings.append(Setting(float(lam), int(k), hooks))
    if len(set(settings)) != len(settings):
        raise ConfigError("the grid repeats a setting; give each λ, K and hook range once")
    return settings


def removal_grid(settings: Sequence[Setting]) -> list[Setting]:
    """The removal ablation at every K and hook range of ``settings`` (λ plays no part in it)."""
    return list(dict.fromkeys(Setting(None, s.k, s.hook_layers, remove=True) for s in settings))
