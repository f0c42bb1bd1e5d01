"""The pack in a real ComfyUI server (unmodified v0.3.64 source, ``main.py --cpu``), driven over HTTP and
the websocket as the frontend and API users drive it."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from tests.extras import need_extra

from .make_ui_workflows import canvas_note
from .server import PACK_NAME, SHIPPED, PeakRSS, shipped

TWINS = Path(__file__).parent / "workflows"
NODE_IDS = ["SCRLoadVLM", "SCRLoadOnnxVLM", "SCRSettings", "SCRDiagnose", "SCRCaption", "SCRCaptionCompare", "SCRLoadImageFolder",
            "SCRSaveCaptions", "SCRCaptionFolder"]


def twin(name: str) -> dict:
    return json.loads((TWINS / f"{name}.api.json").read_text())


def failure(entry: dict) -> dict:
    for event, data in entry["status"]["messages"]:
        if event in ("execution_error", "execution_interrupted"):
            return {"event": event, **data}
    return {}


# -- the UI files and their API twins ----------------------------------------------------------
@pytest.mark.parametrize("name", list(SHIPPED))
def test_each_api_twin_matches_its_ui_workflow(name):
    ui = json.loads(shipped(name).read_text())
    notes = [n for n in ui["nodes"] if n["type"] == "Note"]  # on the canvas only: the API format has no notes
    assert len(notes) == 1 and notes[0]["widgets_values"] == [canvas_note(name)]
    ui["nodes"] = [n for n in ui["nodes"] if n["type"] != "Note"]
    api = twin(name)
    assert {str(n["id"]): n["type"] for n in ui["nodes"]} == {k: v["class_type"] for k, v in api.items()}
    ui_links = set()
    for link_id, origin, origin_slot, target, target_slot, kind in ui["links"]:
        node = next(n for n in ui["nodes"] if n["id"] == target)
        ui_links.add((str(target), node["inputs"][target_slot]["name"], str(origin), origin_slot))
    api_links = {(k, name_, v[0], v[1]) for k, node in api.items() for name_, v in node["inputs"].items()
                 if isinstance(v, list)}
    assert ui_links == api_links
    for node in ui["nodes"]:  # widget values in the order the UI shows them, minus seed controls
        values = [v for v in node.get("widgets_values") or [] if v not in ("fixed", "randomize", "image")]
        api_values = [v for v in api[str(node["id"])]["inputs"].values() if not isinstance(v, list)]
        assert sorted(map(str, values)) == sorted(map(str, api_values)), node["type"]


# -- loading ---------------------------------------------------------------------------------------
def test_pack_loads_and_lists_every_node(comfy):
    log = comfy.log_text()
    assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and PACK_NAME in line], log[-3000:]
    info = comfy.get("/object_info")
    assert all(node in info for node in NODE_IDS)
    assert {info[n]["category"] for n in NODE_IDS} == {"SCR (Spatial Credit Redistribution)"}
    models = info["SCRLoadVLM"]["input"]["required"]["model"][1]["options"]
    assert models[0].startswith("testbed") and "tiny-random-llava" in models
    for node in NODE_IDS:  # ids ComfyUI reserves for hidden inputs are never ours
        inputs = {**info[node]["input"].get("required", {}), **info[node]["input"].get("optional", {})}
        assert not {"prompt", "extra_pnginfo", "unique_id", "dynprompt"} & set(inputs)


def test_workflow_templates_find_the_shipped_workflows_with_their_thumbnails(comfy):
    templates = comfy.get("/workflow_templates")
    assert sorted(templates[PACK_NAME]) == sorted(SHIPPED.values())
    for name in SHIPPED.values():  # where the template browser fetches each card's picture
        with urllib.request.urlopen(f"{comfy.url}/api/workflow_templates/{PACK_NAME}/{name}.jpg", timeout=10) as r:
            assert r.status == 200 and Image.open(io.BytesIO(r.read())).format == "JPEG"


# -- the shipped workflows, end to end --------------------------------------------------------------
def test_caption_workflow_gives_a_caption_and_a_heatmap(comfy):
    entry = comfy.run(twin("scr_caption"))
    assert entry["status"]["status_str"] == "success", failure(entry)
    captions = entry["outputs"]["5"]["text"]
    assert len(captions) == 1 and captions[0].strip()
    report = entry["outputs"]["4"]["text"][0]
    assert "entropy" in report and "8 sources" in report
    heatmap = entry["outputs"]["6"]["images"][0]
    assert heatmap["filename"].endswith(".png") and heatmap["type"] == "temp"


def test_newer_families_are_listed_with_their_options_and_caption(comfy):
    info = comfy.get("/object_info")["SCRLoadVLM"]["input"]
    assert {"tiny-gemma3", "tiny-remote-code"} <= set(info["required"]["model"][1]["options"])
    assert {"pan_and_scan", "no_image_splitting"} <= set(info["optional"])
    prompt = twin("scr_caption")
    prompt["2"]["inputs"].update(model="tiny-gemma3")
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert entry["outputs"]["5"]["text"][0].strip() and "sources" in entry["outputs"]["4"]["text"][0]


def test_a_checkpoint_with_its_own_code_is_refused_with_what_that_means(comfy):
    """Running a checkpoint's own Python is the user's explicit choice, made in Python or on the command
    line (with the generic adapter such models need); a workflow never turns it on."""
    prompt = twin("scr_caption")
    prompt["2"]["inputs"].update(model="tiny-remote-code")
    refused = comfy.run(prompt)
    assert refused["status"]["status_str"] == "error"
    message = failure(refused)["exception_message"]
    assert "ships its own modeling code" in message and "--trust-remote-code" in message
    assert comfy.run(twin("scr_caption"))["status"]["status_str"] == "success"


def test_compare_workflow_gives_both_captions_and_the_heatmap(comfy):
    entry = comfy.run(twin("scr_compare_heatmap"))
    assert entry["status"]["status_str"] == "success", failure(entry)
    side = entry["outputs"]["4"]["text"][0]
    assert "vanilla:" in side and "SCR:" in side
    assert entry["outputs"]["5"]["images"]


def test_folder_workflow_captions_the_shipped_scenes_and_a_rerun_resumes(comfy):
    """The folder workflow as a fresh install runs it: input/scr_testbed, which the pack wrote at start-up."""
    folder = comfy.base / "input" / "scr_testbed"
    scenes = sorted(folder.glob("*.png"))
    assert len(scenes) == 6 and (comfy.base / "input" / "scr_testbed_scene.png").is_file()
    prompt = twin("scr_folder_captions")
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert "6 caption(s) written, 0 skipped" in entry["outputs"]["3"]["text"][0]
    written = {p.stem: p.read_text() for p in folder.glob("*.txt")}
    assert sorted(written) == [p.stem for p in scenes] and all(t.strip() for t in written.values())
    assert len(set(written.values())) >= 3  # different scenes, different captions
    (folder / f"{scenes[0].stem}.txt").unlink()  # as after a crash: one caption missing
    again = comfy.run(prompt)
    assert "1 caption(s) written, 5 skipped" in again["outputs"]["3"]["text"][0], failure(again)
    assert {p.stem: p.read_text() for p in folder.glob("*.txt")} == written  # resumed, same greedy caption


def test_caption_folder_prefix_failed_image_and_overwrite_rules(comfy):
    folder = comfy.allowed / "dataset"  # inside SCR_ALLOWED_FOLDERS, given as an absolute path
    folder.mkdir()
    from scr_core.testbed.scenes import generate_scene

    for index in range(3):
        generate_scene(index, 11).image.resize((64 + 16 * index, 96 - 16 * index)).save(folder / f"img{index}.png")
    (folder / "broken.png").write_bytes(b"not a picture")
    prompt = twin("scr_folder_captions")
    prompt["3"]["inputs"].update(folder=str(folder), prefix="ohwx", batch_size=2, max_new_tokens=12)
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    report = entry["outputs"]["3"]["text"][0]
    assert "3 caption(s) written, 0 skipped (caption file exists), 1 failed" in report and "broken.png" in report
    captions = {p.name: p.read_text() for p in folder.glob("*.txt")}
    assert sorted(captions) == ["img0.txt", "img1.txt", "img2.txt"]
    assert all(c.startswith("ohwx, ") and len(c) > len("ohwx, \n") for c in captions.values())

    prompt["3"]["inputs"].update(skip_existing=False)
    refused = comfy.run(prompt)
    assert refused["status"]["status_str"] == "error"
    assert "turn on skip_existing to resume or overwrite" in failure(refused)["exception_message"]
    assert {p.name: p.read_text() for p in folder.glob("*.txt")} == captions  # never overwritten unless asked
    prompt["3"]["inputs"].update(overwrite=True, prefix="")
    replaced = comfy.run(prompt)
    assert "3 caption(s) written" in replaced["outputs"]["3"]["text"][0], failure(replaced)
    assert all(not p.read_text().startswith("ohwx") for p in folder.glob("*.txt"))

    for change, fragment in (({"folder": "/etc"}, "outside the folders this server allows"),
                             ({"folder": "../../"}, "outside the folders this server allows"),
                             ({"folder": "scr_testbed", "filter": "*.nothing"}, "no images in")):
        bad = twin("scr_folder_captions")
        bad["3"]["inputs"].update(change)
        entry = comfy.run(bad)
        assert entry["status"]["status_str"] == "error" and fragment in failure(entry)["exception_message"]


def test_caption_folder_memory_stays_bounded_on_a_folder_of_large_images(comfy):
    """40 images of 1024x1024 as float tensors would be 480 MB; read a batch at a time they cost a few MB."""
    folder = comfy.allowed / "large"
    folder.mkdir()
    for index in range(40):
        Image.new("RGB", (1024, 1024), (6 * index, 90, 200)).save(folder / f"big{index:02d}.png")
    entry, grown = caption_folder_growth(comfy, folder, "big00", max_new_tokens=4)
    assert "40 caption(s) written" in entry["outputs"]["3"]["text"][0]
    assert grown < 150 * 2**20, grown


def caption_folder_growth(comfy, folder, first: str, **inputs) -> tuple[dict, int]:
    """(history entry, peak RSS growth) of the folder workflow on ``folder``, measured after a run on
    its image ``first`` alone loaded the model."""
    prompt = twin("scr_folder_captions")
    prompt["3"]["inputs"].update(folder=str(folder), **inputs)
    warm = copy.deepcopy(prompt)
    warm["3"]["inputs"]["filter"] = f"{first}.png"
    assert comfy.run(warm)["status"]["status_str"] == "success"  # model loaded, first batch done
    (folder / f"{first}.txt").unlink()
    baseline = comfy.rss()
    with PeakRSS(comfy) as peak:
        entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    return entry, peak.bytes - baseline


def test_a_batch_of_three_gives_three_captions(comfy):
    prompt = twin("scr_caption")
    prompt["7"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 3}}
    prompt["5"]["inputs"]["image"] = ["7", 0]
    prompt["4"]["inputs"]["image"] = ["7", 0]
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert len(entry["outputs"]["5"]["text"]) == 3
    assert entry["outputs"]["4"]["text"][0].count("image ") == 3  # three diagnoses, three plans


def test_the_onnx_loader_runs_the_same_workflow_on_onnxruntime(comfy):
    need_extra("onnx")
    torch_entry = comfy.run(twin("scr_caption"))
    prompt = twin("scr_caption")
    prompt["2"] = {"class_type": "SCRLoadOnnxVLM", "inputs": {"model": "testbed-onnx", "path": "", "provider": "cpu"}}
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert entry["outputs"]["4"]["text"][0].startswith("image 0: entropy")
    assert entry["outputs"]["5"]["text"] == torch_entry["outputs"]["5"]["text"]  # same caption as PyTorch
    onnx = [m for m in comfy.get("/scr/models") if m["family"] == "onnx"]
    assert onnx and onnx[0]["onnxruntime"].startswith("onnxruntime")  # which wheel, and its providers
    sampling = copy.deepcopy(prompt)
    sampling["5"]["inputs"]["sample"] = True
    refused = comfy.run(sampling)
    assert refused["status"]["status_str"] == "error"
    assert "decodes greedily" in failure(refused)["exception_message"]


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, node, fragment", [
    (lambda p: p["3"]["inputs"].update(k=0), "3", "Value 0 smaller than min of 1"),
    (lambda p: p["5"]["inputs"].update(instruction="   ", preset="custom"), "5", "instruction is empty"),
    (lambda p: p["3"]["inputs"].update(hook_layers="5-2"), "3", "reversed"),
])
def test_bad_input_is_refused_by_validation(comfy, change, node, fragment):
    prompt = twin("scr_caption")
    change(prompt)
    status, body = comfy.queue(prompt)
    assert status == 400 or body.get("node_errors"), body
    assert fragment in json.dumps(body["node_errors"][node])
    assert comfy.get("/system_stats")  # still serving


def test_a_failing_node_says_why_and_the_server_keeps_serving(comfy):
    prompt = twin("scr_caption")
    prompt["5"]["inputs"].update(instruction="what is <image> here", preset="custom")
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error"
    assert "image token" in failure(entry)["exception_message"]
    assert comfy.run(twin("scr_caption"))["status"]["status_str"] == "success"


def test_save_captions_refuses_paths_outside_the_allowed_folders(comfy):
    def saving(path: str, mode: str, subfolder: str = "captions") -> dict:
        return {
            "1": {"class_type": "PrimitiveString", "inputs": {"value": "a caption"}},
            "2": {"class_type": "PrimitiveString", "inputs": {"value": path}},
            "3": {"class_type": "SCRSaveCaptions", "inputs": {"captions": ["1", 0], "paths": ["2", 0], "mode": mode,
                                                              "subfolder": subfolder, "overwrite": True}},
        }

    for prompt, fragment in ((saving("/etc/cron.d/evil.png", "beside images"), "outside the folders this server allows"),
                             (saving("x.png", "output folder", "../../escape"), "may not contain '..'"),
                             (saving("x.png", "output folder", "/tmp"), "must be relative")):
        entry = comfy.run(prompt)
        assert entry["status"]["status_str"] == "error"
        assert fragment in failure(entry)["exception_message"]
    assert not Path("/etc/cron.d/evil.txt").exists()
    ok = comfy.run(saving("/anywhere/cat.png", "output folder", "caps"))
    assert ok["status"]["status_str"] == "success", failure(ok)
    assert (comfy.base / "output" / "caps" / "cat.txt").read_text() == "a caption\n"


# -- progress, interrupt, memory ---------------------------------------------------------------------
class Websocket:
    """Collects the server's websocket events for this client id (aiohttp, in a thread)."""

    def __init__(self, server) -> None:
        self.url = server.url.replace("http", "ws") + f"/ws?clientId={server.client_id}"
        self.events: list[dict] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)

    async def _listen(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
            self.ready.set()
            while not self.stop.is_set():
                try:
                    message = await ws.receive(timeout=0.2)
                except asyncio.TimeoutError:
                    continue
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.events.append(json.loads(message.data))
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)


