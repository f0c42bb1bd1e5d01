"""HallusionBench: reader on the official JSON, hand-computed aAcc / fAcc / qAcc (rule-based parsing)."""

from __future__ import annotations

import json

import pytest

from scr_core.errors import DataError
from scr_core.eval.hallusionbench import read_hallusionbench, score_hallusionbench

# In fixture order:
ANSWERS = [
    "Yes, they are the same size.",        # VD illusion set 0 fig 0 q0, gt yes -> right
    "No.",                                 # VD illusion set 0 fig 0 q1, gt no  -> right
    "Yes",                                 # VD illusion set 0 fig 1 q0, gt no  -> wrong
    "yes",                                 # VD illusion set 0 fig 1 q1, gt yes -> right
    # VS chart set 0 fig 0 (asked without the figure) q0, gt no -> unknown, counted right (official "uncertain")
    "I cannot answer without the chart.",
    "No",                                  # VS chart set 0 fig 1 q0, gt no  -> right
]


def test_reader(hallusion_dir):
    samples = read_hallusionbench(hallusion_dir / "HallusionBench.json", hallusion_dir / "hallusion_bench")
    assert len(samples) == 6
    s0 = samples[0]
    assert s0.question_id == "VD_illusion_0_0_0"
    assert s0.label == "yes" and samples[1].label == "no"
    # "./hallusion_bench/VD/..." and "./VS/..." both resolve inside the image folder
    assert s0.image_path == hallusion_dir / "hallusion_bench" / "VD" / "illusion" / "0_0.png"
    assert samples[5].image_path == hallusion_dir / "hallusion_bench" / "VS" / "chart" / "0_1.png"
    assert samples[4].image_path is None and not samples[4].has_figure
    assert len(read_hallusionbench(hallusion_dir / "HallusionBench.json", hallusion_dir / "hallusion_bench",
                                   include_text_only=False)) == 5


def test_scores_hand_computed(hallusion_dir):
    samples = read_hallusionbench(hallusion_dir / "HallusionBench.json", hallusion_dir / "hallusion_bench")
    res = score_hallusionbench(samples, ANSWERS)
    o = res.overall
    assert o.aacc == pytest.approx(5 / 6)  # only VD fig 1 q0 is wrong
    # figures (VS without figure excluded): VD_illusion_0_0 all right, VD_illusion_0_1 not, VS_chart_0_1 right
    assert (o.facc, o.n_figures) == (pytest.approx(2 / 3), 3)
    # question groups: VD_illusion_0_0 (fig0 q0 right, fig1 q0 wrong) -> no; VD_illusion_0_1 -> yes;
    # VS_chart_0_0 (no-figure q0 right, fig1 q0 right) -> yes
    assert (o.qacc, o.n_question_groups) == (pytest.approx(2 / 3), 3)
    vd, vs = res.by_category["VD"], res.by_category["VS"]
    assert (vd.aacc, vd.facc, vd.qacc) == (pytest.approx(3 / 4), pytest.approx(1 / 2), pytest.approx(1 / 2))
    assert (vs.aacc, vs.facc, vs.qacc) == (1.0, 1.0, 1.0)
    assert res.predictions[4] == "unknown" and res.correct[4] is True
    assert res.to_dict()["overall"]["aAcc"] == pytest.approx(500 / 6)


def test_unknown_without_figure_can_count_as_wrong(hallusion_dir):
    samples = read_hallusionbench(hallusion_dir / "HallusionBench.json", hallusion_dir / "hallusion_bench")
    res = score_hallusionbench(samples, ANSWERS, unknown_correct_without_figure=False)
    assert res.overall.aacc == pytest.approx(4 / 6)
    assert res.overall.facc == pytest.approx(2 / 3)   # the no-figure question is not in fAcc anyway
    assert res.overall.qacc == pytest.approx(1 / 3)   # VS_chart_0_0 now fails


def test_answers_by_id(hallusion_dir):
    samples = read_hallusionbench(hallusion_dir / "HallusionBench.json", hallusion_dir / "hallusion_bench")
    by_id = {s.question_id: ("Yes" if s.label == "yes" else "No") for s in samples}
    res = score_hallusionbench(samples, by_id)
    assert (res.overall.aacc, res.overall.facc, res.overall.qacc) == (1.0, 1.0, 1.0)


def test_missing_image_and_bad_records(hallusion_dir):
    (hallusion_dir / "hallusion_bench" / "VD" / "illusion" / "0_1.png").unlink()
    with pytest.raises(DataError, match=r"0_1.png.*HallusionBench.json"):
        read_hallusionbench(hallusion_dir / "HallusionBench.json", hallusion_dir / "hallusion_bench")
    bad = hallusion_dir / "bad.json"
    records = json.loads((hallusion_dir / "HallusionBench.json").read_text())
    del records[2]["gt_answer"]
    bad.write_text(json.dumps(records))
    with pytest.raises(DataError, match="bad.json record 3 has no field 'gt_answer'"):
        read_hallusionbench(bad, hallusion_dir / "hallusion_bench", check_images=False)
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json is not valid JSON"):
        read_hallusionbench(bad, hallusion_dir / "hallusion_bench")
