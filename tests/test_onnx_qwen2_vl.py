"""Qwen2-VL exported to ONNX (vision-tower workaround, M-RoPE) against the PyTorch pipeline.

An 8-layer tiny checkpoint (diagnostic layers 2..3) with hook layers 0..5, so that both decoder
parts carry ai.scr nodes.
Several images of different sizes in one prompt (one grid and one K each), and a left-padded
batch of two. Both sides use the PIL image processor (onnx.md §8).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from transformers import AutoImageProcessor

from export.exporter import ExportOptions, export
from export.runtime import OnnxVLM
from scr_core import ConfigError, SCRConfig, SCRPipeline
from tests.test_onnx_llava import NEW_TOKENS, NO_TORCH, ROOT, assert_parity, torch_reference

K = 4  # a tiny grid (7x8) has 30 interior patches


HOOKS = (0, 1, 2, 3, 4, 5)  # past the last diagnostic layer (3 of 8): the tail holds ai.scr nodes too


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    from scr_core.testbed.tiny_families import build

    return build("qwen2_vl", tmp_path_factory.mktemp("tiny") / "qwen2_vl", num_layers=8)


@pytest.fixture(scope="module")
def qwen_vlm(qwen_dir, tmp_path_factory) -> OnnxVLM:
    out = export(ExportOptions(model=qwen_dir, out=tmp_path_factory.mktemp("onnx") / "qwen2_vl", k=K,
                               hook_layers=HOOKS))
    vlm = OnnxVLM(out, provider="cpu")
    assert vlm.config.model.decoder.tail.has_scr and vlm.config.model.decoder.tail.hook_layers == (4, 5)
    return vlm


@pytest.fixture(scope="module")
def qwen_pipe(qwen_dir) -> SCRPipeline:
    pipe = SCRPipeline.from_pretrained(qwen_dir)
    # the PIL image processor, as the runtime uses (the processor's video half needs torchvision anyway)
    pipe.processor.image_processor = AutoImageProcessor.from_pretrained(qwen_dir, backend="pil")
    return pipe


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(1)
    return [Image.fromarray((rng.random(shape) * 255).astype(np.uint8)) for shape in ((112, 128, 3), (96, 80, 3),
                                                                                       (80, 112, 3))]


def _check(vlm, pipe, images, prompts):
    theirs = pipe.diagnose(images, prompts, SCRConfig(k=K, hook_layers=HOOKS))
    ours = vlm.diagnose(images, prompts)
    for a, b in zip(ours, theirs):
        assert a.plan == b.plan
        for map_a, map_b in zip(a.maps, b.maps):
            assert map_a.shape == map_b.shape
            np.testing.assert_allclose(map_a, map_b, atol=1e-5, rtol=0)
    tokens, logits = torch_reference(pipe, images, prompts, [d.plan for d in theirs])
    with vlm.decoder.record_logits() as steps:
        results = vlm.caption(images, prompts, max_new_tokens=NEW_TOKENS)
    assert [r.plan for r in results] == [d.plan for d in theirs]
    assert_parity(steps, results, tokens, logits)
    return ours, tokens


def test_two_images_of_different_sizes_in_one_prompt(qwen_vlm, qwen_pipe, pictures):
    diagnoses, _ = _check(qwen_vlm, qwen_pipe, [pictures[:2]], ["What differs between the two images?"])
    shapes = [m.shape for m in diagnoses[0].maps]
    assert shapes == [(7, 8), (6, 5)]  # one grid each, at each image's own size
    assert all(g.num_sources > 0 for g in diagnoses[0].plan.grids)


def test_left_padded_batch_of_two(qwen_vlm, qwen_pipe, pictures):
    prompts = ["Describe the image.", "Is there a red cat on the left of the large blue square?"]
    _, tokens = _check(qwen_vlm, qwen_pipe, pictures[1:], prompts)
    assert qwen_vlm.prepare(pictures[1:], prompts).attention_mask[0, 0] == 0
    pad = qwen_vlm.config.model.pad_token_id
    assert max((row != pad).sum() for row in tokens) >= 10  # long enough to compare decode steps


def test_opset_18_decomposed_attention_with_grouped_kv_heads_and_mrope(qwen_dir, qwen_pipe, pictures, tmp_path):
    """The default export (opset 23) hands Qwen2-VL's grouped KV heads to the Attention op as they are;
    opset 18 decomposes it (KV heads repeated): both against PyTorch, on a left-padded batch whose
    second prompt holds two images of different sizes."""
    out = export(ExportOptions(model=qwen_dir, out=tmp_path / "qwen18", k=K, hook_layers=HOOKS, opset=18))
    vlm = OnnxVLM(out, provider="cpu")
    text = qwen_pipe.adapter.language_model().config
    assert text.num_key_value_heads < text.num_attention_heads
    _check(vlm, qwen_pipe, [[pictures[2]], pictures[:2]], ["Describe the image.", "What differs between the two?"])


def test_k_beyond_a_grid_is_refused(qwen_vlm, pictures):
    with pytest.raises(ConfigError, match="exceeds the 30 patches"):
        qwen_vlm.diagnose(pictures[0], config=SCRConfig(k=31))


def test_preprocessing_without_torch(qwen_vlm, pictures, tmp_path):
    """Qwen2-VL's processor path (image processor + tokenizer + placeholder expansion) without torch."""
    paths = []
    for i, picture in enumerate(pictures[:2]):
        paths.append(tmp_path / f"{i}.png")
        picture.save(paths[-1])
    done = subprocess.run([sys.executable, "-c", NO_TORCH, "--model", str(qwen_vlm.folder), *map(str, paths),
                           "--json", "--max-new-tokens", "5", "--provider", "cpu"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    text, marker = done.stdout.rsplit("TORCH_MODULES", 1)
    assert json.loads(marker) == []
    expected = qwen_vlm.caption([pictures[:2]], max_new_tokens=5)[0]
    assert json.loads(text)["token_ids"] == list(expected.token_ids)
    assert len(json.loads(text)["plan"]["grids"]) == 2


def test_qwen2_5_vl_windowed_vision_tower(tmp_path_factory, pictures):
    """Qwen2.5-VL: the host computes the window permutation; two images in one prompt, SCR parity."""
    from scr_core.testbed.tiny_families import build

    folder = build("qwen2_5_vl", tmp_path_factory.mktemp("tiny") / "qwen2_5_vl", num_layers=8)
    vlm = OnnxVLM(export(ExportOptions(model=folder, out=tmp_path_factory.mktemp("onnx") / "qwen2_5_vl", k=K)),
                  provider="cpu")
    pipe = SCRPipeline.from_pretrained(folder)
    pipe.processor.image_processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    images, prompts = [pictures[:2], pictures[2]], ["What differs between the two images?", "Describe the image."]
    theirs = pipe.diagnose(images, prompts, SCRConfig(k=K))
    ours = vlm.diagnose(images, prompts)
    for a, b in zip(ours, theirs):
        assert a.plan == b.plan
        for map_a, map_b in zip(a.maps, b.maps):
            np.testing.assert_allclose(map_a, map_b, atol=1e-5, rtol=0)
    tokens, logits = torch_reference(pipe, images, prompts, [d.plan for d in theirs])
    with vlm.decoder.record_logits() as steps:
        results = vlm.caption(images, prompts, max_new_tokens=NEW_TOKENS)
    assert_parity(steps, results, tokens, logits)
