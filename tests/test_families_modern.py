"""The newer caption families (issue 18) through the same pipeline and CLI, on tiny random
checkpoints built from the real transformers classes and saved/reloaded like a user's folder
(``scr_core.testbed.tiny_modern``). Layouts are checked against hand-computed positions and
against where the model itself puts its features."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scr_core.adapters import (ADAPTERS, Gemma3Adapter, Idefics3Adapter, LlavaAdapter, LlavaNextAdapter,
                               LlavaOnevisionAdapter, Qwen3VLAdapter, SmolVLMAdapter)
from scr_core.adapters.shared import LLAVA_FRACTION, QWEN_FRACTION, fraction_range
from scr_core.config import SCRConfig
from scr_core.errors import ConfigError, LayoutError, UnsupportedModelError
from scr_core.redistribution import BatchEdit, redistribution

from tests.extras import need_extra
from .conftest import family_pipe as _pipe
from .test_families import _record_hooked

K = 2
PROMPTS = ["describe the image .", "is there a red circle next to a blue square in the image ?"]  # 4 and 14 words


def _image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))


WIDE = _image(40, 100, 0)   # 100 px wide, 40 px high
SQUARE = _image(64, 64, 1)
BIG = _image(200, 200, 2)

LLAVAS = ("llava_siglip", "llava_next", "llava_onevision")
FAMILIES = (*LLAVAS, "gemma3", "qwen3_vl", "qwen3_vl_moe", "idefics3", "smolvlm")
ADAPTER_OF = {"llava_siglip": LlavaAdapter, "llava_next": LlavaNextAdapter, "llava_onevision": LlavaOnevisionAdapter,
              "gemma3": Gemma3Adapter, "qwen3_vl": Qwen3VLAdapter, "qwen3_vl_moe": Qwen3VLAdapter,
              "idefics3": Idefics3Adapter,
              "smolvlm": SmolVLMAdapter}
HOOKS_18 = {"llava_siglip": 7, "llava_next": 7, "llava_onevision": 7, "gemma3": 10, "qwen3_vl": 10,
            "qwen3_vl_moe": 10, "idefics3": 10, "smolvlm": 10}

# Per image of the batch [WIDE + PROMPTS[0], SQUARE + PROMPTS[1]]: (grids, tokens in the image's run).
# LLaVA + SigLIP: 112 px / 14 px = 8x8, no CLS, "full" strategy: 64 tokens, whatever the picture.
# LLaVA-NeXT / OneVision, 64 px tiles of 8 px patches (8x8 base), canvases 64x128, 128x64, 128x128 (h x w):
#   WIDE (40x100) -> best canvas 64x128 (1x2 tiles, 8x16 features); unpad: 40/100 scaled to 16 wide is
#     6.4 -> 6 rows, padding (8-6)//2 = 1 row top and bottom -> 6x16, + 6 newlines: 64 + 6*17 = 166 tokens.
#   SQUARE (64x64) -> best canvas 64x128 (least waste); 64 wide scaled to 8 rows is 8, padding (16-8)//2 = 4
#     columns each side -> 8x8, + 8 newlines: 64 + 8*9 = 136 tokens.
LAYOUTS = {
    "llava_siglip": [([(8, 8)], 64), ([(8, 8)], 64)],
    "llava_next": [([(8, 8), (6, 16)], 166), ([(8, 8), (8, 8)], 136)],
    "llava_onevision": [([(8, 8), (6, 16)], 166), ([(8, 8), (8, 8)], 136)],
}
BEFORE, AFTER = 2, 2  # "USER :" before the image run, "ASSISTANT :" after the prompt (the newline is dropped)


def expected_grids(family: str) -> list[list[tuple[int, int, list[int]]]]:
    """(height, width, positions) of every grid of the batch [WIDE + PROMPTS[0], SQUARE + PROMPTS[1]], by hand.

    Each family's template puts ``before`` tokens ahead of the first image run and ``after``
    tokens behind the prompt's words; runs are laid out as the processor writes them.
    """
    words = (4, 14)
    if family in LLAVAS:
        runs = [[(h, w, 0) for h, w in shapes] for shapes, _ in LAYOUTS[family]]
        before, after, close = BEFORE, AFTER, 0
    elif family == "gemma3":  # <s> <start_of_turn> user <start_of_image> | 64 soft tokens | <end_of_image> words
        runs = [[(8, 8, 0)], [(8, 8, 0)]]  # <end_of_turn> <start_of_turn> model; every image 128 px -> 8x8
        before, after, close = 4, 3, 1
    elif family.startswith("qwen3_vl"):  # 8 px per merged token: WIDE resized to 40x96 px (5x12), SQUARE 64x64 (8x8)
        runs = [[(5, 12, 0)], [(8, 8, 0)]]
        before, after, close = 3, 3, 1
    else:  # idefics3, smolvlm: WIDE -> 128x64 px, 1x2 tiles of 64 px; SQUARE -> 128x128 px, 2x2 tiles; + global
        # "User :" then per tile <fake> <row_i_col_j> + 64 tokens, then <fake> <global-img> + 64 + <fake>
        runs = [[(8, 8, 2)] * 3, [(8, 8, 2)] * 5]
        before, after, close = 2, 3, 1
    anyres = family in ("llava_next", "llava_onevision")  # the second grid of an image: h rows of w + newline
    lengths = [before + sum(gap + h * (w + (anyres and j > 0)) for j, (h, w, gap) in enumerate(r)) + close + n + after
               for r, n in zip(runs, words)]
    seq = max(lengths)
    out = []
    for r, length in zip(runs, lengths):
        at, grids = seq - length + before, []
        for h, w, gap in r:
            at += gap
            if anyres and grids:  # high-res rows end in a newline token
                grids.append((h, w, [at + row * (w + 1) + col for row in range(h) for col in range(w)]))
                at += h * (w + 1)
            else:
                grids.append((h, w, list(range(at, at + h * w))))
                at += h * w
        out.append(grids)
    return out


@functools.cache
def _built(family: str, root: str, **options) -> Path:
    from scr_core.testbed.tiny_modern import build

    name = family + "".join(f"-{k}-{v}" for k, v in sorted(options.items()))
    return build(family, Path(root) / name, **options)


@pytest.fixture(scope="session")
def modern_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("tiny-modern"))


@pytest.fixture(scope="session")
def modern_dir(modern_root):
    """``modern_dir("llava_next")``: a tiny random checkpoint of that family, built once per session."""
    return lambda family, **options: _built(family, modern_root, **options)


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture
def fpipe(family, modern_dir):
    return _pipe(modern_dir(family))


@functools.cache
def _eager(path: Path):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path, attn_implementation="eager").eval()


def image_runs(inputs: dict, token_id: int) -> list[np.ndarray]:
    return [torch.nonzero(row == token_id).flatten().numpy() for row in inputs["input_ids"]]


def grid_positions(layout, sample: int) -> set[int]:
    return {int(p) for g in layout.grids_of(sample) for p in g.positions}


# -- registry and layer rules ------------------------------------------------------------------
def test_registry_and_layer_rules(fpipe, family):
    assert isinstance(fpipe.adapter, ADAPTER_OF[family])
    assert set(ADAPTERS) >= set(FAMILIES) - {"llava_siglip"} | {"llava"}
    assert fraction_range(LLAVA_FRACTION, 32) == tuple(range(12))  # LLaVA-1.5-7B: 0-11
    assert fraction_range(QWEN_FRACTION, 28) == tuple(range(16))   # Qwen2-VL-7B: 0-15
    assert fraction_range(LLAVA_FRACTION, 60) == tuple(range(22))  # e.g. LLaVA-NeXT-34B
    # LLaVA rule: 12/32 of 18 layers = 7 (LlavaAdapter: the paper's 0-11 scaled, the same); Qwen rule: 16/28 -> 10
    assert fpipe.adapter.default_hook_layers(18) == tuple(range(HOOKS_18[family]))


# -- layout ----------------------------------------------------------------------------------
def test_layout_equals_hand_computed_positions(fpipe, family):
    layout = fpipe.prepare([WIDE, SQUARE], PROMPTS).layout
    for sample, expected in enumerate(expected_grids(family)):
        grids = layout.grids_of(sample)
        assert [(g.height, g.width, g.positions.tolist()) for g in grids] == expected
        assert {g.image for g in grids} == {0}


@pytest.mark.parametrize("family", ["llava_next", "llava_onevision"])
def test_llava_next_newline_positions_by_hand(family, modern_dir):
    pipe = _pipe(modern_dir(family))
    inputs = pipe.adapter.prepare([[WIDE], [SQUARE]], PROMPTS)
    layout = pipe.adapter.layout(inputs)
    for sample, (_, (h, w, high)) in enumerate(expected_grids(family)):
        newlines = [high[0] + row * (w + 1) + w for row in range(h)]
        assert pipe.adapter.newline_positions(layout, inputs, sample).tolist() == newlines
        run = image_runs(inputs, pipe.model.config.image_token_id)[sample]
        assert run.tolist() == list(range(high[0] - 64, high[0] + h * (w + 1)))


def _features(pipe, inputs: dict) -> torch.Tensor:
    """The visual features the model scatters into the image tokens, in sequence order."""
    encoder_kwargs = {k: v for k, v in inputs.items() if k in ("pixel_values", "image_sizes", "batch_num_images")}
    with torch.no_grad():
        out = pipe.model.model.get_image_features(**encoder_kwargs, return_dict=True).pooler_output
    return torch.cat(list(out), dim=0) if isinstance(out, (list, tuple)) else out.reshape(-1, out.shape[-1])


@pytest.mark.parametrize("family", ["llava_next", "llava_onevision"])
def test_newline_positions_are_where_the_model_puts_image_newline(family, modern_dir):
    """The tokens the layout leaves out are exactly those that receive the model's image_newline."""
    pipe = _pipe(modern_dir(family))
    for images, prompts in (([[WIDE], [SQUARE]], PROMPTS), ([[BIG]], PROMPTS[:1]), ([[WIDE, SQUARE]], PROMPTS[:1])):
        inputs = pipe.adapter.prepare(images, prompts)
        layout = pipe.adapter.layout(inputs)
        features = _features(pipe, inputs)
        newline = pipe.model.model.image_newline.detach()
        runs = image_runs(inputs, pipe.model.config.image_token_id)
        offset = 0
        for sample, run in enumerate(runs):
            rows = features[offset:offset + run.size]
            is_newline = (rows == newline).all(dim=-1).numpy()
            in_grid = np.isin(run, sorted(grid_positions(layout, sample)))
            assert np.array_equal(is_newline, ~in_grid)
            offset += run.size
        assert offset == features.shape[0]