def long_caption() -> dict:
    """The tiny random LLaVA rarely ends a sentence: many images and tokens take a while."""
    prompt = twin("scr_caption")
    prompt["2"]["inputs"]["model"] = "tiny-random-llava"
    prompt["3"]["inputs"]["k"] = 4
    prompt["7"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 12}}
    prompt["5"]["inputs"].update(image=["7", 0], max_new_tokens=600, seed=int(time.time()) % 1000)
    prompt["4"]["inputs"]["image"] = ["7", 0]
    return prompt


def test_progress_events_then_interrupt_ends_the_caption_promptly(comfy):
    with Websocket(comfy) as ws:
        status, body = comfy.queue(long_caption())
        assert status == 200, body
        deadline = time.time() + 120
        while time.time() < deadline and not any(e["type"] == "progress" and e["data"].get("node") == "5"
                                                  for e in ws.events):
            time.sleep(0.1)
        progress = [e["data"] for e in ws.events if e["type"] == "progress" and e["data"].get("node") == "5"]
        assert progress and progress[0]["max"] == 12 * 600
        asked = time.time()
        assert comfy.request("POST", "/interrupt", {})[0] == 200
        entry = comfy.wait(body["prompt_id"], timeout=60)
        stopped_after = time.time() - asked
    assert entry["status"]["status_str"] == "error" and failure(entry)["event"] == "execution_interrupted"
    assert stopped_after < 10
    steps = [p["value"] for p in progress]
    assert steps == sorted(steps) and steps[-1] < 12 * 600  # it stopped well before the end
    # the hooks went with it: the same model captions normally afterwards
    assert comfy.run(twin("scr_caption"))["status"]["status_str"] == "success"


