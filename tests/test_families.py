"""Every model family through the same pipeline, on tiny random checkpoints saved and reloaded
like a user's folder (``scr_core.testbed.tiny_families``)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scr_core.adapters import ADAPTERS, ChameleonAdapter, GenericAdapter, InternVLAdapter, Qwen2VLAdapter, adapter_for
from scr_core.adapters.chameleon import chameleon_hook_count
from scr_core.config import SCRConfig
from scr_core.diagnosis import plan_from_maps
from scr_core.errors import ConfigError, LayoutError, UnsupportedModelError
from scr_core.pipeline import SCRPipeline
from scr_core.redistribution import BatchEdit, redistribution
from scr_core.selection import proportional_budgets, source_capacity

from .conftest import family_pipe as _pipe

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("qwen2_vl", "qwen2_5_vl", "internvl", "chameleon")
ADAPTER_OF = {"qwen2_vl": Qwen2VLAdapter, "qwen2_5_vl": Qwen2VLAdapter, "internvl": InternVLAdapter,
              "chameleon": ChameleonAdapter}
PROMPTS = ["describe the image .", "is there a red circle next to a blue square in the image ?"]
K = 2


def _image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))


# Qwen2-VL (16 px per merged token): 112x128 -> a 7x8 grid, 96x96 -> 6x6.
# InternVL: one 96 px tile -> 6x6 per image.   Chameleon: 64 px -> 8x8 VQ codes per image.
IMAGE_A = _image(112, 128, 0)
IMAGE_B = _image(96, 96, 1)
WIDE = _image(100, 200, 2)  # InternVL with max_tiles=4: 2x1 tiles + thumbnail

# Hand-computed layouts for the batch [IMAGE_A + PROMPTS[0], IMAGE_B + PROMPTS[1]] (left-padded):
# every template puts 3 tokens before the first visual token ("<|im_start|> user <|vision_start|>",
# "<|im_start|> user <img>", "USER : <racm3:break>"); the word tokenizer drops newlines.
# PROMPTS[0] has 4 words and PROMPTS[1] 14, so sample 0 is padded by 10 tokens minus the
# difference in visual tokens.
GRIDS = {"qwen2_vl": [(7, 8), (6, 6)], "qwen2_5_vl": [(7, 8), (6, 6)], "internvl": [(6, 6), (6, 6)],
         "chameleon": [(8, 8), (8, 8)]}


@functools.cache
def _eager(path: Path):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path, attn_implementation="eager").eval()


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture
def fpipe(family, family_dir) -> SCRPipeline:
    return _pipe(family_dir(family))


def expected_positions(family: str) -> list[list[int]]:
    """Visual positions of the two-prompt batch, computed by hand from the template layout."""
    (h0, w0), (h1, w1) = GRIDS[family]
    # after the grid: the end token (<|vision_end|>, </img>, <eoss>), the prompt's words, and 3 more
    # ("<|im_end|> <|im_start|> assistant", or "ASSISTANT : <sep>" for Chameleon)
    lengths = [3 + h0 * w0 + 1 + 4 + 3, 3 + h1 * w1 + 1 + 14 + 3]
    seq = max(lengths)
    return [list(range(seq - n + 3, seq - n + 3 + h * w)) for n, (h, w) in zip(lengths, GRIDS[family])]


# -- registry, decoder, layer rules ---------------------------------------------------------
def test_registry_knows_every_family():
    modern = {"llava_next", "llava_onevision", "gemma3", "qwen3_vl", "qwen3_vl_moe", "idefics3", "smolvlm"}  # test_families_modern
    assert set(FAMILIES) | {"llava"} == set(ADAPTERS) - modern
    assert list(ADAPTERS)[0] == "llava"


def test_unknown_model_type_names_the_generic_adapter():
    model = torch.nn.Module()
    model.config = type("Config", (), {"model_type": "mystery_vlm"})()
    with pytest.raises(UnsupportedModelError, match="mystery_vlm.*GenericAdapter.*--adapter generic"):
        adapter_for(model, None)


def test_decoder_config_and_attention_modules(fpipe, family):
    assert isinstance(fpipe.adapter, ADAPTER_OF[family])
    layers = fpipe.adapter.decoder_layers()
    assert len(layers) == 18
    for index, layer in enumerate(layers):
        # the attention capture reads layer_idx and receives the `scaling` kwarg
        assert layer.self_attn.layer_idx == index and isinstance(layer.self_attn.scaling, float)
        assert layer.self_attn.config is fpipe.adapter.decoder_config()
    assert fpipe.adapter.default_hook_layers(18) == tuple(range(9))  # first half of a shallow decoder


def test_paper_hook_layers_on_real_depths(fpipe, family):
    if family == "chameleon":
        assert fpipe.adapter.default_hook_layers(32) == tuple(range(16))  # Chameleon-7B: 0-15
        assert fpipe.adapter.default_hook_layers(48) == tuple(range(21))  # Chameleon-30B: 0-20
    else:
        assert fpipe.adapter.default_hook_layers(28) == tuple(range(16))  # Qwen2-VL-7B (28), InternVL
        assert fpipe.adapter.default_hook_layers(32) == tuple(range(16))


def test_chameleon_layer_rule():
    assert [chameleon_hook_count(d) for d in (18, 32, 40, 48, 64)] == [9, 16, 18, 21, 26]


# -- layout ------------------------------------------------------------------------------
def test_layout_equals_hand_computed_positions(fpipe, family):
    batch = fpipe.prepare([IMAGE_A, IMAGE_B], PROMPTS)
    layout = batch.layout
    assert layout.batch_size == 2
    for sample, (expected, (h, w)) in enumerate(zip(expected_positions(family), GRIDS[family])):
        (grid,) = layout.grids_of(sample)
        assert (grid.height, grid.width) == (h, w)
        assert grid.positions.tolist() == expected
    ids = batch.inputs["input_ids"]
    visual = torch.zeros_like(ids, dtype=torch.bool)
    for grid in layout.grids:
        visual[grid.sample, grid.positions] = True
    # every image placeholder (Chameleon: before the VQ codes replace it) is in a grid, nothing else is
    assert torch.equal(visual, ids == fpipe.model.config.image_token_id)


def test_two_images_in_one_prompt_get_their_own_grids(fpipe, family):
    batch = fpipe.prepare([[IMAGE_A, IMAGE_B]], PROMPTS[0])
    grids = batch.layout.grids_of(0)
    assert [(g.height, g.width) for g in grids] == GRIDS[family]
    assert [g.image for g in grids] == [0, 1]
    first, second = grids
    assert first.positions[0] == 3
    assert second.positions[0] == first.positions[-1] + 3  # end token, start token, then the next grid


def test_internvl_tiles_each_get_a_grid_and_share_k(family_dir):
    pipe = _pipe(family_dir("internvl"), max_tiles=4)
    batch = pipe.prepare([[WIDE, IMAGE_B]], PROMPTS[0])
    grids = batch.layout.grids_of(0)
    assert [g.image for g in grids] == [0, 0, 0, 1]  # 2 tiles + thumbnail, then a one-tile image
    assert [g.positions[0] for g in grids] == [3, 39, 75, 113]  # 36 tokens per tile, </img> <img> between images
    (diag,) = pipe.diagnose([[WIDE, IMAGE_B]], PROMPTS[0], config=SCRConfig(k=5))
    budgets = [g.num_sources for g in diag.plan.grids]
    masses = [float(m.sum()) for m in diag.maps[:3]]
    assert budgets[:3] == proportional_budgets(5, masses, [4, 4, 4]) and sum(budgets[:3]) == 5
    assert budgets[3] == 4  # its own K=5, capped by what greedy placement fits on a 6x6 grid
    uniform = pipe.caption([[WIDE, IMAGE_B]], PROMPTS[0], scr=SCRConfig(k=5, selection="uniform"), max_new_tokens=2)
    assert [g.num_sources for g in uniform[0].plan.grids][:3] == [2, 2, 1]
    # the tiles' vision features, encoded once and shared, give the same tokens as a plain generate
    vanilla = pipe.caption([[WIDE, IMAGE_B]], PROMPTS[0], scr=None, max_new_tokens=5)[0]
    inputs = pipe.adapter.prepare([[WIDE, IMAGE_B]], [PROMPTS[0]])
    assert inputs["pixel_values"].shape[0] == 4
    with torch.no_grad():
        plain = pipe.model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert vanilla.token_ids == tuple(plain[0, inputs["input_ids"].shape[1]:].tolist())


def test_budget_split_rule():
    assert proportional_budgets(32, [1, 1, 1], [49] * 3) == [11, 11, 10]
    assert proportional_budgets(10, [0.5, 0.3, 0.2], [9, 9, 9]) == [5, 3, 2]
    assert proportional_budgets(10, [0.9, 0.05, 0.05], [4, 9, 9]) == [4, 3, 3]  # cap, then re-split
    assert proportional_budgets(10, [1, 1], [2, 3]) == [2, 3]  # never more than the caps
    assert proportional_budgets(3, [0, 0], [5, 5]) == [2, 1]  # no mass: equal split
    assert source_capacity(16, 16) == 49 and source_capacity(6, 6) == 4 and source_capacity(6, 6, False) == 9
    plan = plan_from_maps([np.ones((6, 6)), np.ones((6, 6))], SCRConfig(k=3, hook_layers=(0,)), [3, 0])
    assert [g.num_sources for g in plan.grids] == [3, 0] and plan.grids[1].neighbours == ()


def test_internvl_max_tiles_option_is_validated(family_dir):
    with pytest.raises(ConfigError, match="max_tiles"):
        _pipe(family_dir("internvl"), max_tiles=0)
    with pytest.raises(ConfigError, match="no option 'max_tiles'"):
        _pipe(family_dir("chameleon"), max_tiles=2)


def test_qwen_min_max_pixels(family_dir):
    pipe = SCRPipeline.from_pretrained(family_dir("qwen2_vl"), processor_kwargs={"max_pixels": 48 * 48})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the deprecated per-call path is not used
        layout = pipe.prepare([WIDE], PROMPTS[0]).layout
    assert [(g.height, g.width) for g in layout.grids] == [(2, 4)]  # 32x64 px <= 48*48 px


# -- plan, hooks ---------------------------------------------------------------------------
def test_plan_has_one_grid_per_image(fpipe, family):
    diagnoses = fpipe.diagnose([IMAGE_A, IMAGE_B], PROMPTS, config=SCRConfig(k=K))
    for diag, (h, w) in zip(diagnoses, GRIDS[family]):
        (gp,) = diag.plan.grids
        assert (gp.height, gp.width) == (h, w) and diag.maps[0].shape == (h, w)
        assert gp.num_sources == K and 0 < len(gp.neighbours) <= 8 * K
    (two,) = fpipe.diagnose([[IMAGE_A, IMAGE_B]], PROMPTS[0], config=SCRConfig(k=K))
    assert [(g.height, g.width, g.num_sources) for g in two.plan.grids] == [(h, w, K) for h, w in GRIDS[family]]


def _record_hooked(pipe, batch, plans, layer_ids, max_new_tokens):
    """Outputs of ``layer_ids`` before and after the SCR edit, for every forward of a generation."""
    layers = pipe.adapter.decoder_layers()
    edit = BatchEdit.build(plans, batch.layout)
    raw = {i: [] for i in layer_ids}
    edited = {i: [] for i in layer_ids}
    def keep(store):
        return lambda m, a, out: store.append((out[0] if isinstance(out, tuple) else out).clone())

    handles = [layers[i].register_forward_hook(keep(raw[i])) for i in layer_ids]
    try:
        with redistribution(layers, layer_ids, edit):
            handles += [layers[i].register_forward_hook(keep(edited[i])) for i in layer_ids]
            with torch.no_grad():
                pipe.model.generate(**batch.inputs, max_new_tokens=max_new_tokens, do_sample=False)
    finally:
        for handle in handles:
            handle.remove()
    return raw, edited


def test_hooks_change_exactly_the_planned_positions_and_no_decode_step(fpipe):
    diagnoses = fpipe.diagnose([IMAGE_A, IMAGE_B], PROMPTS, config=SCRConfig(k=K, hook_layers=(2,)))
    batch = fpipe.prepare([IMAGE_A, IMAGE_B], PROMPTS)
    raw, edited = _record_hooked(fpipe, batch, [d.plan for d in diagnoses], (2,), 3)
    raw, edited = raw[2], edited[2]
    assert [t.shape[1] for t in raw] == [batch.layout.seq_len, 1, 1]
    for step in (1, 2):
        assert torch.equal(raw[step], edited[step])
    changed = (raw[0] != edited[0]).any(dim=-1)
    for sample, diag in enumerate(diagnoses):
        (grid,) = batch.layout.grids_of(sample)
        gp = diag.plan.grids[0]
        planned = set(grid.positions[list(gp.sources) + list(gp.neighbours)].tolist())
        assert set(torch.nonzero(changed[sample]).flatten().tolist()) == planned


def test_adapter_never_touches_non_visual_positions(fpipe):
    """Default hook layers, two images in one prompt plus a one-image prompt, λ=2: at every hooked
    layer the edit changes visual positions only and leaves every other position bit-identical."""
    images, prompts = [[IMAGE_A, IMAGE_B], [IMAGE_B]], PROMPTS
    cfg = fpipe.resolve(SCRConfig(k=K, lam=2.0))
    diagnoses = fpipe.diagnose(images, prompts, config=cfg)
    batch = fpipe.prepare(images, prompts)
    raw, edited = _record_hooked(fpipe, batch, [d.plan for d in diagnoses], cfg.hook_layers, 2)
    visual = torch.zeros(2, batch.layout.seq_len, dtype=torch.bool)
    for grid in batch.layout.grids:
        visual[grid.sample, grid.positions] = True
    for layer in cfg.hook_layers:
        prefill_raw, prefill_edited = raw[layer][0], edited[layer][0]
        assert torch.equal(prefill_raw[~visual], prefill_edited[~visual])
        assert (prefill_raw[visual] != prefill_edited[visual]).any()
        assert torch.equal(raw[layer][1], edited[layer][1])


# -- diagnostic pass against eager attention ---------------------------------------------------
def test_diagnostic_map_equals_eager_attention(fpipe, family, family_dir):
    layers = (4, 5, 6, 7, 8, 9)
    cfg = SCRConfig(k=K, diag_layers=layers)
    diagnoses = fpipe.diagnose([IMAGE_A, IMAGE_B], PROMPTS, config=cfg)  # batch of 2, left-padded
    eager = _eager(family_dir(family))
    inputs = fpipe.adapter.prepare([[IMAGE_A], [IMAGE_B]], PROMPTS)
    layout = fpipe.adapter.layout(inputs)
    with torch.no_grad():
        out = eager(**inputs, output_attentions=True)
    for sample, diag in enumerate(diagnoses):
        att = torch.stack([out.attentions[i][sample] for i in layers]).double()  # (L, H, S, S)
        start = layout.text_query_start(sample)
        per_key = att[:, :, start:, :].mean(dim=(0, 1, 2)).numpy()
        (grid,) = layout.grids_of(sample)
        ref = per_key[grid.positions].reshape(grid.height, grid.width)
        assert np.abs(diag.maps[0] - ref).max() <= 1e-5
        assert diag.maps[0].std() > 0


# -- generation -----------------------------------------------------------------------------
def test_shared_vision_features_give_the_same_tokens_as_plain_generate(fpipe):
    """The pipeline's generation with the shared vision features == model.generate(**processor outputs)."""
    for images, prompts in (([IMAGE_A, IMAGE_B], PROMPTS), ([[IMAGE_A, IMAGE_B]], PROMPTS[0])):
        ours = fpipe.caption(images, prompts, scr=None, max_new_tokens=6)
        grouped = [list(i) if isinstance(i, list) else [i] for i in images]
        inputs = fpipe.adapter.prepare(grouped, [prompts] if isinstance(prompts, str) else prompts)
        with torch.no_grad():
            plain = fpipe.model.generate(**inputs, max_new_tokens=6, do_sample=False)
        assert [r.token_ids for r in ours] == [tuple(row) for row in plain[:, inputs["input_ids"].shape[1]:].tolist()]


