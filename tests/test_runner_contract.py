"""One runner contract (``scr_core.runner.VLMRunner``): the same calls on the PyTorch pipeline and the ONNX
runtime of one tiny LLaVA give the same plans and tokens, and refuse the same bad arguments alike."""

from __future__ import annotations

import inspect

import pytest
from PIL import Image

from export.runtime import OnnxVLM
from scr_core import ConfigError, GenerationInterrupted, InputError, ReleasedError, SCRConfig, SCRPipeline
from scr_core.runner import VLMRunner
from tests.test_onnx_llava import llava_dir, llava_onnx, llava_pil_pipe, llava_vlm  # noqa: F401  (fixtures)

PROMPT = "Describe the image."
METHODS = ("prepare", "check_image", "diagnose", "caption", "answer", "answer_prompt", "generate", "resolve", "to",
           "release")


@pytest.fixture(scope="module")
def runners(llava_pil_pipe, llava_vlm):  # noqa: F811
    return {"pytorch": llava_pil_pipe, "onnx": llava_vlm}


def _parameters(function) -> tuple[list[str], set[str]]:
    """(positional parameters in order, keyword-only ones)."""
    values = inspect.signature(function).parameters.values()
    return ([p.name for p in values if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)],
            {p.name for p in values if p.kind == p.KEYWORD_ONLY})


@pytest.mark.parametrize("kind", ["pytorch", "onnx"])
def test_both_are_vlm_runners_with_the_protocols_parameters(runners, kind):
    runner = runners[kind]
    assert isinstance(runner, VLMRunner)
    for name in METHODS:
        (positional, keywords), (ours, our_keywords) = (_parameters(getattr(VLMRunner, name)),
                                                         _parameters(getattr(type(runner), name)))
        assert ours[:len(positional)] == positional and keywords <= our_keywords, (kind, name)
        defaults = {p.name: p.default for p in inspect.signature(getattr(VLMRunner, name)).parameters.values()}
        for p in inspect.signature(getattr(type(runner), name)).parameters.values():
            if p.name in defaults and p.name != "self":
                assert p.default == defaults[p.name], (kind, name, p.name)
    assert runner.depth == 10


def _session(runner, images) -> dict:
    """The calls a caller (a ComfyUI node, the caption-folder loop) makes, in one place."""
    out = {}
    batch = runner.prepare(images[:2], PROMPT)
    found = runner.diagnose(batch)
    out["plans"] = [d.plan for d in found]
    out["small"] = [d.plan for d in runner.diagnose(batch, config=SCRConfig(k=3))]
    out["with_plans"] = [r.token_ids for r in runner.caption(batch, scr=out["plans"], max_new_tokens=4)]
    out["default"] = runner.caption(images[0], max_new_tokens=4)[0]
    out["vanilla"] = runner.caption(images[0], scr=None, max_new_tokens=4)[0].token_ids
    out["answer"] = runner.answer(images[0], "Is there a cat?", max_new_tokens=2)[0].token_ids
    out["answer_prompt"] = runner.answer_prompt("Is there a cat?")
    steps = []
    runner.generate(images[1], PROMPT, scr=SCRConfig(k=2), max_new_tokens=3, progress=lambda s, n: steps.append((s, n)))
    out["steps"] = steps
    with pytest.raises(GenerationInterrupted) as stopped:
        runner.generate(images[1], scr=None, max_new_tokens=5, should_stop=lambda: len(stopped_at) > 0,
                        progress=lambda s, n: stopped_at.append(s))
    out["partial"] = len(stopped.value.results[0].token_ids)
    out["resolved"] = runner.resolve(SCRConfig(k=5))
    return out


stopped_at: list = []


def test_the_same_calls_give_the_same_results(runners, images):
    results = {}
    for kind, runner in runners.items():
        stopped_at.clear()
        results[kind] = _session(runner, images)
    torch_side, onnx_side = results["pytorch"], results["onnx"]
    assert onnx_side["plans"] == torch_side["plans"] and onnx_side["small"] == torch_side["small"]
    assert all(g.num_sources <= 3 for p in onnx_side["small"] for g in p.grids)
    for key in ("with_plans", "vanilla", "answer", "answer_prompt", "steps", "partial", "resolved"):
        assert onnx_side[key] == torch_side[key], key
    assert onnx_side["default"].token_ids == torch_side["default"].token_ids
    assert onnx_side["default"].plan == torch_side["default"].plan is not None
    assert torch_side["partial"] == 1


@pytest.mark.parametrize("kind", ["pytorch", "onnx"])
@pytest.mark.parametrize("bad", ["config", True, 3, [], ["plan"]], ids=["string", "bool", "int", "empty", "strings"])
def test_the_same_scr_vocabulary_is_refused_alike(runners, images, kind, bad):
    with pytest.raises(ConfigError, match="scr must be an SCRConfig, a RedistributionPlan"):
        runners[kind].caption(images[0], scr=bad, max_new_tokens=1)


@pytest.mark.parametrize("kind", ["pytorch", "onnx"])
def test_a_strip_the_processor_would_blow_up_is_refused_alike(runners, images, kind):
    with pytest.raises(InputError, match="is 1x3000, an aspect ratio of 3,000:1; up to 200:1 is accepted"):
        runners[kind].caption([images[0], Image.new("RGB", (1, 3000))], max_new_tokens=1)


@pytest.mark.parametrize("kind", ["pytorch", "onnx"])
def test_diagnose_takes_only_a_config(runners, images, kind):
    with pytest.raises(ConfigError, match="config must be an SCRConfig"):
        runners[kind].diagnose(images[0], config=5)


def test_to_and_release(llava_dir, llava_onnx, images):  # noqa: F811
    for runner in (SCRPipeline.from_pretrained(llava_dir, processor_kwargs={"backend": "pil"}),
                   OnnxVLM(llava_onnx, provider="cpu")):
        assert runner.to("cpu") is runner
        assert runner.caption(images[0], max_new_tokens=1)[0].token_ids
        runner.release()
        with pytest.raises(ReleasedError):
            runner.caption(images[0], max_new_tokens=1)


def test_an_export_refuses_settings_it_was_not_made_with(llava_vlm):  # noqa: F811
    with pytest.raises(ConfigError, match=r"lam=1\.1 built in \(asked: lam=1\.3\)"):
        llava_vlm.resolve(SCRConfig(lam=1.3))
    assert llava_vlm.resolve(SCRConfig(k=7)).hook_layers == llava_vlm.settings.hook_layers
