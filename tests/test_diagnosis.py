"""The diagnostic pass against an independent eager-attention reference."""

import numpy as np
import pytest
import torch

from scr_core.config import SCRConfig
from scr_core.results import entropy_nats
from scr_core.pipeline import SCRPipeline

PROMPTS = ["describe the image .", "is there a red circle next to a blue square in the image ?"]


@pytest.fixture(scope="module")
def eager_model(tiny_llava_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_llava_dir, attn_implementation="eager").eval()


def eager_reference(eager_model, pipe, images, prompts, layers, query="post_image"):
    """Full eager forward with output_attentions: mean over layers, heads and post-image rows."""
    inputs = pipe.adapter.prepare([[im] for im in images], prompts)
    layout = pipe.adapter.layout(inputs)
    with torch.no_grad():
        out = eager_model(**inputs, output_attentions=True)
    maps = []
    for sample in range(len(prompts)):
        att = torch.stack([out.attentions[i][sample] for i in layers]).double()  # (L, H, S, S)
        start = layout.text_query_start(sample) if query == "post_image" else layout.seq_len - 1
        per_key = att[:, :, start:, :].mean(dim=(0, 1, 2)).numpy()
        grid = layout.grids_of(sample)[0]
        maps.append(per_key[grid.positions].reshape(grid.height, grid.width))
    return maps


@pytest.mark.parametrize("query", ["post_image", "last"])
def test_diagnostic_map_equals_eager_attention(pipe, eager_model, images, query):
    layers = (4, 5, 6, 7, 8, 9)
    cfg = SCRConfig(k=4, diag_layers=layers, query=query)
    diagnoses = pipe.diagnose(images[:2], PROMPTS, config=cfg)  # batch of 2, left-padded
    expected = eager_reference(eager_model, pipe, images[:2], PROMPTS, layers, query)
    for diag, ref in zip(diagnoses, expected):
        assert np.abs(diag.maps[0] - ref).max() <= 1e-5
        assert diag.maps[0].std() > 0
        assert abs(diag.entropy - entropy_nats(ref)) < 1e-5


def test_diagnostic_on_an_eager_loaded_model_equals_the_reference(tiny_llava_dir, eager_model, images):
    pipe = SCRPipeline.from_pretrained(tiny_llava_dir, attn_implementation="eager")
    layers = (8, 9, 10, 11, 12, 13, 14, 15, 16)  # the paper's absolute range
    diag = pipe.diagnose(images[:2], PROMPTS, config=SCRConfig(k=4, diag_layers=layers))
    for d, ref in zip(diag, eager_reference(eager_model, pipe, images[:2], PROMPTS, layers)):
        assert np.abs(d.maps[0] - ref).max() <= 1e-5
    assert pipe.model.config.text_config._attn_implementation == "eager"


def test_early_exit_skips_the_layers_after_the_last_diagnostic_layer(pipe, images):
    calls = {}
    layers = pipe.adapter.decoder_layers()
    handles = [layer.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls.get(i, 0) + 1))
               for i, layer in enumerate(layers)]
    try:
        pipe.diagnose(images[0], config=SCRConfig(k=4, diag_layers=(3, 6)))
    finally:
        for h in handles:
            h.remove()
    assert calls == {i: 1 for i in range(7)}
    assert pipe.model.config.text_config._attn_implementation == "sdpa"  # restored
    assert not pipe.model.lm_head._forward_hooks


def test_the_pass_ends_inside_the_last_diagnostic_layer_once_its_rows_are_captured(pipe, images):
    """Layer 6's attention probabilities are the last thing the map needs: its attention output
    projection and MLP never run (and nothing after), yet the map is the one a full forward gives."""
    layers = pipe.adapter.decoder_layers()
    ran = []
    watched = [(i, name, module) for i in (5, 6) for name, module in layers[i].named_children()
               if name in ("mlp", "post_attention_layernorm")]
    watched += [(i, "o_proj", layers[i].self_attn.o_proj) for i in (5, 6)]
    handles = [module.register_forward_hook(lambda m, a, o, tag=(i, name): ran.append(tag))
               for i, name, module in watched]
    try:
        diag = pipe.diagnose(images[0], config=SCRConfig(k=4, diag_layers=(3, 6)))[0]
    finally:
        for h in handles:
            h.remove()
    assert sorted(set(ran)) == [(5, "mlp"), (5, "o_proj"), (5, "post_attention_layernorm")]
    assert not any(h for layer in layers for h in (layer._forward_hooks, layer._forward_pre_hooks))
    assert diag.maps[0].std() > 0  # equal to eager attention's: test_diagnostic_map_equals_eager_attention


def test_vision_tower_runs_once_per_scr_caption(pipe, images):
    calls = []
    handle = pipe.model.model.vision_tower.register_forward_hook(lambda *a: calls.append(1))
    try:
        result = pipe.caption(images[0], max_new_tokens=3)[0]
    finally:
        handle.remove()
    assert len(calls) == 1
    assert result.diagnosis is not None and result.timings.diagnostic_ms > 0


def test_entropy_in_nats():
    assert entropy_nats(np.ones((4, 4))) == pytest.approx(np.log(16))
    assert entropy_nats(np.array([0.0, 2.0, 0.0])) == 0.0
    assert entropy_nats(np.array([1.0, 3.0])) == pytest.approx(-(0.25 * np.log(0.25) + 0.75 * np.log(0.75)))
