"""A posted workflow is untrusted: in a real server it reads and writes only inside the allowed folders,
downloads only into a new folder of its own and stops on /interrupt, and every combo value is checked.
The session server allows one dataset folder (``comfy.allowed``) and downloads from a fake hub."""

from __future__ import annotations

import json
import shutil
import time

from PIL import Image

from .test_server import failure, twin

HOW_TO_ALLOW = "start ComfyUI with SCR_ALLOWED_FOLDERS=/path/to/data"


def folder_to_captions(folder: str, mode: str = "beside images", overwrite: bool = False) -> dict:
    return {
        "1": {"class_type": "SCRLoadImageFolder", "inputs": {"folder": folder, "filter": "", "recursive": False,
                                                             "limit": 0}},
        "2": {"class_type": "PrimitiveString", "inputs": {"value": "a caption"}},
        "3": {"class_type": "SCRSaveCaptions", "inputs": {"captions": ["2", 0], "paths": ["1", 1], "mode": mode,
                                                          "subfolder": "hostile", "overwrite": overwrite}},
    }


def saving(path: str, mode: str = "beside images", subfolder: str = "captions") -> dict:
    return {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "a caption"}},
        "2": {"class_type": "PrimitiveString", "inputs": {"value": path}},
        "3": {"class_type": "SCRSaveCaptions", "inputs": {"captions": ["1", 0], "paths": ["2", 0], "mode": mode,
                                                          "subfolder": subfolder, "overwrite": True}},
    }


def loading(path: str, download: bool = False) -> dict:
    prompt = twin("scr_caption")
    prompt["2"]["inputs"].update(path=path, download_from_hub=download)
    return prompt


def error_of(entry: dict) -> str:
    assert entry["status"]["status_str"] == "error"
    message = failure(entry)["exception_message"]
    assert "\n" not in message.strip(), message  # one line
    return message


