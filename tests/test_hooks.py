"""The hooks on a real (tiny, saved and reloaded) LLaVA checkpoint."""

import hashlib

import pytest
import torch

from scr_core.config import SCRConfig
from scr_core.pipeline import SCRPipeline
from scr_core.redistribution import BatchEdit, redistribution


def checksum(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def no_hooks_left(pipe) -> bool:
    layers = pipe.adapter.decoder_layers()
    return all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in layers) and \
        not pipe.model._forward_hooks and not pipe.model._forward_pre_hooks


def layer_outputs_with_and_without_the_edit(pipe, batch, plans, layer: int, new_tokens: int):
    """Layer ``layer``'s output at every generation step, as it came out and after the SCR hook edited it."""
    layers = pipe.adapter.decoder_layers()
    edit = BatchEdit.build(plans, batch.layout)
    raw, edited = [], []
    before = layers[layer].register_forward_hook(lambda m, a, out: raw.append(out.clone()))
    try:
        with redistribution(layers, (layer,), edit):
            after = layers[layer].register_forward_hook(lambda m, a, out: edited.append(out.clone()))
            try:
                pipe.model.generate(**batch.inputs, max_new_tokens=new_tokens, do_sample=False)
            finally:
                after.remove()
    finally:
        before.remove()
    return raw, edited


def test_hook_edits_only_planned_visual_positions_in_prefill_and_nothing_on_decode(pipe, images):
    cfg = SCRConfig(k=4, hook_layers=(2,))
    diag = pipe.diagnose(images[:2], ["describe the image .", "is there a dog ?"], config=cfg)
    batch = pipe.prepare(images[:2], ["describe the image .", "is there a dog ?"])
    raw, edited = layer_outputs_with_and_without_the_edit(pipe, batch, [d.plan for d in diag], 2, 4)
    assert [t.shape[1] for t in raw] == [batch.layout.seq_len, 1, 1, 1]
    for step in range(1, 4):  # decode steps untouched
        assert torch.equal(raw[step], edited[step])
    changed = (raw[0] != edited[0]).any(dim=-1)  # (B, S)
    for sample, d in enumerate(diag):
        grid = batch.layout.grids_of(sample)[0]
        gp = d.plan.grids[0]
        planned = set(grid.positions[list(gp.sources) + list(gp.neighbours)].tolist())
        assert set(torch.nonzero(changed[sample]).flatten().tolist()) == planned
    assert no_hooks_left(pipe)


def test_prefill_only_hooks_leave_before_the_first_decode_step_and_edit_the_same(pipe, images):
    """The pipeline's hooks remove themselves after editing the prompt: decode steps run hook-free,
    and the KV-cached generation equals the one with hooks that stay (and return at once)."""
    layers = pipe.adapter.decoder_layers()
    cfg = SCRConfig(k=4, hook_layers=(1, 2))
    batch = pipe.prepare(images[:2], "describe the image .")
    edit = BatchEdit.build([d.plan for d in pipe.diagnose(batch, config=cfg)], batch.layout)
    hooks_seen = []
    probe = pipe.model.register_forward_pre_hook(
        lambda m, a, kw: hooks_seen.append(sum(len(layers[i]._forward_hooks) for i in (1, 2))), with_kwargs=True)
    try:
        outputs = {}
        for prefill_only in (False, True):
            hooks_seen.clear()
            with redistribution(layers, (1, 2), edit, prefill_only=prefill_only), torch.no_grad():
                outputs[prefill_only] = pipe.model.generate(**batch.inputs, max_new_tokens=5, do_sample=False,
                                                            output_logits=True, return_dict_in_generate=True)
            assert hooks_seen == ([2] + [0] * 4 if prefill_only else [2] * 5)
    finally:
        probe.remove()
    assert torch.equal(outputs[True].sequences, outputs[False].sequences)
    for a, b in zip(outputs[True].logits, outputs[False].logits):
        assert torch.equal(a, b)
    assert no_hooks_left(pipe)
    without_cache = pipe.generate(batch, scr=cfg, max_new_tokens=3, use_cache=False)  # re-runs the prompt: hooks stay
    assert [r.token_ids for r in without_cache] == [r.token_ids for r in pipe.generate(batch, scr=cfg, max_new_tokens=3)]