def test_onevision_large_image_grid_is_shrunk_and_multi_image_gets_base_grids(modern_dir):
    pipe = _pipe(modern_dir("llava_onevision"))
    # BIG (200x200) -> 2x2 tiles, 16x16 unpadded; anyres_max_2: ratio sqrt(256 / (2*64)) = 1.41 > 1.1 -> 11x11
    (only,) = [pipe.prepare([BIG], PROMPTS[0]).layout]
    assert [(g.height, g.width) for g in only.grids] == [(8, 8), (11, 11)]
    # two images in one prompt: each only its 8x8 base grid followed by one newline token
    layout = pipe.prepare([[WIDE, SQUARE]], PROMPTS[0]).layout
    grids = layout.grids_of(0)
    assert [(g.height, g.width, g.image) for g in grids] == [(8, 8, 0), (8, 8, 1)]
    assert grids[0].positions.tolist() == list(range(2, 66)) and grids[1].positions.tolist() == list(range(67, 131))


def test_llava_next_two_images_in_one_prompt(modern_dir):
    pipe = _pipe(modern_dir("llava_next"))
    grids = pipe.prepare([[WIDE, SQUARE]], PROMPTS[0]).layout.grids_of(0)
    assert [(g.height, g.width, g.image) for g in grids] == [(8, 8, 0), (6, 16, 0), (8, 8, 1), (8, 8, 1)]
    assert grids[2].positions[0] == 2 + 166  # the second image's run follows the first directly


