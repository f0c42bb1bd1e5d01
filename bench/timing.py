"""Interleaved timing: every variant once per round, rounds repeated, warm-up first.

Why interleave: on a shared machine load comes and goes; running every variant in each
round spreads it over all variants alike, and pairing the variants of one round (ratios per
round) cancels most of what is left. Why a balanced order (a Williams design) rather than a
rotation: A B C, B C A, C A B keeps the cyclic order, so B always runs right after A and
whatever A leaves behind (allocator state, caches, clock) lands on B alone; in a Williams
design every variant follows every other equally often (over a multiple of ``len(orders(n))``
rounds). The garbage collector runs between calls, never inside one.
Each call is timed from outside (wall clock, synchronised on a GPU); a variant may also
return its own figures (the pipeline's ``Timings``), and an ``ms`` among them replaces the
wall time (e.g. the model forward inside ``generate``).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import numpy as np

Variant = Callable[[], "dict | None"]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def orders(n: int) -> list[list[int]]:
    """A Williams design for ``n`` variants: rows of a Latin square in which every ordered pair of
    variants is adjacent equally often (``n`` rows for even ``n``, ``2n`` with the mirrored rows for odd)."""
    first, low, high = [0], 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    rows = [[(v + shift) % n for v in first] for shift in range(n)]
    return rows if n % 2 == 0 else rows + [row[::-1] for row in rows]


def interleave(variants: dict[str, Variant], repeats: int, warmup: int, device: str = "cpu") -> dict[str, list[dict]]:
    """``{name: [one dict of measures per round]}``; each dict holds ``ms`` and the variant's figures.

    Timed round ``i`` runs the variants in the order of row ``i`` of ``orders``; the warm-up
    rounds take the design's last rows.
    """
    names = list(variants)
    design = orders(len(names))
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    gc.collect()
    gc.freeze()  # the model's objects leave the collector's view: a collection between calls then costs little
    try:
        for index in range(warmup + repeats):
            for name in (names[v] for v in design[(index - warmup) % len(design)]):
                gc.collect()
                gc.disable()  # no collection lands inside a timed call
                try:
                    synchronize(device)
                    start = time.perf_counter()
                    figures = variants[name]() or {}
                    synchronize(device)
                    wall = (time.perf_counter() - start) * 1000
                finally:
                    gc.enable()
                if index >= warmup:
                    rounds[name].append({"ms": wall, **figures})
    finally:
        gc.unfreeze()  # a model released later must be collectable again
    return rounds


def stats(values) -> dict:
    """Median and spread (quartiles, range) of ``values``; the samples are kept for the record."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        raise ValueError("no samples")
    p25, median, p75 = np.percentile(array, [25, 50, 75])
    return {"median": float(median), "p25": float(p25), "p75": float(p75), "min": float(array.min()),
            "max": float(array.max()), "n": int(array.size), "samples": [round(float(v), 4) for v in array]}


def column(rounds: list[dict], key: str = "ms") -> list[float]:
    return [float(r[key]) for r in rounds]


def paired(a: list[float], b: list[float], how: Callable[[float, float], float]) -> dict:
    """Statistics of ``how(a_i, b_i)`` over the rounds (both lists from one ``interleave``)."""
    if len(a) != len(b):
        raise ValueError("paired samples must come from the same rounds")
    return stats(how(x, y) for x, y in zip(a, b))