def test_free_with_unload_models_releases_the_vlm(comfy):
    assert comfy.run(twin("scr_caption"))["status"]["status_str"] == "success"
    before = comfy.get("/scr/models")
    assert any(m["loaded"] for m in before)  # keep_loaded: ComfyUI counts it as a loaded model
    assert comfy.request("POST", "/free", {"unload_models": True, "free_memory": True})[0] == 200
    deadline = time.time() + 30
    while time.time() < deadline and any(m["loaded"] for m in comfy.get("/scr/models")):
        time.sleep(0.3)
    assert not any(m["loaded"] for m in comfy.get("/scr/models"))
    assert comfy.run(copy.deepcopy(twin("scr_caption")))["status"]["status_str"] == "success"  # loads again


# -- caption presets and true batches ---------------------------------------------------------------
def test_caption_presets_reach_the_model_and_batches_keep_the_captions(comfy):
    from scr_core import SCRPipeline, default_model, instruction_for
    from scr_core.defaults import TESTBED_PRESET_NOTE
    from scr_core.demo import demo_scene
    from scr_core.testbed.scenes import generate_scene

    pipe = SCRPipeline.from_pretrained(default_model()[0])
    question = "Is there a cup in the image?"
    expected = {preset: pipe.caption(demo_scene()[0], instruction_for(preset, "any", question), scr=None,
                                     max_new_tokens=24)[0].text for preset in ("descriptive", "custom")}
    assert expected["descriptive"] != expected["custom"]
    for preset in ("descriptive", "custom"):
        prompt = twin("scr_caption")
        prompt["5"]["inputs"].pop("scr_plan")
        prompt["5"]["inputs"].update(instruction=question, preset=preset, length="any")
        entry = comfy.run(prompt)
        assert entry["status"]["status_str"] == "success", failure(entry)
        note = [] if preset == "descriptive" else [f"note: {TESTBED_PRESET_NOTE}"]  # the testbed's one instruction
        assert entry["outputs"]["5"]["text"] == [expected[preset], *note]

    folder = comfy.allowed / "batch-scenes"  # images of different sizes, as one list
    folder.mkdir()
    for index in range(5):
        generate_scene(index, 11).image.resize((80 + 20 * index, 150 - 10 * index)).save(folder / f"s{index}.png")
    texts = {}
    for size in (1, 3):
        prompt = {"1": {"class_type": "SCRLoadImageFolder", "inputs": {"folder": str(folder), "filter": "",
                                                                        "recursive": False, "limit": 0}},
                  **{k: v for k, v in twin("scr_caption").items() if k in ("2", "3", "5")}}
        prompt["5"]["inputs"].pop("scr_plan")
        prompt["5"]["inputs"].update(scr_config=["3", 0], batch_size=size)
        entry = comfy.run(prompt)
        assert entry["status"]["status_str"] == "success", failure(entry)
        texts[size] = entry["outputs"]["5"]["text"]
    assert len(texts[1]) == 5 and texts[3] == texts[1]

    for change, fragment in (({"batch_size": 0}, "Value 0 smaller than min of 1"),
                             ({"preset": "fancy"}, "preset 'fancy' is not one of")):
        prompt = twin("scr_caption")
        prompt["5"]["inputs"].update(change)
        status, body = comfy.queue(prompt)
        assert status == 400 or body.get("node_errors"), body
        assert fragment in json.dumps(body["node_errors"]["5"])


def test_a_quantized_load_captions_and_reports_its_bytes(comfy):
    from scr_core.loading import bitsandbytes_missing

    if bitsandbytes_missing():
        pytest.skip(bitsandbytes_missing())
    sizes = {}
    for quantization in ("none", "4bit"):
        prompt = copy.deepcopy(twin("scr_caption"))
        loader = next(node for node in prompt.values() if node["class_type"] == "SCRLoadVLM")
        loader["inputs"].update(quantization=quantization, device="cpu")
        entry = comfy.run(prompt)
        assert entry["status"]["status_str"] == "success", failure(entry)
        sizes[quantization] = {m["quantization"]: m["bytes"] for m in comfy.get("/scr/models") if "bytes" in m}
    assert sizes["4bit"]["4bit"] < sizes["none"][None]
    tooltip = comfy.get("/object_info/SCRLoadVLM")["SCRLoadVLM"]["input"]["optional"]["quantization"][1]["tooltip"]
    assert "MiB (4bit)" in tooltip  # the loader's tooltip names what is loaded and its size
