"""Plain numpy / python re-implementations of the SCR math, written independently of scr_core.

Selection follows docs/method.md §1.3 with python sets of (row, col) pairs; the redistribution is
the linear map H' = M·H of docs/method.md §1.4 built as an explicit matrix.
"""

from __future__ import annotations

import numpy as np


def ref_select(attention: np.ndarray, k: int, exclude_border: bool = True):
    h, w = attention.shape
    cells = [(r, c) for r in range(h) for c in range(w)
             if not exclude_border or (0 < r < h - 1 and 0 < c < w - 1)]
    cells.sort(key=lambda rc: (-attention[rc], rc[0] * w + rc[1]))  # ties: row-major first
    sources, owner = [], {}
    for rc in cells:
        if len(sources) == k:
            break
        if rc in owner or rc in sources:
            continue
        sources.append(rc)
        r, c = rc
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                q = (r + dr, c + dc)
                if (dr, dc) == (0, 0) or not (0 <= q[0] < h and 0 <= q[1] < w):
                    continue
                if q in owner or q in sources:
                    continue
                owner[q] = rc
    flat = lambda rc: rc[0] * w + rc[1]  # noqa: E731
    return [flat(s) for s in sources], {flat(n): flat(s) for n, s in owner.items()}


def ref_matrix(n: int, sources, owner: dict, lam: float) -> np.ndarray:
    m = np.eye(n)
    for s in sources:
        m[s, s] = 1.0 / lam
    for nb, s in owner.items():
        m[nb, s] += lam - 1.0
    return m


def ref_redistribute(hidden: np.ndarray, sources, owner: dict, lam: float) -> np.ndarray:
    return ref_matrix(hidden.shape[0], sources, owner, lam) @ hidden
