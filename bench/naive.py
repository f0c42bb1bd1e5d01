"""The naive diagnostic the design avoids: eager attention through every layer, all matrices kept.

What a first implementation does: load (here: switch) the model to eager attention, run the
full forward with ``output_attentions=True`` and average the diagnostic layers' matrices. It
computes the same maps as ``SCRPipeline.diagnose`` (the benchmark records the largest
difference), at the cost of the whole depth and a (heads x tokens x tokens) matrix per layer.
"""

from __future__ import annotations

import numpy as np


def naive_maps(pipe, batch, cfg) -> list[tuple[np.ndarray, ...]]:
    """Per prompt, the mean attention of its post-image text rows to each grid over ``cfg.diag_layers``."""
    import torch

    model = pipe.model
    before = getattr(model.config, "_attn_implementation", None) or "sdpa"
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad(), pipe.adapter.shared_vision(batch.vision):
            out = model(**batch.inputs, output_attentions=True, use_cache=False)
    finally:
        model.set_attn_implementation(before)
    layout = batch.layout
    maps = []
    for sample in range(layout.batch_size):
        start = layout.text_query_start(sample)
        rows = torch.stack([out.attentions[i][sample, :, start:, :] for i in cfg.diag_layers]).float()
        per_key = rows.mean(dim=(0, 1, 2)).cpu().numpy()
        maps.append(tuple(per_key[g.positions].reshape(g.height, g.width) for g in layout.grids_of(sample)))
    return maps


def largest_difference(maps_a, maps_b) -> float:
    """Largest absolute difference between two lists of per-prompt map tuples."""
    return max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
               for prompt_a, prompt_b in zip(maps_a, maps_b) for a, b in zip(prompt_a, prompt_b))