def test_llava_grid_rule_follows_tower_and_strategy(modern_dir):
    """SigLIP + "full": 8x8 from 112/14 (not 24x24); CLIP + "full": the CLS is skipped; SigLIP + "default"
    would drop a real patch: refused."""
    siglip = _pipe(modern_dir("llava_siglip"))
    assert siglip.adapter.grid_size() == (8, 8) and siglip.adapter.leading_tokens() == 0
    clip = _pipe(modern_dir("llava_siglip", tower="clip"))
    assert clip.adapter.leading_tokens() == 1
    batch = clip.prepare([WIDE, SQUARE], PROMPTS)
    inputs = clip.adapter.prepare([[WIDE], [SQUARE]], PROMPTS)
    for sample, run in enumerate(image_runs(inputs, clip.model.config.image_token_id)):
        assert run.size == 65 and batch.layout.grids_of(sample)[0].positions.tolist() == run[1:].tolist()
    broken = _pipe(modern_dir("llava_siglip", strategy="default"))
    with pytest.raises(LayoutError, match="not a 8x8 grid.*'full' strategy"):
        broken.diagnose(WIDE, PROMPTS[0])


# -- diagnostic pass against eager attention ---------------------------------------------------
def test_diagnostic_map_equals_eager_attention(fpipe, family, modern_dir):
    layers = (4, 5, 6, 7, 8, 9)
    diagnoses = fpipe.diagnose([WIDE, SQUARE], PROMPTS, config=SCRConfig(k=K, diag_layers=layers))
    eager = _eager(modern_dir(family))
    inputs = fpipe.adapter.prepare([[WIDE], [SQUARE]], PROMPTS)
    layout = fpipe.adapter.layout(inputs)
    with torch.no_grad():
        out = eager(**inputs, output_attentions=True)
    for sample, diag in enumerate(diagnoses):
        att = torch.stack([out.attentions[i][sample] for i in layers]).double()
        per_key = att[:, :, layout.text_query_start(sample):, :].mean(dim=(0, 1, 2)).numpy()
        grids = layout.grids_of(sample)
        assert len(diag.maps) == len(grids)
        for amap, grid in zip(diag.maps, grids):
            ref = per_key[grid.positions].reshape(grid.height, grid.width)
            assert np.abs(amap - ref).max() <= 1e-5 and amap.std() > 0


