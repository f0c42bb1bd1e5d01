"""The public API the shells (ComfyUI nodes, ONNX exporter) build on: prepared batches, plans as
data, progress and stop, heatmaps over every grid, lifecycle, declared options, torch-free types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scr_core import (GenerationInterrupted, GridPlan, LoadOptions, PlanArrays, RedistributionPlan, SCRConfig,
                      plan_arrays, render_heatmap)
from scr_core.errors import ConfigError, InputError, LayoutError, ModelLoadError, ReleasedError
from scr_core.heatmap import FOOTER_HEIGHT, PANEL_GAP
from scr_core.layout import VisualGrid, VisualLayout
from scr_core.pipeline import PreparedBatch, SCRPipeline
from scr_core.redistribution import BatchEdit

from .conftest import family_pipe
from .reference import ref_redistribute

ROOT = Path(__file__).resolve().parents[1]


def _image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))


def no_hooks_left(pipe) -> bool:
    layers = pipe.adapter.decoder_layers()
    return all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in layers) and \
        not pipe.model._forward_hooks and not pipe.model._forward_pre_hooks and \
        "get_image_features" not in vars(pipe.model.base_model)  # the shared vision features are put back


class TowerCounter:
    """Counts forward calls of a vision module (a real forward hook, removed on exit)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.calls = module, 0

    def __enter__(self):
        self.handle = self.module.register_forward_hook(lambda *a: setattr(self, "calls", self.calls + 1))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


# -- prepared inputs --------------------------------------------------------------------------
def test_prepared_batch_gives_the_same_tokens_and_runs_the_vision_tower_once(pipe, images):
    prompts = ["describe the image .", "is there a dog ?"]
    cfg = SCRConfig(k=4)
    one_call = pipe.caption(images[:2], prompts, scr=cfg, max_new_tokens=6)
    tower = pipe.model.model.vision_tower
    with TowerCounter(tower) as counter:
        batch = pipe.prepare(images[:2], prompts)
        diagnoses = pipe.diagnose(batch, config=cfg)
        vanilla = pipe.caption(batch, scr=None, max_new_tokens=6)
        with_plan = pipe.caption(batch, scr=[d.plan for d in diagnoses], max_new_tokens=6)
        with_cfg = pipe.caption(batch, scr=cfg, max_new_tokens=6)
    assert counter.calls == 1
    assert isinstance(batch, PreparedBatch) and batch.batch_size == 2 and batch.prompts == tuple(prompts)
    assert [r.token_ids for r in with_plan] == [r.token_ids for r in one_call]
    assert [r.token_ids for r in with_cfg] == [r.token_ids for r in one_call]
    assert [r.plan for r in with_cfg] == [d.plan for d in diagnoses] == [r.plan for r in one_call]
    assert [r.token_ids for r in vanilla] == [r.token_ids for r in pipe.caption(images[:2], prompts, scr=None,
                                                                                 max_new_tokens=6)]


def test_prepared_batch_refuses_a_second_prompt(pipe, images):
    batch = pipe.prepare(images[0], "describe the image .")
    with pytest.raises(InputError, match="already holds its prompts"):
        pipe.caption(batch, "another prompt")


def test_answer_prompt_is_what_answer_sends(pipe, images):
    direct = pipe.answer(images[0], "is there a dog ?", scr=None, max_new_tokens=3)[0]
    prepared = pipe.answer(pipe.prepare(images[0], pipe.answer_prompt("is there a dog ?")), scr=None,
                           max_new_tokens=3)[0]
    assert direct.token_ids == prepared.token_ids
    assert pipe.answer_prompt("is there a dog ?").endswith(pipe.adapter.short_answer_suffix)


