"""Entropy-hallucination analysis on synthetic data with a known correlation; markdown tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scr_core.eval.analysis import entropy_hallucination_analysis, plot_entropy_hallucination
from scr_core.eval.report import comparison_table, deltas


def exact_linear_data():
    """11 bins x 10 "no" samples: bin k has entropies 3 + 0.1k + 0.001j and 10 - k hallucinations.

    HR per bin = (10 - k) / 10 falls linearly with the bin's mean entropy, so Pearson r = -1.
    Five "yes" questions are mixed in and must be ignored.
    """
    ent, labels, preds = [], [], []
    for k in range(11):
        for j in range(10):
            ent.append(3 + 0.1 * k + 0.001 * j)
            labels.append("no")
            preds.append("yes" if j < 10 - k else "no")
    ent += [9.0] * 5
    labels += ["yes"] * 5
    preds += ["yes"] * 5
    order = np.random.default_rng(0).permutation(len(ent))  # input order must not matter
    return [ent[i] for i in order], [labels[i] for i in order], [preds[i] for i in order]


def test_exact_negative_correlation():
    ent, labels, preds = exact_linear_data()
    res = entropy_hallucination_analysis(ent, labels, preds, n_bins=11)
    assert res.n_samples == 110 and res.n_excluded == 5
    assert [b.n for b in res.bins] == [10] * 11
    assert [b.hr for b in res.bins] == pytest.approx([(10 - k) / 10 for k in range(11)])
    assert res.bins[0].entropy_mean == pytest.approx(3.0045)   # mean of 3.000..3.009
    assert res.pearson_r == pytest.approx(-1.0)
    assert res.pearson_p < 1e-10
    # point-biserial r is the Pearson r of entropy with the 0/1 hallucination indicator (no-questions only)
    keep = [i for i, gt in enumerate(labels) if gt == "no"]
    expected = np.corrcoef([ent[i] for i in keep], [preds[i] == "yes" for i in keep])[0, 1]
    assert res.pointbiserial_r == pytest.approx(expected)
    assert res.pointbiserial_r < -0.5 and res.pointbiserial_p < 1e-10


def test_thirty_bins_noisy_known_trend():
    rng = np.random.default_rng(1)
    n = 3000
    ent = rng.uniform(3.0, 5.0, n)
    p_hal = 0.40 - 0.15 * (ent - 3.0)      # 40% at 3 nats down to 10% at 5 nats
    preds = np.where(rng.uniform(size=n) < p_hal, "yes", "no")
    res = entropy_hallucination_analysis(list(ent), ["no"] * n, list(preds))
    assert len(res.bins) == 30 and sum(b.n for b in res.bins) == n
    assert res.pearson_r < -0.85 and res.pearson_p < 1e-8
    # each bin's HR tracks the true rate at its mean entropy (binomial sd at n=100 is <= 0.05)
    for b in res.bins:
        assert abs(b.hr - (0.40 - 0.15 * (b.entropy_mean - 3.0))) < 0.2
    assert -0.4 < res.pointbiserial_r < -0.1


def test_positive_and_undefined_correlation():
    ent = list(np.linspace(3, 5, 60))
    hal = ["yes" if i >= 30 else "no" for i in range(60)]  # hallucination only at high entropy
    res = entropy_hallucination_analysis(ent, ["no"] * 60, hal, n_bins=6)
    assert res.pearson_r > 0.8
    flat = entropy_hallucination_analysis(ent, ["no"] * 60, ["no"] * 60, n_bins=6)
    assert math.isnan(flat.pearson_r) and math.isnan(flat.pointbiserial_r)


def test_unknown_answers_are_not_hallucinations():
    res = entropy_hallucination_analysis([1.0, 2.0, 3.0, 4.0], ["no"] * 4, ["yes", "unknown", "no", "yes"], n_bins=2)
    assert [b.n_hallucinated for b in res.bins] == [1, 1]
    assert [b.hr for b in res.bins] == [0.5, 0.5]


def test_input_errors():
    with pytest.raises(ValueError, match="only 3"):
        entropy_hallucination_analysis([1, 2, 3], ["no"] * 3, ["no"] * 3, n_bins=30)
    with pytest.raises(ValueError, match="lengths differ"):
        entropy_hallucination_analysis([1, 2], ["no"], ["no"])
    with pytest.raises(ValueError, match="not a finite number"):
        entropy_hallucination_analysis([1.0, float("nan"), 2.0], ["no"] * 3, ["no"] * 3, n_bins=2)
    with pytest.raises(ValueError, match="must be parsed"):
        entropy_hallucination_analysis([1.0, 2.0], ["no"] * 2, ["Yes.", "no"], n_bins=2)


def test_plot_writes_png(tmp_path):
    res = entropy_hallucination_analysis(*exact_linear_data(), n_bins=11)
    path = plot_entropy_hallucination(res, tmp_path / "plots" / "entropy_hr.png", title="synthetic")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


RESULTS = {
    "SCR": {"hr": 13.1, "accuracy": 86.5, "cider": 107.8},
    "vanilla": {"hr": 18.8, "accuracy": 80.9, "cider": 108.5},
    "VCD": {"hr": 14.6, "accuracy": 85.0, "cider": None},
}


def test_comparison_table():
    table = comparison_table(RESULTS, metrics=["hr", "accuracy", "cider"], labels={"hr": "HR"})
    assert table == (
        "| method | HR ↓ | accuracy ↑ | cider ↑ |\n"
        "|---|---:|---:|---:|\n"
        "| vanilla | 18.8 | 80.9 | 108.5 |\n"
        "| SCR | 13.1 (-5.7) | 86.5 (+5.6) | 107.8 (-0.7) |\n"
        "| VCD | 14.6 (-4.2) | 85.0 (+4.1) | – |\n"
    )


def test_table_without_baseline_and_errors():
    table = comparison_table({"a": {"x": 1.234}}, baseline=None, digits=2)
    assert table.splitlines()[-1] == "| a | 1.23 |"
    with pytest.raises(ValueError, match="baseline 'vanilla' not among methods"):
        comparison_table({"a": {"x": 1.0}})
    with pytest.raises(ValueError, match="no results"):
        comparison_table({})


def test_deltas():
    d = deltas(RESULTS)
    assert d["SCR"]["hr"] == pytest.approx(-5.7) and d["VCD"]["cider"] is None
    assert set(d) == {"SCR", "VCD"}