# -- plan and hooks --------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llava_next", "llava_onevision", "idefics3", "smolvlm"])  # Gemma 3: pan-and-scan
def test_one_k_per_image_split_over_its_grids(fpipe, family):
    diagnoses = fpipe.diagnose([WIDE, SQUARE], PROMPTS, config=SCRConfig(k=5))
    for diag in diagnoses:
        assert sum(g.num_sources for g in diag.plan.grids) == 5


def test_hooks_change_exactly_the_planned_positions_and_no_decode_step(fpipe):
    """Batch of 2, left-padded: at the hooked layer only sources and neighbours change (never a newline
    token), and decode steps pass through."""
    diagnoses = fpipe.diagnose([WIDE, SQUARE], PROMPTS, config=SCRConfig(k=K, hook_layers=(2,)))
    batch = fpipe.prepare([WIDE, SQUARE], PROMPTS)
    raw, edited = _record_hooked(fpipe, batch, [d.plan for d in diagnoses], (2,), 3)
    raw, edited = raw[2], edited[2]
    assert [t.shape[1] for t in raw] == [batch.layout.seq_len, 1, 1]
    assert all(torch.equal(raw[s], edited[s]) for s in (1, 2))
    changed = (raw[0] != edited[0]).any(dim=-1)
    for sample, diag in enumerate(diagnoses):
        planned = set()
        for grid, gp in zip(batch.layout.grids_of(sample), diag.plan.grids):
            planned |= set(grid.positions[list(gp.sources) + list(gp.neighbours)].tolist())
        assert set(torch.nonzero(changed[sample]).flatten().tolist()) == planned
        assert planned <= grid_positions(batch.layout, sample)