def test_shared_features_keep_what_the_decoder_needs(fpipe, family):
    batch = fpipe.prepare([IMAGE_A, IMAGE_B], PROMPTS)
    kwargs = batch.inputs
    plain = fpipe.adapter.prepare([[IMAGE_A], [IMAGE_B]], PROMPTS)
    assert set(kwargs) == set(plain) and batch.vision.pooler_output is not None
    if family.startswith("qwen"):  # M-RoPE position ids are rebuilt from these
        assert kwargs["image_grid_thw"].tolist() == [[1, 14, 16], [1, 12, 12]]


def test_vision_encoder_runs_once_per_scr_caption(fpipe, family):
    encoder = {"chameleon": lambda m: m.model.vqmodel.encoder, "internvl": lambda m: m.model.vision_tower}.get(
        family, lambda m: m.model.visual)(fpipe.model)
    calls = []
    handle = encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        result = fpipe.caption(IMAGE_A, max_new_tokens=3, scr=SCRConfig(k=K))[0]
    finally:
        handle.remove()
    assert len(calls) == 1 and result.diagnosis is not None


def test_scr_generation_batch_of_two_and_two_images(fpipe, family):
    batch = fpipe.caption([IMAGE_A, IMAGE_B], PROMPTS, scr=SCRConfig(k=K), max_new_tokens=4)
    assert len(batch) == 2 and all(r.plan is not None and len(r.token_ids) == 4 for r in batch)
    two = fpipe.caption([[IMAGE_A, IMAGE_B]], PROMPTS[0], scr=SCRConfig(k=K), max_new_tokens=4)[0]
    assert [(g.height, g.width) for g in two.plan.grids] == GRIDS[family]
    identity = fpipe.caption([IMAGE_A, IMAGE_B], PROMPTS, scr=SCRConfig(k=K, lam=1.0), max_new_tokens=4)
    vanilla = fpipe.caption([IMAGE_A, IMAGE_B], PROMPTS, scr=None, max_new_tokens=4)
    assert [r.token_ids for r in identity] == [r.token_ids for r in vanilla]


