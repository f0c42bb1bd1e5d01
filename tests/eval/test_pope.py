"""POPE reader, metrics (hand-computed), McNemar test and data errors."""

from __future__ import annotations

import pytest

from scr_core.errors import DataError
from scr_core.eval.binary import binary_metrics
from scr_core.eval.pope import (
    PopeSample,
    compare_pope,
    mcnemar_exact,
    read_pope,
    read_pope_splits,
    score_pope,
    split_counts,
    split_from_filename,
)

# Answers to fixtures/pope/coco_pope_adversarial.json, question ids 1..8.
# labels:            1 yes, 2 no, 3 yes, 4 no, 5 yes, 6 no, 7 yes, 8 no
ANSWERS = {
    1: "Yes, there is a snowboard in the image.",  # pope: yes -> TP
    2: "No, there is not.",                         # no  -> TN
    3: "No.",                                       # no  -> FN
    4: "Yes.",                                      # yes -> FP
    5: "yes",                                       # yes -> TP
    6: "There is not a fork.",                      # no  -> TN
    7: "I think so",                                # yes (no "no"/"not") -> TP
    8: "Not sure",                                  # yes ("Not" is capitalised) -> FP
}


def test_read_official_file(fixtures_dir, pope_images):
    samples = read_pope(fixtures_dir / "pope" / "coco_pope_adversarial.json", pope_images)
    assert len(samples) == 8
    assert samples[0] == PopeSample(
        1, pope_images / "COCO_val2014_000000000001.jpg", "Is there a snowboard in the image?", "yes", "adversarial"
    )
    assert [s.label for s in samples] == ["yes", "no"] * 4
    assert split_counts(samples) == {"adversarial": 8}


def test_read_all_splits_by_name(fixtures_dir, pope_images, tmp_path):
    qdir = tmp_path / "questions"
    qdir.mkdir()
    for split in ("random", "adversarial"):
        (qdir / f"coco_pope_{split}.json").write_text((fixtures_dir / "pope" / f"coco_pope_{split}.json").read_text())
    splits = read_pope_splits(qdir, pope_images, splits=("random", "adversarial"))
    assert {k: len(v) for k, v in splits.items()} == {"random": 2, "adversarial": 8}
    with pytest.raises(DataError, match="coco_pope_popular.json"):
        read_pope_splits(qdir, pope_images)  # popular is missing


def test_llava_merged_file_takes_split_from_category(fixtures_dir, pope_images):
    samples = read_pope(fixtures_dir / "pope" / "llava_pope_test.jsonl", pope_images)
    assert [s.split for s in samples] == ["adversarial", "random", "popular"]


@pytest.mark.parametrize(
    "name,split",
    [("coco_pope_random.json", "random"), ("aokvqa_pope_seem_adversarial.json", "adversarial"),
     ("gqa-pope-popular.jsonl", "popular")],
)
def test_split_from_filename(name, split):
    assert split_from_filename(name) == split


def test_split_from_filename_unknown():
    with pytest.raises(DataError, match="questions.json"):
        split_from_filename("questions.json")


def test_metrics_official_parser(fixtures_dir, pope_images):
    samples = read_pope(fixtures_dir / "pope" / "coco_pope_adversarial.json", pope_images)
    report = score_pope(samples, ANSWERS)
    m = report.overall
    # TP = {1,5,7} = 3, FN = {3} = 1, FP = {4,8} = 2, TN = {2,6} = 2
    assert (m.tp, m.fn, m.fp, m.tn, m.unknown) == (3, 1, 2, 2, 0)
    assert m.accuracy == pytest.approx(5 / 8)             # (3 + 2) / 8
    assert m.precision == pytest.approx(3 / 5)            # 3 / (3 + 2)
    assert m.recall == pytest.approx(3 / 4)              # 3 / (3 + 1)
    assert m.f1 == pytest.approx(2 * 0.6 * 0.75 / 1.35)   # = 0.6667
    assert m.yes_ratio == pytest.approx(5 / 8)            # answers parsed yes: 1,4,5,7,8
    assert m.false_positive_rate == pytest.approx(0.5)    # HR = 2 / (2 + 2)
    assert report.by_split["adversarial"] == m
    d = report.to_dict()
    assert d["overall"]["hr"] == pytest.approx(50.0)
    assert d["overall"]["accuracy"] == pytest.approx(62.5)
    assert report.rule == "pope"


def test_metrics_with_unknowns(fixtures_dir, pope_images):
    samples = read_pope(fixtures_dir / "pope" / "coco_pope_adversarial.json", pope_images)
    report = score_pope(samples, [ANSWERS[i] for i in range(1, 9)], rule="first_word")
    m = report.overall
    # first_word: 1 yes TP, 2 no TN, 3 no FN, 4 yes FP, 5 yes TP,
    #             6 unknown (gt no), 7 unknown (gt yes), 8 unknown (gt no)
    assert (m.tp, m.fn, m.fp, m.tn, m.unknown_pos, m.unknown_neg) == (2, 1, 1, 1, 1, 2)
    assert m.accuracy == pytest.approx(3 / 8)          # unknowns are wrong
    assert m.precision == pytest.approx(2 / 3)         # 2 / (2 + 1)
    assert m.recall == pytest.approx(2 / 4)            # unknown on a "yes" question is a miss
    assert m.f1 == pytest.approx(4 / 7)                # 2 * (2/3) * (1/2) / (2/3 + 1/2)
    assert m.false_positive_rate == pytest.approx(1 / 4)  # FP / all "no" questions = 1 / (1 + 1 + 2)
    assert report.predictions[5:] == ["unknown", "unknown", "unknown"]


