"""MME: both official folder layouts, the VLMEvalKit TSV, hand-computed acc / acc+ / totals."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from scr_core.errors import DataError
from scr_core.eval.mme import MME_COGNITION, MME_PERCEPTION, read_mme, read_mme_tsv, score_mme

QA = {
    # subtask: {image name: ["question\tYes", "question\tNo"]}
    "existence": {
        "0001": ["Is there a dog in this image? Please answer yes or no.\tYes",
                 "Is there a cat in this image? Please answer yes or no.\tNo"],
        "0002": ["Is there a car in this image? Please answer yes or no.\tYes",
                 "Is there a bus in this image? Please answer yes or no.\tNo"],
    },
    "artwork": {
        "10002": ["Does this artwork exist in the form of painting? Please answer yes or no.\tYes",
                  "Does this artwork exist in the form of glassware? Please answer yes or no.\tNo"],
        "10003": ["Is this artwork created by Monet? Please answer yes or no.\tYes",
                  "Is this artwork created by Dali? Please answer yes or no.\tNo"],
    },
    "code_reasoning": {
        "0001": ["Is the output of the code 3? Please answer yes or no.\tYes",
                 "Is the output of the code 4? Please answer yes or no.\tNo"],
    },
}


@pytest.fixture
def mme_root(tmp_path, make_image):
    root = tmp_path / "MME_Benchmark_release_version" / "MME_Benchmark"
    for task, images in QA.items():
        split_layout = task == "artwork"  # artwork uses images/ + questions_answers_YN/, the others are flat
        for name, lines in images.items():
            qa_dir = root / task / ("questions_answers_YN" if split_layout else "")
            img_dir = root / task / ("images" if split_layout else "")
            qa_dir.mkdir(parents=True, exist_ok=True)
            (qa_dir / f"{name}.txt").write_text("\n".join(lines) + "\n")
            suffix = ".png" if task == "code_reasoning" else ".jpg"
            make_image(img_dir / f"{name}{suffix}")
    return root.parent


ANSWERS = {
    "existence/0001/0": "Yes",             # gt yes: right
    "existence/0001/1": "No",              # gt no:  right    -> image 0001 both right
    "existence/0002/0": "yes, there is",   # gt yes: right ("yes" in the first 4 characters)
    "existence/0002/1": "Yes",             # gt no:  wrong    -> image 0002 not both right
    "artwork/10002/0": "Yes.",             # right
    "artwork/10002/1": "No",               # right
    "artwork/10003/0": "Y",                # wrong: "other" in calculation.py (right with mme_lenient)
    "artwork/10003/1": "Not really",       # right ("no" in "not ")
    "code_reasoning/0001/0": "The answer is yes",  # unknown ("other") -> wrong
    "code_reasoning/0001/1": "no",                 # right
}


def test_read_both_layouts(mme_root):
    samples = read_mme(mme_root)  # the release folder; its MME_Benchmark/ sub-folder is found
    assert [s.question_id for s in samples][:3] == ["existence/0001/0", "existence/0001/1", "existence/0002/0"]
    assert {s.subtask for s in samples} == {"existence", "artwork", "code_reasoning"}
    art = [s for s in samples if s.subtask == "artwork"]
    assert art[0].image_path.parent.name == "images" and art[0].image_path.name == "10002.jpg"
    assert art[0].question.startswith("Does this artwork exist in the form of painting?")
    assert [s.label for s in art] == ["yes", "no", "yes", "no"]
    code = [s for s in samples if s.subtask == "code_reasoning"]
    assert code[0].image_path.name == "0001.png"


def test_scores_hand_computed(mme_root):
    res = score_mme(read_mme(mme_root), ANSWERS)
    assert res.rule == "mme"  # calculation.py's parser by default
    ex, art, code = res.by_subtask["existence"], res.by_subtask["artwork"], res.by_subtask["code_reasoning"]
    assert (ex.acc, ex.acc_plus, ex.score) == (pytest.approx(3 / 4), pytest.approx(1 / 2), pytest.approx(125.0))
    assert (art.acc, art.acc_plus, art.score) == (pytest.approx(3 / 4), pytest.approx(1 / 2), pytest.approx(125.0))
    assert (code.acc, code.acc_plus, code.score) == (0.5, 0.0, pytest.approx(50.0))
    assert (ex.n_questions, ex.n_images) == (4, 2)
    assert res.perception == pytest.approx(125.0 + 125.0)  # existence + artwork
    assert res.cognition == pytest.approx(50.0)            # code_reasoning
    assert len(res.missing_subtasks) == len(MME_PERCEPTION) + len(MME_COGNITION) - 3
    assert res.to_dict()["perception"] == pytest.approx(250.0)
    assert res.predictions[6] == "unknown" and res.predictions[8] == "unknown"


def test_lenient_parser_differs_only_on_the_single_letter(mme_root):
    res = score_mme(read_mme(mme_root), ANSWERS, rule="mme_lenient")
    assert res.by_subtask["artwork"].score == pytest.approx(200.0)  # "Y" is yes there
    assert res.perception == pytest.approx(325.0) and res.cognition == pytest.approx(50.0)


def test_answers_as_list_and_subset(mme_root):
    samples = read_mme(mme_root, subtasks=["code_reasoning"])
    res = score_mme(samples, ["Yes", "No"])
    assert res.by_subtask["code_reasoning"].score == pytest.approx(200.0)
    assert res.perception == 0.0


def _b64_png(color) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (2, 2), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_vlmevalkit_tsv(tmp_path):
    img0, img2 = _b64_png((255, 0, 0)), _b64_png((0, 255, 0))
    rows = [
        "index\timage\tquestion\tanswer\tcategory\timage_path",
        f"0\t{img0}\tIs there a dog? Please answer yes or no.\tYes\texistence\texistence/0001.jpg",
        "1\t0\tIs there a cat? Please answer yes or no.\tNo\texistence\texistence/0001.jpg",
        f"2\t{img2}\tIs the code output 3? Please answer yes or no.\tYes\tcode_reasoning\tcode_reasoning/0001.png",
        "3\t2\tIs the code output 4? Please answer yes or no.\tNo\tcode_reasoning\tcode_reasoning/0001.png",
    ]
    tsv = tmp_path / "MME.tsv"
    tsv.write_text("\n".join(rows) + "\n")
    samples = read_mme_tsv(tsv, tmp_path / "mme_images")
    assert len(samples) == 4
    assert samples[0].image_path == samples[1].image_path  # row 1 refers to row 0's image
    assert samples[0].image_path.suffix == ".png" and Image.open(samples[0].image_path).size == (2, 2)
    res = score_mme(samples, ["Yes", "Yes", "Yes", "No"])
    assert res.by_subtask["existence"].score == pytest.approx(50.0)  # acc 1/2, acc+ 0
    assert res.by_subtask["code_reasoning"].score == pytest.approx(200.0)


def test_tsv_errors(tmp_path):
    tsv = tmp_path / "MME.tsv"
    tsv.write_text("index\timage\tquestion\tanswer\n0\tabc\tQ\tYes\n")
    with pytest.raises(DataError, match=r"MME.tsv lacks columns \['category'\]"):
        read_mme_tsv(tsv, tmp_path / "img")
    tsv.write_text("index\timage\tquestion\tanswer\tcategory\n0\t7\tQ\tYes\texistence\n")
    with pytest.raises(DataError, match="MME.tsv row 2"):
        read_mme_tsv(tsv, tmp_path / "img")


def test_bad_question_file_names_it(mme_root):
    bad = mme_root / "MME_Benchmark" / "existence" / "0002.txt"
    bad.write_text("Is there a car in this image? Yes\n")
    with pytest.raises(DataError, match=r"0002.txt line 1"):
        read_mme(mme_root)
    bad.write_text("Is there a car?\tMaybe\n")
    with pytest.raises(DataError, match=r"0002.txt line 1"):
        read_mme(mme_root)


def test_missing_image_and_folders(mme_root, tmp_path):
    (mme_root / "MME_Benchmark" / "existence" / "0002.jpg").unlink()
    with pytest.raises(DataError, match="0002.txt"):
        read_mme(mme_root)
    assert len(read_mme(mme_root, check_images=False)) == 10
    with pytest.raises(DataError, match="no MME subtask folders"):
        read_mme(tmp_path / "MME_Benchmark_release_version" / "MME_Benchmark" / "existence")
    with pytest.raises(DataError, match="color"):
        read_mme(mme_root, subtasks=["color"])
