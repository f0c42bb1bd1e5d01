"""InternVL (one tile per image, the adapter's default) and Chameleon (VQ image tokenizer) exported to
ONNX against the PyTorch pipeline: a left-padded batch whose first prompt holds two images (two grids,
one K each)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers import AutoImageProcessor

from export.exporter import ExportOptions, export
from export.runtime import OnnxVLM
from scr_core import SCRConfig, SCRPipeline
from tests.test_onnx_llava import NEW_TOKENS, assert_parity, torch_reference

K = 4  # a tiny tile is a 6x6 grid (16 interior patches)


def _exported(family: str, tmp_path_factory, opset: int):
    from scr_core.testbed.tiny_families import build

    folder = build(family, tmp_path_factory.mktemp("tiny") / family, num_layers=8)
    vlm = OnnxVLM(export(ExportOptions(model=folder, out=tmp_path_factory.mktemp("onnx") / family, k=K,
                                       opset=opset)), provider="cpu")
    return folder, vlm


def _batch():
    rng = np.random.default_rng(2)
    a, b, c = (Image.fromarray((rng.random(s) * 255).astype(np.uint8)) for s in ((112, 128, 3), (96, 80, 3),
                                                                                 (90, 90, 3)))
    return [[a, b], [c]], ["What differs between the two images?", "Describe the image."]


def _check(vlm, pipe, images, prompts):
    theirs = pipe.diagnose(images, prompts, SCRConfig(k=K))
    ours = vlm.diagnose(images, prompts)
    assert [len(d.maps) for d in ours] == [2, 1]
    for x, y in zip(ours, theirs):
        assert x.plan == y.plan
        for map_x, map_y in zip(x.maps, y.maps):
            np.testing.assert_allclose(map_x, map_y, atol=1e-5, rtol=0)
    tokens, logits = torch_reference(pipe, images, prompts, [d.plan for d in theirs])
    with vlm.decoder.record_logits() as steps:
        results = vlm.caption(images, prompts, max_new_tokens=NEW_TOKENS)
    assert vlm.prepare(images, prompts).attention_mask[1, 0] == 0  # the one-image prompt is left-padded
    assert_parity(steps, results, tokens, logits)


@pytest.mark.parametrize("opset", [18, 23], ids=["decomposed-attention", "attention-op"])
def test_internvl_batch_with_two_images_in_one_prompt(tmp_path_factory, opset):
    folder, vlm = _exported("internvl", tmp_path_factory, opset)
    pipe = SCRPipeline.from_pretrained(folder)
    pipe.processor.image_processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    _check(vlm, pipe, *_batch())


@pytest.mark.parametrize("opset", [18, 23], ids=["decomposed-attention", "attention-op"])
def test_chameleon_vq_tokenizer_batch_with_two_images_in_one_prompt(tmp_path_factory, opset):
    """vision.onnx returns the VQ codes as text tokens; the logits of image codes are suppressed as in
    ``ChameleonForConditionalGeneration``."""
    folder, vlm = _exported("chameleon", tmp_path_factory, opset)
    assert vlm.sessions["vision"].get_outputs()[0].name == "image_token_ids"
    pipe = SCRPipeline.from_pretrained(folder, processor_kwargs={"backend": "pil"})
    _check(vlm, pipe, *_batch())
