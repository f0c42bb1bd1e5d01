"""What a caption or a diagnosis returns, in types that import without torch.

The PyTorch pipeline and the onnxruntime runtime return the same objects, so the CLI, the
ComfyUI nodes and user code handle both alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import VisualGrid
from .plan import RedistributionPlan
from .yes_no import parse_yes_no


def entropy_nats(values: np.ndarray) -> float:
    """Shannon entropy (nats) of a non-negative array renormalised to sum to 1."""
    p = np.asarray(values, dtype=np.float64).ravel()
    total = p.sum()
    if total <= 0:
        return float("nan")
    p = p[p > 0] / total
    return float(-(p * np.log(p)).sum())


@dataclass(frozen=True)
class Timings:
    """Wall-clock milliseconds of one batch (shared by its results)."""

    vision_ms: float
    diagnostic_ms: float
    prefill_ms: float
    decode_ms_per_token: float
    new_tokens: int

    def to_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}

    def summary(self) -> str:
        """One line for a terminal or a node's text output."""
        return (f"vision {self.vision_ms:.1f} ms | diagnostic {self.diagnostic_ms:.1f} ms | "
                f"prefill {self.prefill_ms:.1f} ms | decode {self.decode_ms_per_token:.1f} ms/token "
                f"x {self.new_tokens}")


@dataclass(frozen=True)
class Diagnosis:
    """Diagnostic result for one prompt: a map per image grid, its entropy and the plan.

    ``grids`` says where each map sits (which image of the prompt, which part of it): what
    ``render_heatmap`` needs to draw every grid over its own picture.
    """

    maps: tuple[np.ndarray, ...]  # raw mean attention probabilities, one (H, W) array per grid
    entropy: float  # nats, over all visual tokens of the prompt, map renormalised to sum 1
    plan: RedistributionPlan
    grids: tuple[VisualGrid, ...] = ()

    @property
    def grid_entropies(self) -> tuple[float, ...]:
        """Entropy (nats) of each map on its own: per slice of a clip, per grid of an image."""
        return tuple(entropy_nats(m) for m in self.maps)

    def to_dict(self) -> dict:
        return {"entropy_nats": self.entropy, "maps": [np.asarray(m).tolist() for m in self.maps],
                "plan": self.plan.to_dict()}


@dataclass(frozen=True)
class GenerationResult:
    """Output for one prompt."""

    text: str
    token_ids: tuple[int, ...]
    plan: RedistributionPlan | None
    diagnosis: Diagnosis | None
    timings: Timings

    @property
    def yes_no(self) -> str:
        """"yes" / "no" by POPE's official rule (first sentence; "no" or "not" means no)."""
        return parse_yes_no(self.text)

    def to_dict(self) -> dict:
        """JSON-ready summary (the CLI's ``--json``): text, tokens, plan, entropy and timings."""
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "scr": self.plan is not None,
            "entropy_nats": self.diagnosis.entropy if self.diagnosis else None,
            "plan": self.plan.to_dict() if self.plan else None,
            "timings": self.timings.to_dict(),
        }