def test_answers_keyed_by_split_and_id(fixtures_dir, pope_images):
    samples = read_pope(fixtures_dir / "pope" / "llava_pope_test.jsonl", pope_images)
    report = score_pope(samples, {("adversarial", 1): "Yes", ("random", 2): "Yes", ("popular", 3): "No"})
    assert report.by_split["random"].fp == 1
    assert report.by_split["popular"].fn == 1
    assert report.by_split["adversarial"].tp == 1


def test_missing_answer_is_an_error(fixtures_dir, pope_images):
    samples = read_pope(fixtures_dir / "pope" / "coco_pope_adversarial.json", pope_images)
    with pytest.raises(ValueError, match="sample"):
        score_pope(samples, {1: "Yes"})
    with pytest.raises(ValueError, match="7 POPE answers for 8 samples"):
        score_pope(samples, ["Yes"] * 7)


def test_mcnemar_hand_computed():
    labels = ["yes", "no", "yes", "no", "yes", "no", "yes", "no"]
    a = ["yes", "no", "no", "yes", "yes", "no", "yes", "yes"]  # correct: T T F F T T T F
    b = ["yes", "no", "yes", "no", "no", "no", "yes", "no"]    # correct: T T T T F T T T
    res = mcnemar_exact(labels, a, b)
    assert (res.both_correct, res.a_only_correct, res.b_only_correct, res.both_wrong) == (4, 1, 3, 0)
    # exact two-sided binomial, n = 4 discordant, k = 1: 2 * (C(4,0) + C(4,1)) / 2^4 = 10/16
    assert res.p_value == pytest.approx(0.625)
    assert res.flips == {"no->yes": 1, "yes->no": 3}
    assert (res.changed, res.corrections, res.new_errors) == (4, 3, 1)


def test_mcnemar_one_sided_discordance_and_no_discordance():
    labels = ["no"] * 12
    res = mcnemar_exact(labels, ["yes"] * 10 + ["no"] * 2, ["no"] * 12)
    assert res.b_only_correct == 10 and res.a_only_correct == 0
    assert res.p_value == pytest.approx(2 / 2**10)  # both tails of Binomial(10, 1/2) at 0 and 10
    same = mcnemar_exact(labels, ["no"] * 12, ["no"] * 12)
    assert same.p_value == 1.0 and same.flips == {}


def test_compare_pope_parses_raw_answers(fixtures_dir, pope_images):
    samples = read_pope(fixtures_dir / "pope" / "coco_pope_adversarial.json", pope_images)
    res = compare_pope(samples, ANSWERS, {i: ("No" if s.label == "no" else "Yes") for i, s in enumerate(samples, 1)})
    # A (official parse) is wrong on 3, 4, 8; B is always right
    assert (res.a_only_correct, res.b_only_correct) == (0, 3)


def test_binary_metrics_rejects_unparsed_text():
    with pytest.raises(ValueError, match="parse it first"):
        binary_metrics(["yes"], ["Yes."])


def test_missing_file_names_the_file(tmp_path, pope_images):
    missing = tmp_path / "coco_pope_random.json"
    with pytest.raises(DataError, match="coco_pope_random.json"):
        read_pope(missing, pope_images)


def test_corrupt_line_names_file_and_line(fixtures_dir, pope_images):
    with pytest.raises(DataError, match=r"coco_pope_popular_corrupt.json line 2"):
        read_pope(fixtures_dir / "pope" / "coco_pope_popular_corrupt.json", pope_images)


def test_missing_image_names_the_image(fixtures_dir, tmp_path):
    (tmp_path / "val2014").mkdir()
    with pytest.raises(DataError, match="COCO_val2014_000000000001.jpg"):
        read_pope(fixtures_dir / "pope" / "coco_pope_random.json", tmp_path / "val2014")
    # ... and check_images=False lets a runner read questions before the images are there
    unchecked = read_pope(fixtures_dir / "pope" / "coco_pope_random.json", tmp_path / "val2014", check_images=False)
    assert len(unchecked) == 2


def test_bad_label_and_missing_field(tmp_path, pope_images):
    bad = tmp_path / "coco_pope_random.json"
    bad.write_text('{"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "Q?", "label": "maybe"}\n')
    with pytest.raises(DataError, match="coco_pope_random.json record 1"):
        read_pope(bad, pope_images)
    bad.write_text('{"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "label": "yes"}\n')
    with pytest.raises(DataError, match="has no field 'text'"):
        read_pope(bad, pope_images)
    bad.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_pope(bad, pope_images)


def test_all_no_answers_leave_precision_undefined(fixtures_dir, pope_images):
    # POPE's evaluate.py raises ZeroDivisionError here (TP + FP = 0); 0 would read as a real precision
    samples = read_pope(fixtures_dir / "pope" / "coco_pope_adversarial.json", pope_images)
    report = score_pope(samples, ["No"] * len(samples))
    m = report.overall
    assert (m.tp, m.fp, m.tn, m.fn) == (0, 0, 4, 4)
    assert m.precision is None and m.f1 is None
    assert m.recall == 0.0 and m.accuracy == 0.5 and m.false_positive_rate == 0.0
    d = report.to_dict()["overall"]
    assert d["precision"] is None and d["f1"] is None and d["hr"] == 0.0 and d["yes_ratio"] == 0.0
    assert d["note"] == "precision and f1 undefined: no answer parsed as 'yes' (0/0)"
    assert "note" not in score_pope(samples, ["Yes", "No"] * 4).to_dict()["overall"]