# -- plans as data ----------------------------------------------------------------------------
def test_plan_json_round_trip_and_refusals(pipe, images):
    batch = pipe.prepare(images[0], "describe the image .")
    plan = pipe.diagnose(batch, config=SCRConfig(k=4))[0].plan
    text = json.dumps(plan.to_dict())
    again = RedistributionPlan.from_dict(json.loads(text))
    assert again == plan
    assert pipe.caption(batch, scr=again, max_new_tokens=4)[0].token_ids == \
        pipe.caption(batch, scr=plan, max_new_tokens=4)[0].token_ids

    data = plan.to_dict()
    wrong_size = {**data, "grids": [{**data["grids"][0], "height": 7, "width": 7,
                                     "sources": [], "neighbours": [], "owners": []}]}
    with pytest.raises(LayoutError, match="7x7 but image grid 0 of prompt 0 is 8x8"):
        pipe.caption(batch, scr=RedistributionPlan.from_dict(wrong_size), max_new_tokens=2)
    two_grids = {**data, "grids": data["grids"] * 2}
    with pytest.raises(LayoutError, match="has 1 image grids but its plan has 2"):
        pipe.caption(batch, scr=RedistributionPlan.from_dict(two_grids), max_new_tokens=2)
    too_deep = {**data, "hook_layers": [pipe.depth]}
    with pytest.raises(ConfigError, match="decoder layers"):
        pipe.caption(batch, scr=RedistributionPlan.from_dict(too_deep), max_new_tokens=2)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(lam=True), "plan.lam"),
    (lambda d: d.update(lam=float("nan")), "plan.lam"),
    (lambda d: d.update(hook_layers=[]), "hook_layers"),
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d.pop("grids"), "missing grids"),
    (lambda d: d["grids"][0].update(sources=[999]), "outside the 8x8 grid"),
    (lambda d: d["grids"][0].update(owners=d["grids"][0]["owners"][:-1]), "one owner each"),
    (lambda d: d["grids"][0].update(neighbours=[d["grids"][0]["sources"][0]] + d["grids"][0]["neighbours"][1:]),
     "both source and neighbour"),
    (lambda d: d["grids"][0].update(owners=[d["grids"][0]["neighbours"][1]] + d["grids"][0]["owners"][1:]),
     "not a source"),
    (lambda d: d["grids"][0].update(sources=["9"]), "expected an integer"),
])
def test_plan_from_dict_names_what_is_wrong(change, message):
    plan = RedistributionPlan((GridPlan(8, 8, (18, 45), (9, 10, 11, 36, 37), (18, 18, 18, 45, 45)),), 1.1, (0, 1))
    data = json.loads(json.dumps(plan.to_dict()))
    assert RedistributionPlan.from_dict(data) == plan
    change(data)
    with pytest.raises(ConfigError, match=message):
        RedistributionPlan.from_dict(data)


def test_a_far_neighbour_is_refused():
    data = RedistributionPlan((GridPlan(8, 8, (18,), (40,), (18,)),), 1.1, (0,)).to_dict()
    with pytest.raises(ConfigError, match="not an 8-neighbour"):
        RedistributionPlan.from_dict(data)


def test_plans_with_different_hook_layers_or_lam_in_one_batch_are_refused(pipe, images):
    batch = pipe.prepare(images[:2], "describe the image .")
    plans = [d.plan for d in pipe.diagnose(batch, config=SCRConfig(k=4))]
    other = RedistributionPlan(plans[1].grids, plans[1].lam, (0,))
    with pytest.raises(LayoutError, match="share hook_layers"):
        pipe.caption(batch, scr=[plans[0], other], max_new_tokens=2)
    with pytest.raises(LayoutError, match="share lam"):
        pipe.caption(batch, scr=[plans[0], RedistributionPlan(plans[1].grids, 1.5, plans[1].hook_layers)],
                     max_new_tokens=2)


def apply_scr_map(hidden: np.ndarray, arrays: PlanArrays) -> np.ndarray:
    """The visual-token form applied in numpy, the way the ai.scr op reads it: per prompt, gather
    the visual rows, then every source / neighbour row of the map from the *pre-edit* states."""
    out = hidden.copy()
    for b in range(arrays.batch_size):
        n = int(arrays.num_visual[b])
        positions, smap = arrays.visual_positions[b, :n], arrays.scr_map[b, :n]
        visual = hidden[b, positions]
        edited = visual.copy()
        for v, owner in enumerate(smap):
            if owner == v:
                edited[v] = visual[v] / arrays.lam
            elif owner >= 0:
                edited[v] = visual[v] + (arrays.lam - 1) * visual[owner]
        out[b, positions] = edited
    return out


