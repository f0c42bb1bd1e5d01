"""The removal ablation (EAZY-style): SCR's planned sources zeroed in the same layers at prefill.

Checked against a numpy reference on hidden states, through the pipeline's own hooks on a tiny
saved LLaVA (exactly the planned source rows change at prefill, nothing at decode), and through
``eval --method remove``, ``compare`` and ``calibrate --removal``.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from scr_core.calibrate import calibrate, load_questions, markdown
from scr_core.config import SCRConfig
from scr_core.layout import VisualGrid, VisualLayout
from scr_core.plan import RedistributionPlan
from scr_core.redistribution import BatchEdit, remove_sources
from scr_core.selection import select_sources


def ref_remove(hidden: np.ndarray, sources) -> np.ndarray:
    """h_s <- 0 for every source row; every other row as it was."""
    out = hidden.copy()
    for s in sources:
        out[s] = 0.0
    return out


def test_remove_sources_matches_the_reference_and_leaves_its_input_alone():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((30, 5))
    sources = [3, 17, 29]
    before = hidden.copy()
    got = remove_sources(torch.tensor(hidden), torch.tensor(sources)).numpy()
    np.testing.assert_array_equal(got, ref_remove(hidden, sources))
    np.testing.assert_array_equal(hidden, before)


def test_batch_edit_removal_zeroes_exactly_the_planned_sources_with_left_padding():
    seq, d = 24, 6
    grids = (VisualGrid(0, 4, 4, np.arange(3, 19)), VisualGrid(1, 4, 4, np.arange(5, 21)))
    layout = VisualLayout(grids, 2, seq)
    rng = np.random.default_rng(1)
    cfg = SCRConfig(k=2, hook_layers=(0,))
    plans = [RedistributionPlan((select_sources(rng.random((4, 4)), cfg),), 1.1, (0,)) for _ in grids]
    edit = BatchEdit.build(plans, layout, remove=True)
    hidden = torch.tensor(rng.standard_normal((2, seq, d)))
    out = edit.apply(hidden)
    for sample, (grid, plan) in enumerate(zip(grids, plans)):
        rows = grid.positions[list(plan.grids[0].sources)]
        np.testing.assert_array_equal(out[sample].numpy(), ref_remove(hidden[sample].numpy(), rows))
        assert plan.grids[0].neighbours  # the plan has neighbours; removal leaves them untouched
    step = torch.randn(2, 1, d)
    assert edit.apply(step) is step  # decode step: untouched, not even copied


def test_pipeline_removal_changes_exactly_the_planned_source_rows_at_prefill_and_nothing_at_decode(pipe, images):
    """Layer 2's output as it came out (a hook registered before the pipeline's) against what layer 3
    received (its input), at every step of a real ``generate(remove_sources=True)``."""
    layers = pipe.adapter.decoder_layers()
    prompts = ["describe the image .", "is there a dog ?"]
    cfg = SCRConfig(k=4, hook_layers=(2,))
    batch = pipe.prepare(images[:2], prompts)
    plans = [d.plan for d in pipe.diagnose(batch, config=cfg)]
    raw, received = [], []
    handles = [layers[2].register_forward_hook(lambda m, a, out: raw.append(out.clone())),
               layers[3].register_forward_pre_hook(lambda m, a: received.append(a[0].clone()))]
    try:
        results = pipe.generate(batch, scr=plans, max_new_tokens=4, remove_sources=True)
    finally:
        for handle in handles:
            handle.remove()
    assert [t.shape[1] for t in raw] == [batch.layout.seq_len] + [1] * (len(raw) - 1) and len(raw) > 1
    for step in range(1, len(raw)):
        assert torch.equal(raw[step], received[step])
    for sample, plan in enumerate(plans):
        grid, gp = batch.layout.grids_of(sample)[0], plan.grids[0]
        assert gp.num_sources > 0
        expected = ref_remove(raw[0][sample].numpy(), grid.positions[list(gp.sources)])
        np.testing.assert_array_equal(received[0][sample].numpy(), expected)
    # with a config, the pipeline diagnoses and plans exactly as SCR does (same diagnosis, K and layers)
    removed = pipe.generate(batch, scr=cfg, max_new_tokens=4, remove_sources=True)
    scr = pipe.generate(batch, scr=cfg, max_new_tokens=4)
    assert [r.plan for r in removed] == [r.plan for r in scr] == plans
    assert all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in layers)


def test_eval_method_remove_runs_is_recorded_and_compare_shows_it(pipe, tmp_path, capsys):
    from scr_core.cli import main
    from scr_core.eval.runner import run
    from scr_core.testbed.benchmarks import write_benchmarks
    from scr_core.testbed.scenes import generate_scenes

    write_benchmarks(generate_scenes(4, seed=11), tmp_path / "bench", seed=0)
    cfg = SCRConfig(k=4)
    summaries = {m: run("pope", tmp_path / "bench" / "pope", pipe, m, tmp_path / m, cfg, limit=2, batch_size=3,
                        progress=False) for m in ("vanilla", "remove")}
    assert summaries["remove"]["method"] == "remove" and summaries["remove"]["config"]["k"] == 4
    assert summaries["remove"]["n"] == 6 and summaries["remove"]["latency_ms_mean"] > 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "vanilla"), str(tmp_path / "remove")]) in (None, 0)
    table = capsys.readouterr().out
    assert "| remove" in table and "| vanilla" in table


def test_calibrate_includes_the_removal_ablation_when_asked(pipe, tmp_path):
    from PIL import Image

    rows = []
    for i in range(4):
        Image.new("RGB", (32, 32), (60 * i, 200 - 40 * i, 90)).save(tmp_path / f"{i}.png")
        for j, (obj, label) in enumerate((("dog", "yes"), ("cat", "no"))):
            rows.append({"id": f"{i}-{j}", "image": f"{i}.png", "question": f"Is there a {obj}?", "label": label})
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    questions = load_questions(tmp_path / "q.jsonl")
    kwargs = dict(lams=(1.5, 3.0), ks=(4,), hook_layers=[(0, 1)], seed=1, batch_size=4, n_resamples=100)
    plain = calibrate(pipe, questions, **kwargs)
    with_removal = calibrate(pipe, questions, removal=True, **kwargs)
    assert [r.setting.label for r in with_removal.removals] == ["remove K=4 hooks 0-1"]
    assert with_removal.to_dict()["settings"] == plain.to_dict()["settings"]  # the SCR rows are unchanged
    assert with_removal.picked == plain.picked
    expected = []
    for start in range(0, len(questions), 4):
        chunk = questions[start:start + 4]
        expected += [r.text for r in pipe.generate([[q.image] for q in chunk], [q.prompt for q in chunk],
                                                   scr=SCRConfig(k=4, hook_layers=(0, 1)), max_new_tokens=10,
                                                   remove_sources=True)]
    assert with_removal.answers["remove K=4 hooks 0-1"] == expected
    assert "remove K=4 hooks 0-1" in markdown(with_removal)
    assert with_removal.to_dict()["removals"][0]["remove"] is True
