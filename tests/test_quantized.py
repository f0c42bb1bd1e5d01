"""Quantized loading (bitsandbytes 8-bit / 4-bit NF4) of a tiny LLaVA saved like a user's checkpoint.

The decoder is 128 wide with a 256 MLP: bitsandbytes' CPU 4-bit path needs every quantized
in-feature to be a multiple of its blocksize (64).
"""

import hashlib

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from scr_core import ConfigError, SCRConfig
from scr_core.loading import LoadOptions, bitsandbytes_missing, model_quantization
from scr_core.pipeline import SCRPipeline
from tests.extras import need_extra
from tests.test_hooks import layer_outputs_with_and_without_the_edit, no_hooks_left

pytestmark = pytest.mark.skipif(bitsandbytes_missing() is not None, reason="bitsandbytes is not installed here")


@pytest.fixture(scope="module")
def wide_llava(tmp_path_factory):
    from scr_core.testbed.tiny import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("wide-llava"), hidden_size=128, intermediate_size=256,
                            vision_hidden_size=32)


@pytest.fixture(scope="module", params=["8bit", "4bit"])
def quantized(request, wide_llava):
    return SCRPipeline.from_pretrained(wide_llava, quantization=request.param)


def test_decoder_is_quantized_and_the_named_modules_are_not(quantized):
    import bitsandbytes as bnb

    kind = bnb.nn.Linear8bitLt if model_quantization(quantized.model) == "8bit" else bnb.nn.Linear4bit
    decoder = [m for m in quantized.adapter.decoder_layers().modules() if isinstance(m, torch.nn.Linear)]
    assert decoder and all(isinstance(m, kind) for m in decoder)
    for name in quantized.adapter.unquantized_modules:
        module = quantized.model.get_submodule(name)
        assert not any(isinstance(m, kind) for m in module.modules()), name


def test_diagnose_gives_k_sources_and_the_plan_is_reported(quantized, wide_llava, images, record_property):
    cfg = SCRConfig(k=4)
    diag = quantized.diagnose(images[0], config=cfg)[0]
    grid = diag.plan.grids[0]
    assert len(grid.sources) == 4
    reference = SCRPipeline.from_pretrained(wide_llava).diagnose(images[0], config=cfg)[0].plan.grids[0]
    shared = len(set(grid.sources) & set(reference.sources))
    record_property(f"{model_quantization(quantized.model)}_sources_shared_with_fp32", shared)  # reported only


def test_hooks_edit_only_the_prefill_on_a_quantized_decoder(quantized, images):
    cfg = SCRConfig(k=4, hook_layers=(2,))
    diag = quantized.diagnose(images[:1], config=cfg)
    batch = quantized.prepare(images[:1], ["describe the image ."])
    raw, edited = layer_outputs_with_and_without_the_edit(quantized, batch, [d.plan for d in diag], 2, 3)
    assert [t.shape[1] for t in raw] == [batch.layout.seq_len, 1, 1]
    assert all(torch.equal(raw[step], edited[step]) for step in (1, 2))
    changed = set(torch.nonzero((raw[0] != edited[0]).any(dim=-1)[0]).flatten().tolist())
    grid, plan = batch.layout.grids_of(0)[0], diag[0].plan.grids[0]
    assert changed == set(grid.positions[list(plan.sources) + list(plan.neighbours)].tolist())
    assert no_hooks_left(quantized)