# -- generic adapter ---------------------------------------------------------------------------
def test_generic_adapter_equals_llava_adapter(pipe, images):
    generic = SCRPipeline(pipe.model, pipe.processor, adapter=GenericAdapter(
        pipe.model, pipe.processor, image_token_id=pipe.model.config.image_token_id, grid=(8, 8),
        layers_path="model.language_model.layers", hook_layers=(0, 11)))
    cfg = SCRConfig(k=4)
    ours = generic.caption(images[:2], PROMPTS, scr=cfg, max_new_tokens=6)
    theirs = pipe.caption(images[:2], PROMPTS, scr=cfg, max_new_tokens=6)
    assert [r.plan for r in ours] == [r.plan for r in theirs]
    assert [r.token_ids for r in ours] == [r.token_ids for r in theirs]
    assert generic.adapter.decoder_config() is pipe.adapter.decoder_config()


def test_generic_adapter_with_a_start_end_span_equals_the_internvl_adapter(family_dir):
    native = _pipe(family_dir("internvl"))
    tok = native.processor.tokenizer
    adapter = GenericAdapter(native.model, native.processor, grid=(6, 6), layers_path="model.language_model.layers",
                             image_span=(tok.convert_tokens_to_ids("<img>"), tok.convert_tokens_to_ids("</img>")))
    generic = SCRPipeline(native.model, native.processor, adapter=adapter)
    cfg = SCRConfig(k=K)
    ours = generic.caption([IMAGE_A, [IMAGE_A, IMAGE_B]], PROMPTS, scr=cfg, max_new_tokens=5)
    theirs = native.caption([IMAGE_A, [IMAGE_A, IMAGE_B]], PROMPTS, scr=cfg, max_new_tokens=5)
    assert [r.plan for r in ours] == [r.plan for r in theirs]
    assert [r.token_ids for r in ours] == [r.token_ids for r in theirs]


