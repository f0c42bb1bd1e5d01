"""SCR on video clips: tiny random checkpoints with their real video processors (Qwen2-VL, Qwen2.5-VL,
Qwen3-VL, LLaVA-OneVision) and one family without native video (LLaVA: a multi-image prompt of the frames),
on clips the tests write (a moving square, .mp4 through PyAV and .gif through Pillow).

What is checked is the mechanics (docs/method.md "Video clips"): one plan grid per temporal slice, sized as
the processor's video grid says; neighbours inside their slice; λ = 1 is the vanilla model; the hooks edit
the prefill's planned positions only; a one-frame clip against the same picture as an image. On random
weights λ does not always change a clip's tokens, so effects are not asserted.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scr_core import SCRConfig, render_heatmap
from scr_core.errors import ConfigError
from scr_core.plan import plan_arrays
from scr_core.selection import PAPER_GRID_PATCHES, slice_budget, source_capacity
from scr_core.testbed.clips import moving_square, write_clip
from scr_core.video import Clip, SampledClip

from .conftest import family_pipe
from .test_families import _record_hooked

NATIVE = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision")
FAMILIES = (*NATIVE, "llava")
PROMPT = "Describe the clip."


@functools.cache
def _checkpoint(family: str, root: str) -> Path:
    from scr_core.testbed.tiny import build_tiny_llava
    from scr_core.testbed.tiny_families import BUILDERS
    from scr_core.testbed.tiny_modern import BUILDERS as MODERN

    out = Path(root) / family
    if family == "llava":
        return build_tiny_llava(out, seed=0)
    return {**BUILDERS, **MODERN}[family](out)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("tiny-video"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    frames = moving_square(24, 96, 64)
    return {suffix: write_clip(folder / f"square{suffix}", frames, fps=8) for suffix in (".mp4", ".gif")}


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def vpipe(family, root):
    return family_pipe(_checkpoint(family, root))


def expected_slices(pipe, batch) -> list[tuple[int, int]]:
    """(rows, cols) of every slice, from the processor's own outputs (not from the layout)."""
    inputs, config = batch.inputs, pipe.model.config
    if "video_grid_thw" in inputs:  # Qwen: (slices, H, W) patches per clip, merged 2x2
        merge = config.vision_config.spatial_merge_size
        return [(h // merge, w // merge) for t, h, w in inputs["video_grid_thw"].tolist() for _ in range(t)]
    if "pixel_values_videos" in inputs:  # OneVision: every frame pooled to ceil(side / 2) square
        side = math.ceil(config.vision_config.image_size // config.vision_config.patch_size / 2)
        return [(side, side)] * int(inputs["pixel_values_videos"].shape[0] * inputs["pixel_values_videos"].shape[1])
    side = config.vision_config.image_size // config.vision_config.patch_size  # LLaVA: one image per frame
    return [(side, side)] * int(inputs["pixel_values"].shape[0])


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_plan_has_one_grid_per_slice_sized_as_the_processor_says(vpipe, family, clips, suffix):
    batch = vpipe.prepare(clips[suffix], PROMPT)
    (clip,) = batch.images[0]
    assert isinstance(clip, SampledClip) and len(clip.frames) >= 2
    diagnosis = vpipe.diagnose(batch)[0]
    slices = expected_slices(vpipe, batch)
    assert [(g.height, g.width) for g in diagnosis.plan.grids] == slices
    assert [(g.height, g.width) for g in batch.layout.grids] == slices
    assert all(g.is_slice and g.image == 0 for g in batch.layout.grids)
    per_slice = vpipe.adapter.frames_per_slice()
    assert [g.frames for g in batch.layout.grids] == [(i * per_slice, (i + 1) * per_slice) for i in range(len(slices))]
    token = getattr(vpipe.model.config, "video_token_id", None) if family in NATIVE else vpipe.model.config.image_token_id
    count = int((batch.inputs["input_ids"][0] == token).sum())
    newline = 1 if family == "llava_onevision" else 0  # OneVision ends a clip with one newline feature
    assert count == sum(h * w for h, w in slices) + newline
    cfg = SCRConfig()
    for gp, (h, w) in zip(diagnosis.plan.grids, slices):  # the default K per slice always fits
        assert gp.num_sources <= slice_budget(h, w, cfg) <= max(1, source_capacity(h, w))
    assert len(diagnosis.maps) == len(slices) and np.isfinite(diagnosis.entropy)


def test_every_neighbours_owner_is_in_its_slice(vpipe, clips):
    batch = vpipe.prepare(clips[".mp4"], PROMPT)
    plan = vpipe.diagnose(batch, config=SCRConfig(slice_k=1, exclude_border=False))[0].plan
    arrays = plan_arrays([plan], batch.layout)
    slice_of = {int(p): i for i, g in enumerate(batch.layout.grids) for p in g.positions}
    assert len(arrays.neighbours) > 0
    for (_, neighbour), (_, owner) in zip(arrays.neighbours.tolist(), arrays.owners.tolist()):
        assert slice_of[neighbour] == slice_of[owner]


def test_lambda_one_is_the_vanilla_model(vpipe, clips):
    batch = vpipe.prepare(clips[".gif"], PROMPT)
    vanilla = vpipe.caption(batch, scr=None, max_new_tokens=6)[0]
    same = vpipe.caption(batch, scr=SCRConfig(lam=1.0), max_new_tokens=6)[0]
    assert same.token_ids == vanilla.token_ids and same.plan is not None
    assert sum(g.num_sources for g in same.plan.grids) > 0


def test_hooks_edit_the_planned_prefill_positions_and_no_decode_step(vpipe, clips):
    layer = 2
    batch = vpipe.prepare(clips[".mp4"], PROMPT)
    plan = vpipe.diagnose(batch, config=SCRConfig(hook_layers=(layer,)))[0].plan
    raw, edited = _record_hooked(vpipe, batch, [plan], (layer,), 3)
    raw, edited = raw[layer], edited[layer]
    assert [t.shape[1] for t in raw] == [batch.layout.seq_len, 1, 1]
    assert all(torch.equal(raw[s], edited[s]) for s in (1, 2))
    changed = set(torch.nonzero((raw[0] != edited[0]).any(dim=-1)[0]).flatten().tolist())
    planned = set()
    for grid, gp in zip(batch.layout.grids, plan.grids):
        planned |= set(grid.positions[list(gp.sources) + list(gp.neighbours)].tolist())
    assert changed == planned and planned


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "llava"])
def test_a_one_frame_clip_is_the_same_picture_as_an_image(family, root):
    """Qwen2-VL's processor repeats an image over its temporal patch as it pads a one-frame clip, and LLaVA
    reads a clip's frame as an image: the same grid, map, plan and tokens. (Qwen3-VL puts a timestamp before
    each slice and resizes clips with another filter; OneVision pools a clip's frames: not the same input.)"""
    pipe = family_pipe(_checkpoint(family, root))
    frame = moving_square(1, 128, 96)[0]
    cfg = SCRConfig(k=2, slice_k=2)
    as_image, as_clip = pipe.prepare(Image.fromarray(frame), PROMPT), pipe.prepare(Clip([frame]), PROMPT)
    assert [(g.height, g.width) for g in as_image.layout.grids] == [(g.height, g.width) for g in as_clip.layout.grids]
    image_diag, clip_diag = pipe.diagnose(as_image, config=cfg)[0], pipe.diagnose(as_clip, config=cfg)[0]
    np.testing.assert_allclose(image_diag.maps[0], clip_diag.maps[0], rtol=1e-4, atol=1e-6)
    assert image_diag.plan.grids == clip_diag.plan.grids
    assert pipe.caption(as_image, scr=cfg, max_new_tokens=6)[0].token_ids == \
        pipe.caption(as_clip, scr=cfg, max_new_tokens=6)[0].token_ids


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl", "llava_onevision", "llava"])
def test_clips_and_images_mixed_in_one_prompt_and_a_batch(family, root, clips):
    pipe = family_pipe(_checkpoint(family, root))
    picture = Image.fromarray(moving_square(1, 128, 128)[0])
    batch = pipe.prepare([[clips[".mp4"], picture], [picture]], [PROMPT, "Describe the image."])
    first, second = batch.layout.grids_of(0), batch.layout.grids_of(1)
    assert any(g.is_slice for g in first) and {g.image for g in first if g.is_slice} == {0}
    assert {g.image for g in first if not g.is_slice} == {1} and not any(g.is_slice for g in second)
    results = pipe.caption(batch, scr=SCRConfig(k=4), max_new_tokens=3)
    assert len(results) == 2 and all(len(r.plan.grids) == len(batch.layout.grids_of(i)) for i, r in enumerate(results))


def test_slice_budget_rule():
    cfg = SCRConfig()
    assert slice_budget(24, 24, cfg) == 32  # the paper's grid keeps the paper's K
    assert slice_budget(12, 20, cfg) == round(32 * 240 / PAPER_GRID_PATCHES)
    assert slice_budget(4, 5, cfg) == 1 and slice_budget(2, 9, cfg) == 0  # no interior: nothing to take
    assert slice_budget(4, 5, cfg.with_(slice_k=2)) == 2
    with pytest.raises(ConfigError, match="slice_k=3 does not fit a 4x5 slice"):
        slice_budget(4, 5, cfg.with_(slice_k=3))
    with pytest.raises(ConfigError, match="slice_k"):
        SCRConfig(slice_k=0)


def test_an_explicit_slice_k_that_cannot_fit_is_one_config_error(root, clips):
    pipe = family_pipe(_checkpoint("qwen2_vl", root))
    with pytest.raises(ConfigError, match="does not fit") as err:
        pipe.caption(clips[".mp4"], scr=SCRConfig(slice_k=50), max_new_tokens=2)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_heatmap_draws_a_strip_of_slices(family, root, clips):
    pipe = family_pipe(_checkpoint(family, root))
    batch = pipe.prepare(clips[".gif"], PROMPT)
    diagnosis = pipe.diagnose(batch)[0]
    strip = render_heatmap(batch.images[0], diagnosis, size=96)
    slices = len(diagnosis.plan.grids)
    assert strip.shape[1] >= slices * 96 and strip.shape[2] == 3  # the slices side by side
    with pytest.raises(Exception, match="clip's slices"):
        render_heatmap(Image.fromarray(moving_square(1)[0]), diagnosis)