def stored_checksum(model) -> str:
    """Every parameter, buffer and bitsandbytes quantization-state tensor as it is held in memory."""
    digest = hashlib.sha256()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(name.encode() + tensor.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        state = getattr(tensor, "quant_state", None)
        for key, value in sorted(vars(state).items()) if state is not None else ():
            for part in ([value] if torch.is_tensor(value) else vars(value).values() if hasattr(value, "absmax") else []):
                if torch.is_tensor(part):
                    digest.update(key.encode() + part.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def test_caption_with_scr_leaves_weights_and_hooks_as_they_were(quantized, images):
    # On a CPU with AVX512-BF16, bitsandbytes 0.50 packs a 4-bit layer's weight for the CPU on its first
    # forward, with or without SCR, and state_dict() unpacks it again (lossily): so the reference is taken
    # after one vanilla caption, from the tensors as stored, never through state_dict()
    quantized.caption(images[0], scr=None, max_new_tokens=1)
    before = stored_checksum(quantized.model)
    result = quantized.caption(images[0], scr=SCRConfig(k=4, lam=2.0), max_new_tokens=4)[0]
    assert result.token_ids and result.plan is not None
    assert stored_checksum(quantized.model) == before
    assert no_hooks_left(quantized)


def test_hooks_are_removed_after_an_error_inside_generation(quantized, images):
    class Explode(LogitsProcessor):
        def __call__(self, input_ids, scores):
            raise RuntimeError("boom in the middle of generation")

    with pytest.raises(RuntimeError, match="boom"):
        quantized.caption(images[0], scr=SCRConfig(k=4, lam=3.0), max_new_tokens=4,
                          logits_processor=LogitsProcessorList([Explode()]))
    assert no_hooks_left(quantized)


def test_bad_quantization_values_are_one_line_errors(wide_llava):
    with pytest.raises(ConfigError, match="none, 8bit or 4bit"):
        LoadOptions(quantization="3bit")
    assert LoadOptions(quantization="none").quantization is None
    with pytest.raises(ConfigError, match="cpu or cuda"):
        SCRPipeline.from_pretrained(wide_llava, quantization="4bit", device="mps")


def test_every_family_names_modules_its_tiny_model_has(tmp_path):
    from transformers import AutoConfig, AutoModelForImageTextToText

    from scr_core.adapters import ADAPTERS
    from scr_core.testbed import tiny_families, tiny_modern

    builders = {**tiny_families.BUILDERS, **tiny_modern.BUILDERS}
    builders.pop("remote_code")
    from scr_core.testbed.tiny import build_tiny_llava

    builders["llava"] = build_tiny_llava
    seen = set()
    for family, build in builders.items():
        folder = build(tmp_path / family)
        config = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(config)
        names = dict(model.named_modules())
        declared = ADAPTERS[config.model_type].unquantized_modules
        assert declared and all(name in names for name in declared), (family, declared)
        assert "lm_head" in declared
        seen.add(config.model_type)
    assert seen == set(ADAPTERS)


def test_the_exporter_refuses_a_quantized_checkpoint(quantized, tmp_path):
    need_extra("onnx")
    from export.exporter import ExportOptions
    from scr_core import UnsupportedModelError

    saved = tmp_path / "saved"
    quantized.model.save_pretrained(saved)
    quantized.processor.save_pretrained(saved)
    for dtype in ("fp32", "int4"):  # int4 graphs are made from the unquantized weights, not from bitsandbytes'
        with pytest.raises(UnsupportedModelError, match="quantized checkpoint"):
            ExportOptions(model=saved, out=tmp_path / "onnx", dtype=dtype).check()
    assert not (tmp_path / "onnx").exists()


def test_cli_quantize_flag_captions(wide_llava, images, tmp_path, capsys):
    from scr_core.cli import main

    picture = tmp_path / "picture.png"
    images[0].save(picture)
    assert main(["caption", str(picture), "--model", str(wide_llava), "--quantize", "4bit", "--k", "4",
                 "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.strip()


def test_a_generic_adapter_is_quantized_only_when_it_names_what_stays_in_full_precision(wide_llava, images):
    import bitsandbytes as bnb
    from functools import partial

    from scr_core.adapters import GenericAdapter
    from transformers import AutoConfig

    token = AutoConfig.from_pretrained(wide_llava).image_token_id
    generic = partial(GenericAdapter, image_token_id=token, grid=(8, 8), layers_path="model.language_model.layers")
    with pytest.raises(ConfigError, match="unquantized_modules"):
        SCRPipeline.from_pretrained(wide_llava, adapter=generic, quantization="8bit")
    keep = ("model.vision_tower", "model.multi_modal_projector", "lm_head")
    pipe = SCRPipeline.from_pretrained(wide_llava, adapter=partial(generic, unquantized_modules=keep),
                                       quantization="8bit")
    assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in pipe.adapter.decoder_layers().modules())
    assert not any(isinstance(m, bnb.nn.Linear8bitLt) for m in pipe.model.get_submodule("model.vision_tower").modules())
    assert len(pipe.diagnose(images[0], config=SCRConfig(k=4))[0].plan.grids[0].sources) == 4