def _random_plan(grids, rng, lam: float, hooks=(0,)) -> RedistributionPlan:
    from scr_core.selection import select_sources

    return RedistributionPlan(tuple(select_sources(rng.random((g.height, g.width)),
                                                   SCRConfig(k=min(3, ((g.height - 1) // 2) * ((g.width - 1) // 2))))
                                    for g in grids), lam, hooks)


@pytest.mark.parametrize("family, images, options", [
    ("qwen2_vl", [[_image(112, 128, 0), _image(96, 96, 1)], [_image(96, 96, 2)]], {}),  # 2 images, 2 sizes
    ("internvl", [[_image(100, 200, 3)], [_image(96, 96, 4), _image(96, 96, 5)]], {"max_tiles": 4}),  # tiles
])
def test_plan_arrays_match_the_numpy_reference_on_multi_grid_prompts(family, images, options, family_dir):
    pipe = family_pipe(family_dir(family), **options)
    batch = pipe.prepare(images, ["describe the image .", "is there a red circle in the image ?"])
    layout = batch.layout
    assert len(layout.grids_of(0)) >= 2
    rng = np.random.default_rng(0)
    plans = [_random_plan(layout.grids_of(s), rng, 1.3) for s in range(layout.batch_size)]
    arrays = plan_arrays(plans, layout)
    hidden = rng.standard_normal((layout.batch_size, layout.seq_len, 5))

    # the map form against the explicit-matrix reference, prompt by prompt and grid by grid
    expected = hidden.copy()
    for sample, plan in enumerate(plans):
        for grid, gp in zip(layout.grids_of(sample), plan.grids):
            rows = grid.positions
            expected[sample, rows] = ref_redistribute(hidden[sample, rows], list(gp.sources),
                                                      dict(zip(gp.neighbours, gp.owners)), 1.3)
    np.testing.assert_allclose(apply_scr_map(hidden, arrays), expected, atol=1e-12)
    # the flat form, as the PyTorch hooks apply it
    edit = BatchEdit.from_arrays(arrays)
    np.testing.assert_allclose(edit.apply(torch.from_numpy(hidden)).numpy(), expected, atol=1e-12)
    # padding and the contiguous-block shortcut
    assert (arrays.visual_positions[arrays.scr_map == -1] >= -1).all()
    assert arrays.num_visual.tolist() == [sum(g.height * g.width for g in layout.grids_of(s))
                                          for s in range(layout.batch_size)]
    if family == "qwen2_vl":
        assert arrays.visual_start is None  # two images with text between them: not one block


def test_plan_arrays_single_block_form():
    grids = (VisualGrid(0, 4, 4, np.arange(3, 19), 0), VisualGrid(1, 4, 4, np.arange(5, 21), 0))
    layout = VisualLayout(grids, 2, 24)
    plans = [RedistributionPlan((GridPlan(4, 4, (5,), (0, 1), (5, 5)),), 1.1, (0,)),
             RedistributionPlan((GridPlan(4, 4, (), (), ()),), 1.1, (0,))]
    arrays = plan_arrays(plans, layout)
    assert arrays.visual_start.tolist() == [3, 5]
    assert arrays.scr_map[0, :6].tolist() == [5, 5, -1, -1, -1, 5] and (arrays.scr_map[1] == -1).all()
    assert arrays.sources.tolist() == [[0, 8]] and arrays.owners.tolist() == [[0, 8], [0, 8]]


# -- progress and stop ------------------------------------------------------------------------
def test_progress_is_reported_per_token(pipe, images):
    seen = []
    result = pipe.caption(images[0], "describe the image .", scr=SCRConfig(k=4), max_new_tokens=5,
                          min_new_tokens=5, progress=lambda step, total: seen.append((step, total)))[0]
    assert len(result.token_ids) == 5
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5), (5, 5)]


def test_stop_check_ends_generation_within_one_token_and_leaves_no_hook(pipe, images):
    steps = []

    def stop_after_three():
        return len(steps) >= 3

    with pytest.raises(GenerationInterrupted, match="stopped after 3 of 40") as caught:
        pipe.caption(images[:2], "describe the image .", scr=SCRConfig(k=4), max_new_tokens=40, min_new_tokens=40,
                     progress=lambda step, total: steps.append(step), should_stop=stop_after_three)
    partial = caught.value.results
    assert len(partial) == 2 and all(len(r.token_ids) == 3 for r in partial)
    assert partial[0].plan is not None and no_hooks_left(pipe)
    full = pipe.caption(images[:2], "describe the image .", scr=SCRConfig(k=4), max_new_tokens=3, min_new_tokens=3)
    assert [r.token_ids for r in partial] == [r.token_ids for r in full]
    with pytest.raises(GenerationInterrupted, match="before generation"):
        pipe.caption(images[0], scr=None, should_stop=lambda: True)
    assert no_hooks_left(pipe)


# -- heatmaps over every grid -----------------------------------------------------------------
def test_heatmap_of_a_non_square_image(pipe):
    picture = _image(90, 200, 7)
    batch = pipe.prepare(picture, "describe the image .")
    diagnosis = pipe.diagnose(batch, config=SCRConfig(k=4))[0]
    heat = render_heatmap(batch.images[0], diagnosis)
    assert heat.dtype == np.uint8 and heat.shape == (round(512 * 90 / 200) + FOOTER_HEIGHT, 512, 3)


@pytest.mark.parametrize("family, prompt_images, options, panels", [
    ("qwen2_vl", [_image(112, 128, 0), _image(96, 96, 1)], {}, [(512, 448), (512, 512)]),
    ("internvl", [_image(100, 200, 3)], {"max_tiles": 4}, [(512, 256), (512, 256)]),  # tiles' mosaic, thumbnail
])
def test_heatmap_draws_every_grid(family, prompt_images, options, panels, family_dir):
    pipe = family_pipe(family_dir(family), **options)
    batch = pipe.prepare([prompt_images], "describe the image .")
    diagnosis = pipe.diagnose(batch, config=SCRConfig(k=2))[0]
    if family == "internvl":
        regions = [g.region for g in diagnosis.grids]
        assert regions == [(0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0)]
    heat = render_heatmap(batch.images[0], diagnosis)
    width = sum(w for w, _ in panels) + PANEL_GAP * (len(panels) - 1)
    assert heat.shape == (max(h for _, h in panels) + FOOTER_HEIGHT, width, 3)


# -- lifecycle --------------------------------------------------------------------------------
def test_to_and_release(tiny_llava_dir, images):
    pipe = SCRPipeline.from_pretrained(tiny_llava_dir)
    assert pipe.to("cpu") is pipe and pipe.device.type == "cpu"
    batch = pipe.prepare(images[0], "describe the image .")
    pipe.release()
    assert pipe.released
    with pytest.raises(ReleasedError, match="released"):
        pipe.caption(batch)
    with pytest.raises(ReleasedError):
        pipe.prepare(images[0])


@pytest.mark.parametrize("fields, error, message", [
    ({"dtype": "float17"}, ConfigError, "unknown dtype 'float17'"),
    ({"device": "gpu"}, ConfigError, "unknown device 'gpu'"),
    ({"attn_implementation": ""}, ConfigError, "attn_implementation"),
    ({"adapter_options": [1]}, ConfigError, "adapter_options must be a dict"),
])
def test_load_options_are_checked_before_loading(fields, error, message):
    with pytest.raises(error, match=message):
        LoadOptions(**fields)


def test_loading_errors_come_before_the_weights(tiny_llava_dir, family_dir, tmp_path, monkeypatch):
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no usable CUDA GPU"):
            SCRPipeline.from_pretrained(tiny_llava_dir, device="cuda")
    with pytest.raises(ModelLoadError, match="model folder not found"):
        SCRPipeline.from_pretrained("some_dir_that_does_not_exist")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="offline"):
        SCRPipeline.from_pretrained("owner/some-model")
    with pytest.raises(ConfigError, match="llava models have no option 'max_tiles'; their options: none"):
        SCRPipeline.from_pretrained(tiny_llava_dir, adapter_options={"max_tiles": 2})
    with pytest.raises(ConfigError, match="max_pixels must be >= 1"):
        SCRPipeline.from_pretrained(family_dir("qwen2_vl"), adapter_options={"max_pixels": 0})


def test_declared_processor_options_reach_the_processor(family_dir):
    pipe = SCRPipeline.from_pretrained(family_dir("qwen2_vl"), adapter_options={"max_pixels": 48 * 48})
    layout = pipe.prepare([_image(100, 200, 2)], "describe the image .").layout
    assert [(g.height, g.width) for g in layout.grids] == [(2, 4)]


def test_the_users_tokenizer_keeps_its_padding_side(tiny_llava_dir, images):
    pipe = SCRPipeline.from_pretrained(tiny_llava_dir)
    pipe.processor.tokenizer.padding_side = "right"
    batch = pipe.prepare(images[:2], ["describe the image .", "is there a red circle next to a square ?"])
    assert pipe.processor.tokenizer.padding_side == "right"
    mask = batch.inputs["attention_mask"]
    assert mask[:, -1].all() and not mask[:, 0].all()  # left-padded all the same


# -- declared options make CLI flags ----------------------------------------------------------
def test_cli_flags_come_from_adapter_declarations(monkeypatch):
    from scr_core.adapters import ADAPTERS, AdapterOption, LlavaAdapter
    from scr_core.cli import build_parser

    class WithOption(LlavaAdapter):
        model_types = ("test_family",)
        options = (AdapterOption("crop_margin", int, 0, "pixels cut from each side", minimum=0),)

        def __init__(self, model, processor, crop_margin: int = 0) -> None:
            super().__init__(model, processor)
            self.crop_margin = crop_margin

    monkeypatch.setitem(ADAPTERS, "test_family", WithOption)
    parser = build_parser()
    args = parser.parse_args(["caption", "x.png", "--crop-margin", "3"])
    assert args.family_crop_margin == 3
    assert "--crop-margin" in parser._subparsers._group_actions[0].choices["diagnose"].format_help()
    built = build_parser().parse_args(["caption", "x.png", "--max-tiles", "2", "--max-pixels", "9"])
    assert (built.family_max_tiles, built.family_max_pixels) == (2, 9)


def test_family_options_and_defaults_are_checked_once_by_the_base():
    """The base checks every declared adapter option (direct construction as much as loading) and keeps it
    as an attribute; families state hook fractions and a shared K as data."""
    from scr_core.adapters import (Adapter, AdapterOption, Gemma3Adapter, Idefics3Adapter, InternVLAdapter,
                                   LlavaNextAdapter, Qwen3VLAdapter)

    assert InternVLAdapter(None, None).max_tiles == 1 and InternVLAdapter(None, None, max_tiles=6).max_tiles == 6
    assert Idefics3Adapter(None, None, no_image_splitting=None).no_image_splitting == 0
    refused = ((InternVLAdapter, {"max_tiles": 0}, "internvl option max_tiles must be >= 1"),
               (Idefics3Adapter, {"no_image_splitting": 2}, "no_image_splitting must be 0 or 1"),
               (Gemma3Adapter, {"pan_and_scan": True}, "pan_and_scan must be int"),
               (Gemma3Adapter, {"max_tiles": 2}, "take no option 'max_tiles'"))
    for cls, options, message in refused:
        with pytest.raises(ConfigError, match=message):
            cls(None, None, **options)
    assert AdapterOption("n", int, 1, "", minimum=1, maximum=12).bounds == "between 1 and 12"
    assert [cls.shares_k for cls in (Adapter, InternVLAdapter, LlavaNextAdapter, Qwen3VLAdapter)] == [
        False, True, True, False]
    assert Gemma3Adapter(None, None).default_hook_layers(28) == tuple(range(16))  # the first 16/28
    assert LlavaNextAdapter(None, None).default_hook_layers(32) == tuple(range(12))  # the first 12/32
    assert InternVLAdapter(None, None).default_hook_layers(28) == tuple(range(16))  # the paper's 0..15


def test_scr_config_refuses_booleans():
    with pytest.raises(ConfigError, match="lam"):
        SCRConfig(lam=True)
    with pytest.raises(ConfigError, match="seed"):
        SCRConfig(seed=False)


# -- result types without torch ---------------------------------------------------------------
def test_result_and_plan_types_import_without_torch(tmp_path):
    script = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import json, numpy as np
from scr_core import (Diagnosis, GenerationResult, GridPlan, PlanArrays, RedistributionPlan, SCRConfig, Timings,
                      VisualGrid, VisualLayout, plan_arrays, render_heatmap, LoadOptions, SCRError)
plan = RedistributionPlan((GridPlan(4, 4, (5,), (0, 1), (5, 5)),), 1.1, (0,))
plan = RedistributionPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
layout = VisualLayout((VisualGrid(0, 4, 4, np.arange(3, 19), 0),), 1, 20)
arrays = plan_arrays([plan], layout)
diag = Diagnosis((np.random.default_rng(0).random((4, 4)),), 2.0, plan, layout.grids)
result = GenerationResult("a cat", (1, 2), plan, diag, Timings(1.0, 2.0, 3.0, 4.0, 2))
json.dumps(result.to_dict())
heat = render_heatmap(np.zeros((30, 40, 3), np.uint8), diag)
assert 'torch' not in sys.modules and 'transformers' not in sys.modules
print('ok', arrays.scr_map.tolist()[0][:6], heat.shape)
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok [5, 5, -1, -1, -1, 5]")