def test_weights_are_bit_identical_after_scr(pipe, images):
    before = checksum(pipe.model)
    pipe.caption(images[:2], "describe the image .", scr=SCRConfig(lam=2.0), max_new_tokens=4)
    assert checksum(pipe.model) == before
    assert no_hooks_left(pipe)


def test_hooks_are_removed_after_an_exception_inside_generation(tiny_llava_dir, images):
    from transformers import LogitsProcessor, LogitsProcessorList

    class Explode(LogitsProcessor):
        def __call__(self, input_ids, scores):
            raise RuntimeError("boom in the middle of generation")

    pipe = SCRPipeline.from_pretrained(tiny_llava_dir)
    with pytest.raises(RuntimeError, match="boom"):
        pipe.caption(images[0], scr=SCRConfig(lam=3.0), max_new_tokens=4,
                     logits_processor=LogitsProcessorList([Explode()]))
    assert no_hooks_left(pipe)
    after = pipe.caption(images[:2], "describe the image .", scr=None, max_new_tokens=6)
    fresh = SCRPipeline.from_pretrained(tiny_llava_dir).caption(
        images[:2], "describe the image .", scr=None, max_new_tokens=6)
    assert [r.token_ids for r in after] == [r.token_ids for r in fresh]


def test_lambda_one_equals_vanilla_exactly(pipe, images):
    vanilla = pipe.caption(images, "describe the image .", scr=None, max_new_tokens=8)
    identity = pipe.caption(images, "describe the image .", scr=SCRConfig(lam=1.0), max_new_tokens=8)
    assert [r.token_ids for r in identity] == [r.token_ids for r in vanilla]
    assert all(r.plan is not None and r.plan.grids[0].num_sources > 0 for r in identity)


def test_default_lambda_changes_greedy_output_on_some_seeds(tmp_path, images):
    from scr_core.testbed.tiny import build_tiny_llava

    changed = 0
    for seed in range(3):
        pipe = SCRPipeline.from_pretrained(build_tiny_llava(tmp_path / f"m{seed}", seed=seed))
        vanilla = pipe.caption(images, "describe the image .", scr=None, max_new_tokens=8)
        scr = pipe.caption(images, "describe the image .", scr=SCRConfig(), max_new_tokens=8)
        changed += sum(a.token_ids != b.token_ids for a, b in zip(vanilla, scr))
    assert changed > 0


def test_batched_results_equal_single_results(pipe, images):
    prompts = ["describe the image .", "is there a red circle in the image ?"]
    batched = pipe.caption(images[:2], prompts, max_new_tokens=6)
    singles = [pipe.caption(img, p, max_new_tokens=6)[0] for img, p in zip(images[:2], prompts)]
    assert [r.plan for r in batched] == [r.plan for r in singles]
    assert [r.token_ids for r in batched] == [r.token_ids for r in singles]


def test_answer_parses_yes_no(pipe, images):
    result = pipe.answer(images[0], "is there a dog ?", max_new_tokens=3)[0]
    assert result.yes_no in ("yes", "no")


def test_uniform_smooth_gives_each_prompt_of_a_batch_its_own_sources(pipe, images):
    cfg = SCRConfig(k=4, selection="uniform", seed=5)
    batched = pipe.caption(images[:2], "describe the image .", scr=cfg, max_new_tokens=2)
    again = pipe.caption(images[:2], "describe the image .", scr=cfg, max_new_tokens=2)
    assert batched[0].plan != batched[1].plan
    assert [r.plan for r in batched] == [r.plan for r in again]
    assert all(r.diagnosis is None for r in batched)  # no diagnostic pass for random sources
