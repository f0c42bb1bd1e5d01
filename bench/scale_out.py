"""Scale-out: ``caption-folder``'s batches in one process against the Ray engine with 1 and 2 actors.

What a user of ``--engine ray`` pays and gets on this machine: the same folder of testbed scenes, the
same batches (``caption_folder.CaptionJob``, SCR on, greedy), run by the one-process executor
(``shards.one_by_one``, the model loaded first) and by ``ray_engine.RayEngine`` on a local Ray
(loopback, sized to the machine; one CPU and one torch thread per actor). Per run: the wall time from
nothing loaded to the last caption (items/s over it, start-up included: a Ray run loads the model once
to record its numerics, then once per actor), the time to the first finished batch (start-up), and the
rate after it (as the driver receives the batches; on a small folder a handful of batches make it
noisy). At 1 actor the ratio to one process is the engine's overhead; at 2 actors on 2 cores, its gain.
The variants run in interleaved rounds (``timing``). Skipped, with the reason, where the ray extra is
not installed.
"""

from __future__ import annotations

import os
import tempfile
import time
from functools import partial
from pathlib import Path

from .context import Context
from .timing import column, interleave, paired, stats


def run(ctx: Context) -> dict:
    from scr_core.extras import EXTRAS, installed

    if not all(installed(name) for name in EXTRAS["ray"][1]):
        return {"status": "skipped", "reason": f"the ray extra is not installed (pip install -r {EXTRAS['ray'][0]})"}
    import ray

    s = ctx.settings
    with tempfile.TemporaryDirectory(prefix="scr-bench-scale-") as tmp:
        folder = _scenes(Path(tmp), s.scale_out_images)
        started_here = not ray.is_initialized()
        if started_here:  # loopback: a benchmark never opens Ray's ports on the machine's network address
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _node_ip_address="127.0.0.2",
                     log_to_driver=False)
        try:
            return _measure(ctx, folder)
        finally:
            if started_here:
                ray.shutdown()


def _scenes(root: Path, count: int) -> Path:
    from scr_core.demo import DEMO_SCENE, testbed_scene

    folder = root / "scenes"
    folder.mkdir()
    for index in range(count):
        testbed_scene(DEMO_SCENE[0], index).image.save(folder / f"scene{index:03d}.png")
    return folder


def _measure(ctx: Context, folder: Path) -> dict:
    from scr_core import SCRConfig, SCRPipeline, default_model
    from scr_core.caption_folder import CaptionJob, list_items
    from scr_core.ray_engine import RayEngine, RayOptions
    from scr_core.shards import batches_of, one_by_one

    s = ctx.settings
    model = s.model or str(default_model()[0])
    load = partial(SCRPipeline.from_pretrained, model, device=s.device)
    job = CaptionJob(SCRConfig(k=8), None, s.scale_out_tokens)
    items = list_items(folder)
    batches = batches_of(items, s.scale_out_batch)
    gpus = 1.0 if s.device.startswith("cuda") else 0.0

    def one_process():
        return _timed(lambda: one_by_one(job(load()))(batches), len(items))

    def on_ray(actors: int):
        def variant():
            options = RayOptions(actors=actors, cpus_per_actor=1.0, gpus_per_actor=gpus / actors if gpus else 0.0)
            with RayEngine(load, options) as engine:
                return _timed(lambda: engine.executor(job)(batches), len(items))
        return variant

    variants = {"one_process": one_process, **{f"ray_{n}": on_ray(n) for n in s.scale_out_actors}}
    rounds = interleave(variants, s.scale_out_repeats, 0, ctx.device)
    per_s = {name: [len(items) * 1000 / ms for ms in column(r)] for name, r in rounds.items()}
    cells = [{"variant": name, "actors": 0 if name == "one_process" else int(name.split("_")[1]),
              "items_per_s": stats(per_s[name]), "first_batch_s": stats(column(r, "first_batch_s")),
              "steady_items_per_s": stats(column(r, "steady_items_per_s")),
              "vs_one_process": paired(per_s[name], per_s["one_process"], lambda a, b: a / b)}
             for name, r in rounds.items()]
    ctx.log(f"scale-out, {len(items)} images, batch {s.scale_out_batch}: " + ", ".join(
        f"{c['variant']} {c['items_per_s']['median']:.2f} items/s" for c in cells))
    return {"status": "measured", "model": model, "rounds": s.scale_out_repeats, "images": len(items),
            "batch": s.scale_out_batch,
            "max_new_tokens": s.scale_out_tokens, "torch_threads_one_process": _threads(),
            "cpus_per_actor": 1, "cells": cells}


def _timed(execute, count: int) -> dict:
    """Run ``execute()`` (an iterator of finished batches): the first batch's time and the rate after it."""
    start = time.perf_counter()
    first, done = None, 0
    for batch, records in execute():
        done += len(records)
        if first is None:
            first, first_done = time.perf_counter(), done
    end = time.perf_counter()
    if done != count:
        raise RuntimeError(f"{done} of {count} items captioned")
    steady = (done - first_done) / (end - first) if done > first_done and end > first else float("nan")
    return {"first_batch_s": first - start, "steady_items_per_s": steady}


def _threads() -> int:
    import torch

    return torch.get_num_threads()
