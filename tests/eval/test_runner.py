"""The benchmark runner end to end on testbed-format data and a tiny saved LLaVA."""

from __future__ import annotations

import json

import pytest
import torch

from scr_core.config import SCRConfig
from scr_core.errors import SCRError
from scr_core.eval import baselines
from scr_core.eval.runner import method_generator, run, run_benchmark
from scr_core.eval.suites import load_suite
from scr_core.testbed.benchmarks import write_benchmarks
from scr_core.testbed.scenes import generate_scenes

CFG = SCRConfig(k=4)


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    write_benchmarks(generate_scenes(6, seed=11), root, seed=0)
    return root


def test_pope_run_writes_predictions_summary_and_entropy_analysis(pipe, bench_dir, tmp_path):
    summary = run("pope", bench_dir / "pope", pipe, "vanilla", tmp_path / "v", CFG, limit=4, batch_size=4,
                  progress=False)
    lines = (tmp_path / "v" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == summary["n"] == 12  # 4 per split
    assert all(json.loads(ln)["entropy"] > 0 for ln in lines)
    overall = summary["scores"]["overall"]
    assert {"accuracy", "f1", "hr", "yes_ratio"} <= set(overall)
    assert "pearson_r" in summary["entropy_analysis"]
    assert (tmp_path / "v" / "entropy_vs_hr.png").is_file()


def test_resume_after_a_crash_gives_the_same_summary(pipe, bench_dir, tmp_path):
    suite = load_suite("pope", bench_dir / "pope", limit=3)
    meta = {"benchmark": "pope", "method": "scr", "seed": 0}
    generate = method_generator(pipe, "scr", CFG)
    full = run_benchmark(suite, generate, tmp_path / "full", meta, batch_size=2, progress=False)

    calls = {"n": 0}

    def crashing(tasks):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        return generate(tasks)

    with pytest.raises(KeyboardInterrupt):
        run_benchmark(suite, crashing, tmp_path / "resumed", meta, batch_size=2, progress=False)
    predictions = tmp_path / "resumed" / "predictions.jsonl"
    written = predictions.read_text().splitlines()
    assert len(written) == 4  # two batches of two survived
    with open(predictions, "a") as f:
        f.write('{"id": "random/1", "te')  # a half-written line from the crash
    seen = []

    def counting(tasks):
        seen.extend(t.id for t in tasks)
        return generate(tasks)

    resumed = run_benchmark(suite, counting, tmp_path / "resumed", meta, batch_size=2, progress=False)
    assert len(seen) == 9 - 4  # nothing recomputed
    assert resumed["scores"] == full["scores"]
    assert resumed["n"] == full["n"] == 9


def test_resuming_with_other_settings_is_refused(pipe, bench_dir, tmp_path):
    run("pope", bench_dir / "pope", pipe, "scr", tmp_path / "r", CFG, limit=1, progress=False)
    with pytest.raises(SCRError, match="other settings.*method"):
        run("pope", bench_dir / "pope", pipe, "uniform", tmp_path / "r", CFG, limit=1, progress=False)


@pytest.mark.parametrize("method", ["scr", "uniform", "vcd", "dola"])
def test_every_method_runs_chair(pipe, bench_dir, tmp_path, method):
    summary = run("chair", bench_dir / "chair", pipe, method, tmp_path / method, CFG, limit=3, batch_size=2,
                  progress=False)
    assert summary["n"] == 3
    assert {"chair_s", "chair_i", "recall"} <= set(summary["scores"])
    assert summary["latency_ms_mean"] > 0


def test_vcd_with_alpha_zero_is_greedy_vanilla(pipe, images):
    vanilla = pipe.caption(images[:2], "describe the image .", scr=None, max_new_tokens=6)
    vcd = baselines.generate_vcd(pipe, images[:2], "describe the image .", alpha=0.0, beta=1e-9, max_new_tokens=6)
    assert [r.token_ids for r in vcd] == [r.token_ids for r in vanilla]


def test_vcd_scores_match_a_manual_contrast(pipe, images):
    batch = pipe.prepare(images[:1], "describe the image .")
    noised_inputs = baselines.double_batch_with_noised_images(
        {k: v for k, v in pipe.adapter.prepare([[images[0]]], ["describe the image ."]).items()}, seed=0)
    with torch.no_grad():
        logits = pipe.model(**noised_inputs).logits[:, -1].float()
    clean, noised = logits[0], logits[1]
    expected = (2 * clean - noised).masked_fill(clean < clean.max() + torch.log(torch.tensor(0.1)), float("-inf"))
    got = baselines.VisualContrastiveProcessor()(None, logits)[0]
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    assert torch.allclose(got[~torch.isinf(got)], expected[~torch.isinf(expected)], atol=1e-5)
    assert batch.layout.batch_size == 1


def test_dola_processor_matches_a_reference_on_hidden_states(tiny_llava_dir, images):
    from scr_core.pipeline import SCRPipeline

    # A private model: output_hidden_states=True leaves transformers' own recording hooks behind.
    pipe = SCRPipeline.from_pretrained(tiny_llava_dir)
    inputs = pipe.adapter.prepare([[images[0]]], ["describe the image ."])
    layers = pipe.adapter.decoder_layers()
    candidates = baselines.dola_candidate_layers(len(layers))
    assert candidates == (0, 2, 4, 6, 8)
    with torch.no_grad(), baselines.capture_layer_inputs(layers, candidates) as captured:
        out = pipe.model(**inputs, output_hidden_states=True)
    final = out.logits[:, -1].float()
    norm, head = pipe.adapter.language_model().norm, pipe.model.get_output_embeddings()
    processor = baselines.LayerContrastProcessor(captured, norm, head)
    got = processor(None, final)[0]
    # reference: hidden_states[i] is the input of layer i; JSD argmax; relative-top filter.
    log_final = torch.log_softmax(final[0], -1)
    jsd = []
    for i in candidates:
        log_pre = torch.log_softmax(head(norm(out.hidden_states[i][0, -1])).float(), -1)
        m = 0.5 * (log_final.exp() + log_pre.exp())
        jsd.append(0.5 * ((log_final.exp() * (log_final - m.log())).mean() + (log_pre.exp() * (log_pre - m.log())).mean()))
    best = candidates[int(torch.stack(jsd).argmax())]
    log_best = torch.log_softmax(head(norm(out.hidden_states[best][0, -1])).float(), -1)
    keep = log_final >= log_final.max() + torch.log(torch.tensor(0.1))
    assert torch.equal(torch.isfinite(got), keep)
    assert torch.allclose(got[keep], (log_final - log_best)[keep], atol=1e-5)


def test_compare_table(pipe, bench_dir, tmp_path, capsys):
    from scr_core.cli import main

    for method in ("vanilla", "scr"):
        run("pope", bench_dir / "pope", pipe, method, tmp_path / method, CFG, limit=2, progress=False)
    assert main(["compare", str(tmp_path / "vanilla"), str(tmp_path / "scr"), "--out", str(tmp_path / "t.md")]) == 0
    table = (tmp_path / "t.md").read_text()
    assert "| vanilla" in table and "| scr" in table and "overall.hr" in table


def test_missing_data_names_the_file(pipe, tmp_path):
    with pytest.raises(SCRError, match="coco_pope_random.json|images|val2014"):
        run("pope", tmp_path, pipe, "scr", tmp_path / "o", CFG, progress=False)


def test_hallusionbench_asks_questions_without_a_figure_without_an_image(pipe, hallusion_dir, tmp_path):
    from scr_core.eval.runner import read_predictions
    from scr_core.eval.textonly import generate_text_only

    texts = {}
    for method in ("vanilla", "scr"):
        summary = run("hallusionbench", hallusion_dir, pipe, method, tmp_path / method, CFG, batch_size=4,
                      progress=False)
        assert summary["n"] == 6 and summary["scores"]["scope"] == "all"  # the official set
        texts[method] = {k: v["text"] for k, v in read_predictions(tmp_path / method / "predictions.jsonl").items()}
    text_only = "VS_chart_0_0_0"  # visual_input "0": no image
    question = next(s for s in load_suite("hallusionbench", hallusion_dir).tasks() if s.id == text_only)
    assert question.image is None
    expected = generate_text_only(pipe, [question.prompt], 10)[0]
    assert texts["vanilla"][text_only] == texts["scr"][text_only] == expected  # nothing to redistribute
    visual = run("hallusionbench", hallusion_dir, pipe, "scr", tmp_path / "visual", CFG, progress=False,
                 options={"scope": "visual"})
    assert visual["n"] == 5 and visual["scores"]["scope"] == "visual" and visual["options"] == {"scope": "visual"}
