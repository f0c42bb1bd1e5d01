"""The state the sections share: the settings, the main pipeline, images per batch size, a log.

Why one object: every section measures on the same model and the same prompts (the peers
too), and builds or releases extra models (the growth section) through one place.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from . import inputs, shapes
from .settings import Settings


class BenchError(RuntimeError):
    """A measurement that would be wrong (e.g. generation stopped before the forced length)."""


@dataclass
class Context:
    settings: Settings
    pipe: object = None             # SCRPipeline of the main model
    model_info: dict = field(default_factory=dict)
    _images: dict = field(default_factory=dict)

    @property
    def device(self) -> str:
        return self.settings.device

    def dtype(self):
        import torch

        return getattr(torch, self.settings.dtype)

    def load(self) -> None:
        """Build (or load, with ``--model``) the main model and describe it."""
        from scr_core import SCRPipeline

        s = self.settings
        if s.model:
            self.pipe = SCRPipeline.from_pretrained(s.model, device=s.device, dtype=s.dtype)
            self.model_info = {"source": s.model, "shape": None}
        else:
            self.pipe = shapes.build(s.shape, s.device, self.dtype(), s.seed)
            self.model_info = {"source": "random", "shape": s.shape.to_dict()}
        batch = self.pipe.prepare(self.images(1))
        cfg = self.config()
        self.model_info.update(
            family=self.pipe.model.config.model_type, depth=self.pipe.depth,
            parameters=sum(p.numel() for p in self.pipe.model.parameters()),
            visual_tokens=sum(g.height * g.width for g in batch.layout.grids_of(0)),
            prompt_tokens=batch.layout.seq_len, diag_layers=list(cfg.diag_layers),
            hook_layers=list(cfg.hook_layers), k=cfg.k, lam=cfg.lam, dtype=s.dtype,
            attn_implementation=getattr(self.pipe.model.config, "_attn_implementation", None))

    def config(self, pipe=None, **changes):
        """The SCR settings measured (the paper's, K from the settings), resolved for ``pipe``."""
        from scr_core import SCRConfig

        return (pipe or self.pipe).resolve(SCRConfig(k=self.settings.k, **changes))

    def image_size(self) -> tuple[int, int]:
        return (640, 480) if self.settings.model else self.settings.shape.image

    def images(self, count: int, size: tuple[int, int] | None = None) -> list:
        size = size or self.image_size()
        key = (count, size)
        if key not in self._images:
            self._images[key] = inputs.images(count, size, self.settings.seed)
        return self._images[key]

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)


def check_length(results, expected: int, what: str) -> None:
    """Refuse a run that did not generate the forced number of tokens (its time would mislead)."""
    got = results[0].timings.new_tokens
    if got != expected:
        raise BenchError(f"{what} generated {got} new tokens instead of the forced {expected}")


def timings(results) -> dict:
    """The pipeline's split of one run (vision, diagnostic, prefill, decode per token)."""
    t = results[0].timings
    return {"vision_ms": t.vision_ms, "diagnostic_ms": t.diagnostic_ms, "prefill_ms": t.prefill_ms,
            "decode_ms_per_token": t.decode_ms_per_token}