def test_neighbours_never_wrap_across_a_row_end(modern_dir):
    """On the high-res grid, with the border allowed as sources, every neighbour of a source sits in an
    adjacent sequence row of the grid: no neighbour is a newline token or wraps to the next row."""
    pipe = _pipe(modern_dir("llava_next"))
    batch = pipe.prepare([WIDE], PROMPTS[0])
    (diag,) = pipe.diagnose(batch, config=SCRConfig(k=6, exclude_border=False))
    grid = batch.layout.grids_of(0)[1]
    gp = diag.plan.grids[1]
    by_position = {int(p): divmod(i, grid.width) for i, p in enumerate(grid.positions)}
    for neighbour, owner in zip(gp.neighbours, gp.owners):
        (r1, c1), (r2, c2) = divmod(int(neighbour), grid.width), divmod(int(owner), grid.width)
        assert max(abs(r1 - r2), abs(c1 - c2)) == 1
        assert by_position[int(grid.positions[neighbour])] == (r1, c1)
    newline_cols = {int(grid.positions[0]) + r * (grid.width + 1) + grid.width for r in range(grid.height)}
    assert not newline_cols & {int(grid.positions[i]) for i in (*gp.sources, *gp.neighbours)}


# -- generation ------------------------------------------------------------------------------
def test_generation_batch_of_two_two_images_and_plain_generate(fpipe, family):
    batch = fpipe.caption([WIDE, SQUARE], PROMPTS, scr=SCRConfig(k=K), max_new_tokens=3)
    assert len(batch) == 2 and all(r.plan is not None and len(r.token_ids) == 3 for r in batch)
    two = fpipe.caption([[WIDE, SQUARE]], PROMPTS[0], scr=SCRConfig(k=K), max_new_tokens=3)[0]
    assert {g.image for g in fpipe.prepare([[WIDE, SQUARE]], PROMPTS[0]).layout.grids} == {0, 1}
    assert two.plan is not None
    identity = fpipe.caption([WIDE, SQUARE], PROMPTS, scr=SCRConfig(k=K, lam=1.0), max_new_tokens=4)
    vanilla = fpipe.caption([WIDE, SQUARE], PROMPTS, scr=None, max_new_tokens=4)
    assert [r.token_ids for r in identity] == [r.token_ids for r in vanilla]
    inputs = fpipe.adapter.prepare([[WIDE], [SQUARE]], PROMPTS)
    with torch.no_grad():
        plain = fpipe.model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert [r.token_ids for r in vanilla] == [tuple(row) for row in plain[:, inputs["input_ids"].shape[1]:].tolist()]