def test_generic_adapter_layout_errors(pipe, images):
    model, processor = pipe.model, pipe.processor
    with pytest.raises(LayoutError, match="has no 'decoder'.*children are: .*language_model"):
        GenericAdapter(model, processor, image_token_id=1, grid=(8, 8), layers_path="model.decoder.layers")
    with pytest.raises(LayoutError, match="not a non-empty ModuleList"):
        GenericAdapter(model, processor, image_token_id=1, grid=(8, 8), layers_path="model.language_model")
    with pytest.raises(LayoutError, match="exactly one of"):
        GenericAdapter(model, processor, grid=(8, 8), layers_path="model.language_model.layers")
    path = "model.language_model.layers"
    wrong_grid = SCRPipeline(model, processor, adapter=GenericAdapter(
        model, processor, image_token_id=model.config.image_token_id, grid=(7, 7), layers_path=path))
    with pytest.raises(LayoutError, match="expected a multiple of 49"):
        wrong_grid.diagnose(images[0])
    bos, eos = processor.tokenizer.bos_token_id, processor.tokenizer.eos_token_id
    no_span = SCRPipeline(model, processor, adapter=GenericAdapter(
        model, processor, image_span=(bos, eos), grid=(8, 8), layers_path=path))
    with pytest.raises(LayoutError, match="do not pair up|no image span"):
        no_span.diagnose(images[0])


