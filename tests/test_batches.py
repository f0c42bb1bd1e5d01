"""True batches: images of different sizes captioned several at a time give the captions they get alone."""

from __future__ import annotations

import functools

import pytest

from scr_core import SCRConfig
from scr_core.defaults import TESTBED_CHECKPOINT

bundled = pytest.mark.skipif(not (TESTBED_CHECKPOINT / "config.json").is_file(),
                             reason="the trained testbed checkpoint is not bundled in this checkout")


@functools.cache
def loaded_testbed():
    from scr_core import SCRPipeline

    return SCRPipeline.from_pretrained(TESTBED_CHECKPOINT)


def scenes_of_many_sizes(count: int = 7):
    """Testbed scenes (different objects each), every one resized to its own width and height."""
    from scr_core.testbed.scenes import generate_scene

    return [generate_scene(index, 11).image.resize((80 + 20 * index, 150 - 10 * index)) for index in range(count)]


def in_batches(pipe, images, size: int, **kwargs):
    return [r for start in range(0, len(images), size) for r in pipe.caption(images[start:start + size], **kwargs)]


@bundled
@pytest.mark.parametrize("scr", [None, SCRConfig()], ids=["vanilla", "scr"])
def test_greedy_captions_at_batch_3_equal_batch_1(scr):
    pipe, images = loaded_testbed(), scenes_of_many_sizes()
    assert len({im.size for im in images}) == len(images)
    alone = in_batches(pipe, images, 1, scr=scr, max_new_tokens=24)
    together = in_batches(pipe, images, 3, scr=scr, max_new_tokens=24)  # 3 + 3 + 1: a short last batch too
    assert [r.text for r in together] == [r.text for r in alone]
    assert len({r.text for r in alone}) >= 4 and all(r.text for r in alone)  # different scenes, real captions
    if scr is not None:  # the same sources chosen per image, whatever shares its batch
        assert [r.plan.grids[0].sources for r in together] == [r.plan.grids[0].sources for r in alone]


@bundled
def test_plans_diagnosed_one_by_one_caption_a_batch_as_they_did_alone():
    pipe, images = loaded_testbed(), scenes_of_many_sizes(4)
    plans = [pipe.diagnose(image)[0].plan for image in images]
    alone = [pipe.caption(image, scr=plan, max_new_tokens=24)[0].text for image, plan in zip(images, plans)]
    together = [r.text for r in pipe.caption(images, scr=plans, max_new_tokens=24)]
    assert together == alone


@bundled
def test_progress_counts_every_token_of_a_batch_and_a_stop_ends_it_within_one():
    from scr_core import GenerationInterrupted

    pipe, images = loaded_testbed(), scenes_of_many_sizes(3)
    steps = []
    with pytest.raises(GenerationInterrupted) as stopped:
        pipe.caption(images, scr=None, max_new_tokens=24, progress=lambda step, total: steps.append((step, total)),
                     should_stop=lambda: len(steps) >= 2)
    assert steps == [(1, 24), (2, 24)]
    assert len(stopped.value.results) == 3 and all(len(r.token_ids) == 2 for r in stopped.value.results)