# -- command line and export -----------------------------------------------------------------
def test_cli_caption_and_diagnose_heatmap(family, modern_dir, tmp_path, capsys):
    from scr_core.cli import main

    image = tmp_path / "scene.png"
    WIDE.save(image)
    model = str(modern_dir(family))
    assert main(["caption", str(image), "--model", model, "--k", str(K), "--json", "--max-new-tokens", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scr"] and result["timings"]["new_tokens"] == 3
    grids = result["plan"]["grids"]
    assert [(g["height"], g["width"]) for g in grids] == [(h, w) for h, w, _ in expected_grids(family)[0]]
    assert sum(len(g["sources"]) for g in grids) == K  # one K per image, split over its grids
    heatmap = tmp_path / "heat.png"
    assert main(["diagnose", str(image), "--model", model, "--k", str(K), "--heatmap", str(heatmap)]) == 0
    # one panel per whole-image grid (LLaVA-NeXT: base and high-res; Idefics3: the tiles' mosaic and the global image)
    panels = 2 if family in ("llava_next", "llava_onevision", "idefics3", "smolvlm") else 1
    from scr_core.heatmap import FOOTER_HEIGHT, PANEL_GAP

    assert Image.open(heatmap).size == (panels * 512 + (panels - 1) * PANEL_GAP, round(512 * 40 / 100) + FOOTER_HEIGHT)


@pytest.mark.parametrize("family,message", [
    ("llava_next", "does not support 'llava_next'"),
    ("llava_onevision", "does not support 'llava_onevision'"),
    ("gemma3", "does not support 'gemma3'"),
    ("qwen3_vl", "does not support 'qwen3_vl'"),
    ("qwen3_vl_moe", "does not support 'qwen3_vl_moe'"),
    ("idefics3", "does not support 'idefics3'"),
    ("smolvlm", "does not support 'smolvlm'"),
])
def test_onnx_exporter_refuses_with_one_clear_error(family, message, modern_dir, tmp_path, capsys):
    need_extra("onnx")
    from export.exporter import ExportOptions
    from export.families import family_for

    model = str(modern_dir(family))
    _pipe(modern_dir(family))
    capsys.readouterr()  # building and loading the checkpoint may print progress bars
    options = ExportOptions(model=model, out=tmp_path / "out")
    with pytest.raises(UnsupportedModelError, match=message + ".*it exports: .*llava"):
        options.check()
    with pytest.raises(UnsupportedModelError, match=message):
        family_for(_pipe(modern_dir(family)))
    from export.onnx import main as export_main

    assert export_main(["--model", str(modern_dir(family)), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "out").exists()


def test_onnx_exporter_refuses_a_llava_that_keeps_cls(modern_dir):
    need_extra("onnx")
    from export.families import family_for

    with pytest.raises(UnsupportedModelError, match="keep the CLS token"):
        family_for(_pipe(modern_dir("llava_siglip", tower="clip")))
    assert family_for(_pipe(modern_dir("llava_siglip"))).layout_rule()["grid"] == [8, 8]


# -- Gemma 3 ---------------------------------------------------------------------------------
def test_gemma3_pan_and_scan_crops_are_grids_of_one_image_sharing_k(modern_dir):
    """WIDE (100x40) with at most 4 crops: round(100/40) = 3 crops of 34x40 px (>= the 32 px minimum),
    written after the original image; SQUARE gets none. One K per image, split by attention mass."""
    pipe = _pipe(modern_dir("gemma3"), pan_and_scan=4)
    batch = pipe.prepare([[WIDE, SQUARE]], PROMPTS[0])
    grids = batch.layout.grids_of(0)
    assert [(g.height, g.width, g.image) for g in grids] == [(8, 8, 0)] * 4 + [(8, 8, 1)]
    token_id = pipe.model.config.image_token_id
    runs = image_runs(pipe.adapter.prepare([[WIDE, SQUARE]], PROMPTS[:1]), token_id)[0]
    assert sorted(grid_positions(batch.layout, 0)) == runs.tolist()
    (diag,) = pipe.diagnose(batch, config=SCRConfig(k=5))
    budgets = [g.num_sources for g in diag.plan.grids]
    assert sum(budgets[:4]) == 5 and budgets[4] == 5
    assert "num_crops" not in batch.inputs  # read by the layout, never passed to the model
    with pytest.raises(ConfigError, match="pan_and_scan must be >= 0"):
        _pipe(modern_dir("gemma3"), pan_and_scan=-1)


def test_gemma3_image_attention_is_bidirectional_and_text_rows_are_read(modern_dir):
    """The mask the model builds lets image tokens see later image tokens of the same image; the
    diagnostic still reads only the text rows after the image (checked against eager above)."""
    pipe = _pipe(modern_dir("gemma3"))
    inputs = pipe.adapter.prepare([[WIDE]], PROMPTS[:1])
    eager = _eager(modern_dir("gemma3"))
    with torch.no_grad():
        att = eager(**inputs, output_attentions=True).attentions[0][0]  # (heads, S, S)
    (grid,) = pipe.adapter.layout(inputs).grids_of(0)
    first, last = int(grid.positions[0]), int(grid.positions[-1])
    assert float(att[:, first, last].min()) > 0  # an image token attends to a later one
    assert float(att[:, last + 2, last + 3:].abs().sum()) == 0  # text stays causal


# -- Qwen3-VL ----------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_vl_moe"])
def test_qwen3_vl_scr_edit_comes_before_deepstack_exactly_once_per_layer(family, modern_dir):
    """At hooked layers 0 and 1 (DeepStack layers) and 2 (none), the state the next layer receives is
    edit(layer output) + the DeepStack feature at the visual positions: the edit runs once, before
    the injection; decode steps are untouched."""
    pipe = _pipe(modern_dir(family))
    assert pipe.adapter.deepstack_layers() == (0, 1)
    hooked = (0, 1, 2)
    diagnoses = pipe.diagnose([WIDE, SQUARE], PROMPTS, config=SCRConfig(k=K, lam=1.5, hook_layers=hooked))
    batch = pipe.prepare([WIDE, SQUARE], PROMPTS)
    edit = BatchEdit.build([d.plan for d in diagnoses], batch.layout)
    layers = pipe.adapter.decoder_layers()
    raw, received = {i: [] for i in hooked}, {i: [] for i in hooked}
    handles = [layers[i].register_forward_hook(lambda m, a, out, i=i: raw[i].append(out.clone())) for i in hooked]
    handles += [layers[i + 1].register_forward_pre_hook(lambda m, a, i=i: received[i].append(a[0].clone()))
                for i in hooked]
    try:
        with redistribution(layers, hooked, edit), torch.no_grad():
            pipe.model.generate(**batch.inputs, max_new_tokens=2, do_sample=False)
    finally:
        for handle in handles:
            handle.remove()
    visual = batch.inputs["input_ids"] == pipe.model.config.image_token_id
    deepstack = batch.vision.deepstack_features
    for i in hooked:
        expected = edit.apply(raw[i][0]).clone()
        if i < len(deepstack):
            # one tensor per image (transformers 5.24) or one for all of them (5.0)
            features = deepstack[i] if torch.is_tensor(deepstack[i]) else torch.cat(list(deepstack[i]))
            expected[visual] += features.to(expected.dtype)
        assert torch.allclose(received[i][0], expected, atol=1e-6, rtol=0)
        assert not torch.equal(edit.apply(raw[i][0]), raw[i][0])  # the edit did change the prefill
        assert torch.equal(received[i][1], raw[i][1])  # decode step: no edit, no injection
    # applied twice (or after the injection) would not match: edit(edit(x)) != edit(x) for lambda != 1
    assert not torch.allclose(edit.apply(edit.apply(raw[2][0])), edit.apply(raw[2][0]), atol=1e-4)


# -- Idefics3 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["idefics3", "smolvlm"])
def test_idefics3_tiles_share_k_and_regions_come_from_the_row_col_markers(family, modern_dir):
    pipe = _pipe(modern_dir(family))
    batch = pipe.prepare([[WIDE, SQUARE]], PROMPTS[0])
    grids = batch.layout.grids_of(0)
    assert [g.image for g in grids] == [0, 0, 0, 1, 1, 1, 1, 1]
    assert [g.region for g in grids[:3]] == [(0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0)]
    assert [g.region for g in grids[3:7]] == [(0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 0.5), (0.0, 0.5, 0.5, 1.0),
                                              (0.5, 0.5, 1.0, 1.0)]
    (diag,) = pipe.diagnose(batch, config=SCRConfig(k=5))
    budgets = [g.num_sources for g in diag.plan.grids]
    assert sum(budgets[:3]) == 5 and sum(budgets[3:]) == 5
    # markers and <fake_token_around_image> are never in a grid
    inputs = pipe.adapter.prepare([[WIDE, SQUARE]], PROMPTS[:1])
    assert sorted(grid_positions(batch.layout, 0)) == image_runs(inputs, pipe.model.config.image_token_id)[0].tolist()


def test_idefics3_without_splitting_one_grid_per_image(modern_dir):
    pipe = _pipe(modern_dir("idefics3"), no_image_splitting=1)
    grids = pipe.prepare([[WIDE, SQUARE]], PROMPTS[0]).layout.grids_of(0)
    assert [(g.height, g.width, g.image) for g in grids] == [(8, 8, 0), (8, 8, 1)]
    assert grids[0].positions[0] == 2 + 2  # "User :" <fake> <global-img>
    with pytest.raises(ConfigError, match="no_image_splitting must be 0 or 1"):
        _pipe(modern_dir("idefics3"), no_image_splitting=2)
    from scr_core.cli import build_parser

    args = build_parser().parse_args(["caption", "x.png", "--no-image-splitting", "1", "--pan-and-scan", "3"])
    assert (args.family_no_image_splitting, args.family_pan_and_scan) == (1, 3)


# -- remote-code models: trust_remote_code and the output_attentions fallback --------------------------
NOISE = [_image(60, 90, 7), _image(80, 80, 8)]  # patch contents differ, so attention over the grid is not flat


def _remote_adapter(path: Path):
    from functools import partial

    from scr_core.adapters import GenericAdapter
    from transformers import AutoConfig

    token_id = AutoConfig.from_pretrained(path, trust_remote_code=True).image_token_id
    return partial(GenericAdapter, image_token_id=token_id, grid=(8, 8), layers_path="model.layers")


@functools.cache
def _remote_pipe(path: Path):
    from scr_core.pipeline import SCRPipeline

    return SCRPipeline.from_pretrained(path, trust_remote_code=True, attn_implementation="eager",
                                       adapter=_remote_adapter(path))


def test_remote_code_stays_off_unless_asked(modern_dir):
    from scr_core.errors import ModelLoadError
    from scr_core.pipeline import SCRPipeline

    path = modern_dir("remote_code")
    with pytest.raises(ModelLoadError, match="ships its own modeling code.*runs that code on this machine"
                                             ".*trust_remote_code=True.*--trust-remote-code"):
        SCRPipeline.from_pretrained(path, adapter=_remote_adapter(path))
    with pytest.raises(ModelLoadError, match="use 'eager' \\(CLI --attn eager\\)"):
        SCRPipeline.from_pretrained(path, trust_remote_code=True, adapter=_remote_adapter(path))


def test_remote_code_diagnostic_falls_back_to_the_models_own_attentions(modern_dir):
    """The model's attention never reaches transformers' registry: the capture sees nothing, the
    diagnostic warns and reads the model's own output_attentions; maps equal a plain forward's
    probabilities and SCR generation runs (λ = 1 gives the vanilla tokens)."""
    pipe = _remote_pipe(modern_dir("remote_code"))
    layers = (4, 5, 6, 7, 8, 9)
    with pytest.warns(RuntimeWarning, match="saw no attention call.*output_attentions, which is slower"):
        diagnoses = pipe.diagnose(NOISE, PROMPTS, config=SCRConfig(k=K, diag_layers=layers))
    inputs = pipe.adapter.prepare([[NOISE[0]], [NOISE[1]]], PROMPTS)
    layout = pipe.adapter.layout(inputs)
    with torch.no_grad():
        out = pipe.model(**inputs, output_attentions=True)
    for sample, diag in enumerate(diagnoses):
        att = torch.stack([out.attentions[i][sample] for i in layers]).double()
        per_key = att[:, :, layout.text_query_start(sample):, :].mean(dim=(0, 1, 2)).numpy()
        (grid,) = layout.grids_of(sample)
        ref = per_key[grid.positions].reshape(8, 8)
        assert np.abs(diag.maps[0] - ref).max() <= 1e-5 and diag.maps[0].std() > 0
    with pytest.warns(RuntimeWarning, match="saw no attention call"):
        scr = pipe.caption(NOISE, PROMPTS, scr=SCRConfig(k=K), max_new_tokens=3)
        identity = pipe.caption(NOISE, PROMPTS, scr=SCRConfig(k=K, lam=1.0), max_new_tokens=3)
    vanilla = pipe.caption(NOISE, PROMPTS, scr=None, max_new_tokens=3)
    assert all(r.plan is not None and len(r.token_ids) == 3 for r in scr)
    assert [r.token_ids for r in identity] == [r.token_ids for r in vanilla]


def test_cli_remote_code_caption_and_refusal(modern_dir, tmp_path, capsys):
    from scr_core.cli import main

    path = modern_dir("remote_code")
    image = tmp_path / "noise.png"
    NOISE[0].save(image)
    token_id = _remote_adapter(path).keywords["image_token_id"]
    generic = ["--adapter", "generic", "--image-token-id", str(token_id), "--grid", "8x8", "--layers-path",
               "model.layers", "--attn", "eager", "--k", str(K)]
    capsys.readouterr()
    assert main(["caption", str(image), "--model", str(path), *generic]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--trust-remote-code" in err[0]
    with pytest.warns(RuntimeWarning, match="saw no attention call"):  # the CLI prints it as one warning: line
        assert main(["caption", str(image), "--model", str(path), *generic, "--trust-remote-code", "--json",
                     "--max-new-tokens", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["timings"]["new_tokens"] == 2