# -- command line ----------------------------------------------------------------------------
def run_cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "scr_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


# grids of a 200x90 picture: Qwen smart-resizes it to 80x176 px (5x11); InternVL with --max-tiles 2
# cuts 2x1 tiles plus a thumbnail; Chameleon and the LLaVA behind the generic adapter centre-crop.
CLI_GRIDS = {"qwen2_vl": [(5, 11)], "qwen2_5_vl": [(5, 11)], "internvl": [(6, 6)] * 3, "chameleon": [(8, 8)],
             "generic": [(8, 8)]}


@pytest.mark.parametrize("which", [*FAMILIES, "generic"])
def test_cli_caption_and_diagnose_heatmap(which, family_dir, tiny_llava_dir, tmp_path):
    """One process per family: caption --json, then diagnose --heatmap through cli.main."""
    image = tmp_path / "scene.png"
    Image.new("RGB", (200, 90), (200, 30, 30)).save(image)
    if which == "generic":
        from transformers import AutoConfig

        model = tiny_llava_dir
        extra = ["--adapter", "generic", "--image-token-id", AutoConfig.from_pretrained(model).image_token_id,
                 "--grid", "8x8", "--layers-path", "model.language_model.layers"]
    else:
        model = family_dir(which)
        extra = ["--max-tiles", "2"] if which == "internvl" else []
    out = run_cli("caption", image, "--model", model, "--k", K, "--json", "--max-new-tokens", 3, *extra)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["scr"] and result["timings"]["new_tokens"] == 3
    grids = result["plan"]["grids"]
    assert [(g["height"], g["width"]) for g in grids] == CLI_GRIDS[which]
    assert sum(len(g["sources"]) for g in grids) == K  # InternVL: one K split over the tiles

    from scr_core.cli import main

    heatmap = tmp_path / "heat.png"
    assert main(["diagnose", str(image), "--model", str(model), "--k", str(K), "--heatmap", str(heatmap),
                 *map(str, extra)]) == 0
    from scr_core.heatmap import FOOTER_HEIGHT, PANEL_GAP

    panels = 2 if which == "internvl" else 1  # InternVL: the tiles' mosaic and the thumbnail
    assert Image.open(heatmap).size == (panels * 512 + (panels - 1) * PANEL_GAP, round(512 * 90 / 200) + FOOTER_HEIGHT)


def test_cli_rejects_generic_flags_without_the_generic_adapter(family_dir, capsys):
    from scr_core.cli import main

    assert main(["diagnose", "x.png", "--model", str(family_dir("chameleon")), "--grid", "8x8"]) == 2
    assert "only apply with --adapter generic" in capsys.readouterr().err
    assert main(["diagnose", "x.png", "--model", str(family_dir("chameleon")), "--adapter", "generic"]) == 2
    assert "--adapter generic needs" in capsys.readouterr().err