def test_folders_outside_the_allowed_ones_are_refused_with_how_to_allow_them(comfy, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    for folder in (str(tmp_path), "/etc", "/"):
        message = error_of(comfy.run(folder_to_captions(folder)))
        assert "outside the folders this server allows" in message and HOW_TO_ALLOW in message
    assert not (tmp_path / "outside.txt").exists()
    dataset = comfy.allowed / "hostile-ok"
    dataset.mkdir()
    Image.new("RGB", (8, 8)).save(dataset / "one.png")
    entry = comfy.run(folder_to_captions(str(dataset)))
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert (dataset / "one.txt").read_text() == "a caption\n"


def test_captions_beside_an_image_outside_the_allowed_folders_are_refused_even_with_overwrite(comfy, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "keep.png")
    (tmp_path / "keep.txt").write_text("mine\n")
    message = error_of(comfy.run(saving(str(tmp_path / "keep.png"))))
    assert "outside the folders this server allows" in message
    assert (tmp_path / "keep.txt").read_text() == "mine\n"


def test_save_captions_runs_again_after_its_files_were_deleted(comfy):
    prompt = saving("/anywhere/again.png", "output folder", "rerun")
    target = comfy.base / "output" / "rerun" / "again.txt"
    assert comfy.run(prompt)["status"]["status_str"] == "success"
    target.unlink()
    entry = comfy.run(prompt)  # the same prompt: nothing upstream changed
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert target.read_text() == "a caption\n"


def test_bogus_combo_values_are_refused_with_the_allowed_ones(comfy):
    cases = [
        (lambda p: p["2"]["inputs"].update(dtype="fp64"), "2", "dtype: 'fp64' not in ['auto', 'fp16', 'bf16', 'fp32']"),
        (lambda p: p["2"]["inputs"].update(model="../../../../somewhere"), "2", "model '../../../../somewhere'"),
        (lambda p: p["3"]["inputs"].update(selection="bogus"), "3", "selection: 'bogus' not in ['attention'"),
    ]
    for change, node, fragment in cases:
        prompt = twin("scr_caption")
        change(prompt)
        status, body = comfy.queue(prompt)
        assert status == 400 and fragment in json.dumps(body["node_errors"][node]), body
    prompt = saving("x.png", "output folder")
    prompt["3"]["inputs"]["mode"] = "bogus"
    status, body = comfy.queue(prompt)
    assert status == 400 and "mode: 'bogus' not in ['beside images', 'output folder']" in json.dumps(body)


def test_a_bad_value_is_reported_once_under_the_input_that_holds_it(comfy):
    """ComfyUI shows a failed ``validate_inputs`` under every input the function names: each bad value is
    one error, on its own input; a check that reads two inputs (the custom preset's empty instruction, a
    layer range of the Settings node) is shown under those two."""
    cases = [
        ("2", {"dtype": "fp64"}, ["dtype"]),
        ("2", {"model": "../../../../somewhere"}, ["model"]),
        ("3", {"k": 0}, ["k"]),
        ("3", {"lam": 99.0}, ["lam"]),
        ("3", {"diag_layers": "8-x"}, ["diag_layers", "hook_layers"]),
        ("4", {"instruction": "  "}, ["instruction"]),
        ("5", {"batch_size": 0}, ["batch_size"]),
        ("5", {"length": "epic"}, ["length"]),
        ("5", {"max_new_tokens": 10**6}, ["max_new_tokens"]),
        ("5", {"preset": "custom", "instruction": ""}, ["instruction", "preset"]),
    ]
    for node, change, names in cases:
        prompt = twin("scr_caption")
        prompt[node]["inputs"].update(change)
        status, body = comfy.queue(prompt)
        assert status == 400 or body.get("node_errors"), (change, body)  # 200 when another output still runs
        errors = body["node_errors"][node]["errors"]
        assert sorted(e["extra_info"]["input_name"] for e in errors) == names, (change, errors)
        assert len({e["details"].split(" - ", 1)[-1] for e in errors}) == 1, errors  # one message
        assert set(body["node_errors"]) == {node}, body


def test_a_model_folder_planted_under_input_is_refused(comfy):
    planted = comfy.base / "input" / "planted"
    shutil.copytree(comfy.base / "models" / "LLM" / "tiny-random-llava", planted, dirs_exist_ok=True)
    message = error_of(comfy.run(loading(str(planted))))
    assert "outside the model folders this server allows" in message
    message = error_of(comfy.run(loading("../../input/planted")))  # relative to models/LLM
    assert "outside the model folders this server allows" in message


def test_a_download_goes_into_its_own_new_folder_and_then_loads_offline(comfy, fake_hub):
    source = comfy.base / "models" / "LLM" / "tiny-random-llava"
    fake_hub.repos["evil/tiny"] = {p.relative_to(source).as_posix(): p.read_bytes()
                                   for p in source.rglob("*") if p.is_file()}
    existing = comfy.base / "models" / "LLM" / "tiny"
    existing.mkdir(exist_ok=True)
    (existing / "mine.txt").write_text("untouched\n")
    entry = comfy.run(loading("evil/tiny", download=True))
    assert entry["status"]["status_str"] == "success", failure(entry)
    target = comfy.base / "models" / "LLM" / "evil--tiny"
    assert (target / "config.json").is_file() and not (target / ".cache").exists()
    assert sorted(p.name for p in existing.iterdir()) == ["mine.txt"]
    assert not list(target.parent.glob(".evil--tiny.download-*"))
    fake_hub.requests.clear()
    again = loading("evil/tiny", download=True)
    again["5"]["inputs"]["max_new_tokens"] = 5  # a new run of the loader, now from the folder
    again["2"]["inputs"]["keep_loaded"] = False
    assert comfy.run(again)["status"]["status_str"] == "success"
    assert not fake_hub.requests  # no network for a complete folder
    (comfy.base / "models" / "LLM" / "evil--half").mkdir()
    message = error_of(comfy.run(loading("evil/half", download=True)))
    assert "exists but holds no complete checkpoint" in message


def test_a_folder_over_the_pixel_budget_is_refused_before_anything_is_decoded(comfy):
    folder = comfy.allowed / "huge"  # five 64-megapixel images: 320 MP, over the default budget of 256 MP
    folder.mkdir()
    for index in range(5):
        Image.new("L", (8000, 8000), 40 * index).save(folder / f"huge{index}.png")
    before = comfy.rss()
    message = error_of(comfy.run(folder_to_captions(str(folder))))
    assert "more than 256,000,000 pixels in total (SCR_MAX_FOLDER_PIXELS)" in message
    assert "Caption Folder (SCR)" in message
    assert comfy.rss() - before < 300 * 2**20  # headers only: five decoded images would be ~960 MB


def test_a_hub_that_never_answers_is_given_up_after_the_stall_limit(comfy, fake_hub):
    """No interrupt: the server's SCR_DOWNLOAD_STALL_SECONDS (20 here) ends it with one line."""
    started = time.time()
    message = error_of(comfy.run(loading("silent/stalled", download=True), timeout=120))
    assert "the hub sent nothing for 20 s (SCR_DOWNLOAD_STALL_SECONDS)" in message
    assert 15 < time.time() - started < 60
    assert not list((comfy.base / "models" / "LLM").glob(".silent--stalled.download-*"))
    assert comfy.run(twin("scr_caption"), timeout=120)["status"]["status_str"] == "success"  # the queue moved on


def test_a_silent_hub_download_stops_on_interrupt_and_the_queue_moves_on(comfy, fake_hub):
    status, body = comfy.queue(loading("silent/tiny", download=True))
    assert status == 200, body
    deadline = time.time() + 60
    while time.time() < deadline and not any("silent" in r for r in fake_hub.requests):
        time.sleep(0.1)
    assert any("silent" in r for r in fake_hub.requests)
    asked = time.time()
    assert comfy.request("POST", "/interrupt", {})[0] == 200
    entry = comfy.wait(body["prompt_id"], timeout=30)
    assert time.time() - asked < 5
    assert failure(entry)["event"] == "execution_interrupted"
    assert not list((comfy.base / "models" / "LLM").glob(".silent--tiny.download-*"))
    assert comfy.run(twin("scr_caption"), timeout=120)["status"]["status_str"] == "success"


def test_a_known_model_downloads_on_request_and_its_saved_choice_then_loads_offline(comfy, fake_hub):
    from scr_core.known_models import KNOWN_MODELS

    options = comfy.get("/object_info/SCRLoadVLM")["SCRLoadVLM"]["input"]["required"]["model"][1]["options"]
    assert [o for o in options if o.endswith(" (not downloaded)")] == [f"{m.hub_id} (not downloaded)"
                                                                       for m in KNOWN_MODELS]
    hub_id = "HuggingFaceTB/SmolVLM-Instruct"  # served by the fake hub: the tiny LLaVA under that name
    source = comfy.base / "models" / "LLM" / "tiny-random-llava"
    fake_hub.repos[hub_id] = {p.relative_to(source).as_posix(): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    prompt = twin("scr_caption")
    prompt["2"]["inputs"]["model"] = f"{hub_id} (not downloaded)"
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert (comfy.base / "models" / "LLM" / "HuggingFaceTB--SmolVLM-Instruct" / "config.json").is_file()
    options = comfy.get("/object_info/SCRLoadVLM")["SCRLoadVLM"]["input"]["required"]["model"][1]["options"]
    assert hub_id in options and f"{hub_id} (not downloaded)" not in options
    fake_hub.requests.clear()
    prompt["2"]["inputs"]["keep_loaded"] = False  # the workflow as saved before the download: runs again
    assert comfy.run(prompt)["status"]["status_str"] == "success"
    assert not fake_hub.requests  # from the folder, no network
