"""The trained testbed: training is deterministic, the bundled checkpoint learned, the report runs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from scr_core.defaults import TESTBED_CHECKPOINT
from scr_core.testbed.train import TrainConfig, assistant_labels, make_batch, patch_classes, train

bundled = pytest.mark.skipif(not (TESTBED_CHECKPOINT / "config.json").is_file(),
                             reason="the trained testbed checkpoint is not bundled in this checkout")

TINY = replace(TrainConfig(), steps=2, batch_size=3, num_layers=2, hidden_size=32, intermediate_size=64,
               vision_hidden_size=32, log_every=1, threads=1)


def test_training_is_deterministic_given_the_seed(tmp_path):
    a = load_file(train(TINY, tmp_path / "a") / "model.safetensors")
    b = load_file(train(TINY, tmp_path / "b") / "model.safetensors")
    c = load_file(train(replace(TINY, seed=1), tmp_path / "c") / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    log = (tmp_path / "a" / "training_log.jsonl").read_text().splitlines()
    assert '"event": "start"' in log[0] and len(log) == 3


def test_loss_covers_exactly_the_assistant_answers(tmp_path):
    from scr_core.testbed.scenes import vocabulary
    from scr_core.testbed.tiny import make_llava

    _, processor = make_llava(words=vocabulary(), image_size=96, patch_size=8, num_layers=1)
    batch = make_batch(0, TINY, processor)
    tok = processor.tokenizer
    for ids, labels in zip(batch["input_ids"], batch["labels"]):
        supervised = tok.convert_ids_to_tokens(ids[labels != -100])
        text = " ".join(supervised)
        assert supervised[-1] == "</s>" and "USER" not in text and "Is" not in text and "<image>" not in text
        assert text.count("</s>") == (ids == tok.convert_tokens_to_ids("ASSISTANT")).sum().item()
    assert assistant_labels(torch.tensor([[5, 6]]), tok).eq(-100).all()


def test_patch_targets_mark_exactly_the_patches_an_object_covers():
    from scr_core.testbed.scenes import CLASS_NAMES, SceneOptions, generate_scene

    scene = generate_scene(3, 0, SceneOptions(min_objects=1, max_objects=1))
    (obj,) = scene.objects
    targets = patch_classes(scene, patch_size=8, cover=0.15)
    assert targets.shape == (144, len(CLASS_NAMES))
    marked = set(targets[:, CLASS_NAMES.index(obj.name)].nonzero()[0].tolist())
    assert marked and marked <= set(obj.patch_indices(8, 96))  # only patches inside the bbox
    assert targets.sum() == len(marked)  # no other class anywhere
    cx, cy = obj.centre
    if obj.shape != "ring":  # a ring's centre is its hole
        assert int(cy // 8) * 12 + int(cx // 8) in marked


@bundled
def test_bundled_checkpoint_answers_held_out_questions():
    from scr_core.pipeline import SCRPipeline
    from scr_core.testbed.scenes import CLASS_NAMES, generate_scene

    pipe = SCRPipeline.from_pretrained(TESTBED_CHECKPOINT)
    options = TrainConfig().scenes()
    scenes = [generate_scene(i, 4321, options) for i in range(60)]
    questions, images, labels = [], [], []
    for scene in scenes:
        q = scene.questions()
        for pick in (next(x for x in q if x.answer == "yes"), next(x for x in q if x.answer == "no")):
            questions.append(pick.text)
            images.append(scene.image)
            labels.append(pick.answer)
    answers = [r.text.split()[0].lower() if r.text else "" for r in
               pipe.answer(images, questions, scr=None, max_new_tokens=3)]
    accuracy = sum(a == b for a, b in zip(answers, labels)) / len(labels)
    # docs/testbed.md: ~70 % POPE accuracy, biased to "no"; 72.5 % here when it was bundled (chance: 50 %).
    assert accuracy >= 0.65, (accuracy, answers)
    assert set(answers) <= {"yes", "no"}
    # Its captions are grounded (CHAIR-s 0 in docs/testbed.md): they name present objects only.
    captions = pipe.caption([s.image for s in scenes[:8]], scr=None, max_new_tokens=24)
    for scene, result in zip(scenes, captions):
        named = {w.strip(".,") for w in result.text.split()} & set(CLASS_NAMES)
        assert result.text.startswith("a ") and named and named <= scene.present, (result.text, scene.present)


@bundled
def test_report_runs_on_a_small_subset(tmp_path):
    from scr_core.pipeline import SCRPipeline
    from scr_core.testbed.report import build_report

    pipe = SCRPipeline.from_pretrained(TESTBED_CHECKPOINT)
    report = build_report(pipe, tmp_path, n_images=10, seeds=(1001,), lambdas=(2.0,), progress=False)
    assert "| SCR |" in report and "| Uniform-Smooth |" in report and "| 2.0 |" in report
    assert "Credit concentration" in report and "over 144 patches" in report
    assert (tmp_path / "report.md").read_text() == report
