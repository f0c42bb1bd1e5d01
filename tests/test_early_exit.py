"""``SCRPipeline.early_exit``: the two-pass floor the benchmark holds SCR to."""

import pytest

from scr_core import ConfigError, SCRConfig


def _count_layer_calls(pipe, run):
    calls = {}
    layers = pipe.adapter.decoder_layers()
    handles = [layer.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls.get(i, 0) + 1))
               for i, layer in enumerate(layers)]
    try:
        result = run()
    finally:
        for h in handles:
            h.remove()
    return calls, result


def test_early_exit_runs_layers_up_to_the_last_diagnostic_layer_once(pipe, images):
    batch = pipe.prepare(images[0])
    last = max(pipe.resolve(SCRConfig()).diag_layers)
    calls, ms = _count_layer_calls(pipe, lambda: pipe.early_exit(batch))
    assert calls == {i: 1 for i in range(last + 1)}
    assert ms > 0
    calls, _ = _count_layer_calls(pipe, lambda: pipe.early_exit(batch, last_layer=2))
    assert calls == {0: 1, 1: 1, 2: 1}


def test_early_exit_leaves_no_hook_behind(pipe, images):
    batch = pipe.prepare(images[0])
    pipe.early_exit(batch, last_layer=1)
    calls, _ = _count_layer_calls(pipe, lambda: pipe.caption(batch, scr=None, max_new_tokens=1))
    assert calls == {i: 1 for i in range(pipe.depth)}  # a full forward afterwards reaches every layer


@pytest.mark.parametrize("last", [-1, 10_000, True, 2.0])
def test_early_exit_refuses_a_layer_the_model_does_not_have(pipe, images, last):
    with pytest.raises(ConfigError, match="last_layer"):
        pipe.early_exit(images[0], last_layer=last)
