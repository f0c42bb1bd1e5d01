"""Caption Folder's suffix and output folder, the empty-caption reports of Save Captions and Caption Folder,
the bundled model's preset note and the model list's download marks, on the real ComfyUI server."""

from __future__ import annotations

from scr_core.defaults import TESTBED_PRESET_NOTE

from .test_server import failure, twin


def _scenes(folder, count=3, seed=11):
    from scr_core.testbed.scenes import generate_scene

    for index in range(count):
        target = folder / ("sub" if index == 2 else "") / f"img{index}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        generate_scene(index, seed).image.save(target)


def test_caption_folder_writes_a_suffix_and_mirrors_into_an_output_folder(comfy):
    folder = comfy.allowed / "mirror-source"
    _scenes(folder)
    prompt = twin("scr_folder_captions")
    prompt["3"]["inputs"].update(folder=str(folder), recursive=True, prefix="ohwx", suffix=" best quality, ",
                                 write_to="output folder", output_folder="lora/set1", max_new_tokens=12)
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert "3 caption(s) written, 0 skipped" in entry["outputs"]["3"]["text"][0]
    out = comfy.base / "output" / "lora" / "set1"
    captions = {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*.txt")}
    assert sorted(captions) == ["img0.txt", "img1.txt", "sub/img2.txt"]  # the source's names, mirrored
    assert all(c.startswith("ohwx, ") and c.endswith(", best quality\n") and "., " not in c
               and len(c) > len("ohwx, a cup, best quality\n") - 4 for c in captions.values()), captions
    assert not list(folder.rglob("*.txt"))  # nothing beside the images

    again = comfy.run(prompt)  # a rerun resumes against the output folder
    assert "0 caption(s) written, 3 skipped" in again["outputs"]["3"]["text"][0], failure(again)

    absolute = comfy.allowed / "captions-here"  # an absolute folder inside SCR_ALLOWED_FOLDERS
    prompt["3"]["inputs"].update(output_folder=str(absolute), suffix="")
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert sorted(p.relative_to(absolute).as_posix() for p in absolute.rglob("*.txt")) == \
        ["img0.txt", "img1.txt", "sub/img2.txt"]
    assert all(not p.read_text().rstrip().endswith("best quality") for p in absolute.rglob("*.txt"))

    for output_folder, fragment in (("/etc/scr", "outside the folders this server allows"),
                                    ("../../escape", "may not contain '..'")):
        bad = twin("scr_folder_captions")
        bad["3"]["inputs"].update(folder=str(folder), write_to="output folder", output_folder=output_folder)
        refused = comfy.run(bad)
        assert refused["status"]["status_str"] == "error" and fragment in failure(refused)["exception_message"]


def test_caption_folder_reports_degenerate_captions_and_the_testbed_note(comfy):
    folder = comfy.allowed / "degenerate-source"
    _scenes(folder, count=2)
    prompt = twin("scr_folder_captions")
    prompt["3"]["inputs"].update(folder=str(folder), preset="training", max_new_tokens=8)
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    report = entry["outputs"]["3"]["text"][0]
    from scr_core.caption_quality import degenerate_reason

    bad = sorted(p for p in folder.glob("*.txt") if degenerate_reason(p.read_text()))
    assert bad  # the testbed answers the training preset with nothing or a word loop
    assert f"warning: {len(bad)} of 2 caption(s) are empty or degenerate" in report
    assert all(str(p) in report for p in bad)
    assert report.splitlines()[-1] == f"note: {TESTBED_PRESET_NOTE}"


def test_save_captions_lists_empty_captions_it_wrote(comfy):
    prompt = {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": " . "}},
        "2": {"class_type": "PrimitiveString", "inputs": {"value": "/anywhere/dot.png"}},
        "3": {"class_type": "SCRSaveCaptions", "inputs": {"captions": ["1", 0], "paths": ["2", 0],
                                                          "mode": "output folder", "subfolder": "dots",
                                                          "overwrite": True}},
    }
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    target = comfy.base / "output" / "dots" / "dot.txt"
    assert target.read_text() == " . \n"  # written as given, and reported
    assert entry["outputs"]["3"]["text"] == [str(target), f"warning: 1 of 1 caption(s) are empty or degenerate "
                                             f"(check the model and the preset): {target} (no letters)"]
    prompt["1"]["inputs"]["value"] = "a cup."
    entry = comfy.run(prompt)
    assert entry["outputs"]["3"]["text"] == [str(target)]


def test_the_caption_compare_text_carries_the_testbed_note(comfy):
    prompt = twin("scr_compare_heatmap")
    node = next(k for k, v in prompt.items() if v["class_type"] == "SCRCaptionCompare")
    prompt[node]["inputs"].update(preset="tags", max_new_tokens=6)
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert entry["outputs"][node]["text"][0].endswith(f"note: {TESTBED_PRESET_NOTE}")
    prompt[node]["inputs"].update(preset="descriptive")
    entry = comfy.run(prompt)
    assert "note:" not in entry["outputs"][node]["text"][0]


def test_the_model_list_says_which_known_models_are_present(comfy):
    from scr_core.known_models import KNOWN_MODELS

    spec = comfy.get("/object_info/SCRLoadVLM")["SCRLoadVLM"]["input"]["required"]["model"]
    options, tooltip = spec[1]["options"], spec[1]["tooltip"]
    for model in KNOWN_MODELS:
        present = model.hub_id in options
        assert f"{model.hub_id} ({'present' if present else 'not downloaded'})" in tooltip
    assert "SCR_ALLOW_DOWNLOADS=1" in tooltip and "restart" in tooltip


def test_a_refused_download_says_to_restart_with_downloads_allowed(tmp_path, monkeypatch):
    """No server needed: the refusal is the pack's own rule (``nodes.model_folders._download``), with the
    LLM folder pointed at an empty one and the owner's switch off."""
    import pytest

    import nodes.model_folders as model_folders
    from scr_core import ModelLoadError

    monkeypatch.setattr(model_folders, "llm_folders", lambda: [str(tmp_path)])
    monkeypatch.delenv("SCR_ALLOW_DOWNLOADS", raising=False)
    with pytest.raises(ModelLoadError) as err:
        model_folders.model_path("", "owner/model", True)
    message = str(err.value)
    assert "restart ComfyUI with SCR_ALLOW_DOWNLOADS=1" in message and "\n" not in message
    assert "models/LLM/owner--model" in message and not (tmp_path / "owner--model").exists()
