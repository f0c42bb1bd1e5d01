"""What one benchmark run measures: the full plan, or a quick one for CI.

Full: forced lengths 16/100/256 new tokens, batches 1 and 4, 6 timed rounds after a warm-up
(six: the length of the balanced order for the six end-to-end variants, see ``timing.orders``),
on a random LLaVA-1.5-shaped model (width 256 on CPU, the 7B shape in fp16 on a GPU) or on
``--model``. Quick: the same sections on a tiny model, few tokens, one thread
(on a busy 2-core CI machine a second OpenMP thread waits for a core and tiny ops take
milliseconds), to show that everything runs and the report renders, not to measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import shapes

SECTIONS = ("end_to_end", "diagnostic", "decode_hooks", "growth", "throughput", "onnx_runtime", "video",
            "scale_out")


@dataclass(frozen=True)
class Settings:
    mode: str                      # "full" or "quick"
    device: str
    dtype: str                     # torch dtype name: "float32", "float16", "bfloat16"
    shape: shapes.Shape            # the random model's shape (also the growth section's base)
    model: str | None = None       # a checkpoint folder instead of the random model
    lengths: tuple[int, ...] = (16, 100, 256)
    batches: tuple[int, ...] = (1, 4)
    repeats: int = 5
    warmup: int = 1
    memory_repeats: int = 3
    hook_tokens: int = 100         # new tokens of the decode-hooks section
    growth_tokens: int = 100       # new tokens per run of the growth section
    throughput_batches: tuple[int, ...] = (1, 4, 8)  # batch sizes of the throughput section (max = images)
    throughput_tokens: int = 32    # new tokens per caption in the throughput section
    scale_out_images: int = 48     # the scale-out section's folder of testbed scenes
    scale_out_batch: int = 4       # its --batch-size
    scale_out_tokens: int = 32     # its --max-new-tokens (the testbed stops at its end of sentence)
    scale_out_actors: tuple[int, ...] = (1, 2)  # Ray actor counts measured against one process
    scale_out_repeats: int = 3     # rounds (each loads the model afresh: no warm-up round)
    k: int = 32                    # SCR's K (the paper's); quick mode's 8x8 grid takes fewer
    threads: int | None = None     # torch threads; None keeps torch's default
    sections: tuple[str, ...] = field(default=SECTIONS)
    seed: int = 0

    @property
    def quick(self) -> bool:
        return self.mode == "quick"

    def to_dict(self) -> dict:
        return {"mode": self.mode, "device": self.device, "dtype": self.dtype, "model": self.model,
                "lengths": list(self.lengths), "batches": list(self.batches), "repeats": self.repeats,
                "warmup": self.warmup, "memory_repeats": self.memory_repeats, "hook_tokens": self.hook_tokens,
                "growth_tokens": self.growth_tokens, "throughput_batches": list(self.throughput_batches),
                "throughput_tokens": self.throughput_tokens, "scale_out_images": self.scale_out_images,
                "scale_out_batch": self.scale_out_batch, "scale_out_tokens": self.scale_out_tokens,
                "scale_out_actors": list(self.scale_out_actors), "scale_out_repeats": self.scale_out_repeats,
                "k": self.k, "threads": self.threads,
                "sections": list(self.sections), "seed": self.seed}


def make(quick: bool, device: str, model: str | None = None, dtype: str | None = None, **overrides) -> Settings:
    """The plan for ``quick`` or full mode on ``device``; ``overrides`` (not None) replace its fields."""
    gpu = device.startswith("cuda")
    if quick:
        base = Settings("quick", device, dtype or "float32", shapes.TINY, model, lengths=(2, 8), batches=(1, 2),
                        repeats=5, warmup=1, memory_repeats=1, hook_tokens=8, growth_tokens=4, k=4, threads=1,
                        throughput_batches=(1, 4), throughput_tokens=4, scale_out_images=6, scale_out_batch=2,
                        scale_out_tokens=8, scale_out_repeats=1)
    else:
        base = Settings("full", device, dtype or ("float16" if gpu else "float32"),
                        shapes.LLAVA_15_7B if gpu else shapes.LLAVA_15_CPU, model, repeats=6)
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes.get("sections", ())) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if changes.get("repeats", 1) < 1 or any(n < 1 for n in changes.get("lengths", (1,)) + changes.get("batches", (1,))):
        raise ValueError("repeats, lengths and batches must be >= 1")
    return replace(base, **changes)
