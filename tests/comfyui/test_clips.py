"""Video clips in the real ComfyUI server: core Load Video into the caption nodes' VIDEO input (the shipped clip
workflow), an IMAGE batch taken as one clip, Caption Folder on a folder of clips and images, and one line for
what cannot be captioned. Each caption is compared with the library's own on the same frames."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from PIL import Image

from nodes.samples import CLIP_FILE, FOLDER_SCENES
from scr_core import CAPTION_PROMPT, Clip, SCRConfig, SCRPipeline, default_model, instruction_for, render_heatmap
from scr_core.testbed.clips import moving_square, write_clip
from tests.extras import has_extra

from .test_server import failure, twin

CONFIG = SCRConfig(k=8, lam=1.1)  # the twins' SCR Settings
PROMPT = instruction_for("descriptive", "any", CAPTION_PROMPT)  # what the twins' caption nodes send


@pytest.fixture(scope="module")
def pipe():
    return SCRPipeline.from_pretrained(default_model()[0])


def picture(comfy, output: dict) -> Image.Image:
    found = next(comfy.base.rglob(output["filename"]))
    return Image.open(found).convert("RGB")


def test_the_clip_workflow_captions_and_diagnoses_the_sample_clip_as_the_library_does(comfy, pipe):
    entry = comfy.run(twin("scr_caption_clip"))
    assert entry["status"]["status_str"] == "success", failure(entry)
    clip = pipe.read_clip(comfy.base / "input" / CLIP_FILE)  # the testbed's default sampling: 4 frames
    diagnosis = pipe.diagnose(clip, CAPTION_PROMPT, config=CONFIG)[0]
    expected = pipe.caption(clip, PROMPT, scr=[diagnosis.plan], max_new_tokens=24)[0].text
    assert entry["outputs"]["5"]["text"] == [expected] and expected.strip()
    report = entry["outputs"]["4"]["text"][0]
    assert report.startswith(f"clip 0 ({len(clip.frames)} frames): entropy {diagnosis.entropy:.3f} nats")
    assert report.count("sources") == len(diagnosis.plan.grids) == len(clip.frames)  # a slice per frame here
    strip = picture(comfy, entry["outputs"]["6"]["images"][0])
    drawn = render_heatmap([clip], diagnosis)
    assert strip.size == (drawn.shape[1], drawn.shape[0]) and drawn.shape[1] > 2 * drawn.shape[0]  # side by side
    assert np.abs(np.asarray(strip, dtype=int) - drawn.astype(int)).mean() < 1


def test_caption_compare_takes_the_video_too(comfy, pipe):
    prompt = twin("scr_caption_clip")
    prompt["5"] = {"class_type": "SCRCaptionCompare",
                   "inputs": {"vlm": ["2", 0], "video": ["1", 0], "instruction": CAPTION_PROMPT, "scr_config": ["3", 0],
                              "max_new_tokens": 24, "preset": "descriptive", "frames": 2}}
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    clip = pipe.read_clip(comfy.base / "input" / CLIP_FILE, frames=2)
    vanilla = pipe.caption(clip, PROMPT, scr=None, max_new_tokens=24)[0].text
    assert entry["outputs"]["5"]["text"][0].startswith(f"clip 0 (2 frames)\n  vanilla: {vanilla}\n  SCR:     ")


def test_an_image_batch_as_one_clip_is_one_caption_of_its_frames(comfy, pipe):
    folder = comfy.base / "input" / "scr_testbed"  # Load Image Folder: a list of IMAGE batches, one clip here
    prompt = {"1": {"class_type": "SCRLoadImageFolder", "inputs": {"folder": "scr_testbed", "filter": "*.png",
                                                                    "recursive": False, "limit": 0}},
              **{k: v for k, v in twin("scr_caption").items() if k in ("2", "3", "5")}}
    prompt["5"]["inputs"].pop("scr_plan")
    prompt["5"]["inputs"].update(scr_config=["3", 0], image_batch_is="one clip", frames=4)
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    frames = [Image.open(folder / f"scene_{i:02d}.png").convert("RGB") for i in FOLDER_SCENES]
    expected = pipe.caption(Clip(frames, frames=4), PROMPT, scr=CONFIG, max_new_tokens=24)[0].text
    assert entry["outputs"]["5"]["text"] == [expected]
    prompt["5"]["inputs"].update(image_batch_is="separate images", frames=0)  # as before: one caption each
    entry = comfy.run(prompt)
    assert len(entry["outputs"]["5"]["text"]) == len(FOLDER_SCENES), failure(entry)


def test_caption_folder_captions_the_clips_beside_them_and_names_a_corrupt_one(comfy, pipe):
    folder = comfy.allowed / "clips"
    (folder / "sub").mkdir(parents=True)
    write_clip(folder / "a.mp4", moving_square(16, 96, 64), fps=8)
    write_clip(folder / "sub" / "b.gif", moving_square(12, 64, 64), fps=6)
    pipe.read_clip(folder / "a.mp4").frames[0].resize((192, 192)).save(folder / "c.png")
    (folder / "d.webm").write_bytes(b"corrupt" * 40)
    prompt = twin("scr_folder_captions")
    prompt["3"]["inputs"].update(folder=str(folder), recursive=True, clips=True, frames=4)
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    report = entry["outputs"]["3"]["text"][0]
    assert "3 caption(s) written, 0 skipped (caption file exists), 1 failed" in report
    assert "d.webm: cannot read clip" in report
    written = {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*.txt")}
    assert sorted(written) == ["a.txt", "c.txt", "sub/b.txt"]
    for name in ("a.mp4", "sub/b.gif"):
        clip = pipe.read_clip(folder / name, frames=4)
        assert written[name.rsplit(".", 1)[0] + ".txt"].strip() == pipe.caption(clip, PROMPT, scr=CONFIG,
                                                                                 max_new_tokens=24)[0].text.strip()
    prompt["3"]["inputs"].update(clips=False)  # off: the .mp4 is not listed (an animated .gif is a clip anyway)
    again = comfy.run(prompt)
    assert "0 caption(s) written, 2 skipped" in again["outputs"]["3"]["text"][0], failure(again)


def with_image(prompt: dict) -> dict:
    prompt["7"] = {"class_type": "LoadImage", "inputs": {"image": "scr_testbed_scene.png"}}
    return prompt


@pytest.mark.parametrize("change, fragment", [
    (lambda p: with_image(p)["5"]["inputs"].update(image=["7", 0]), "connect either image or video, not both"),
    (lambda p: with_image(p)["5"]["inputs"].update(image=["7", 0], video=None, frames=2),
     "set image_batch_is to one clip"),
    (lambda p: p["4"]["inputs"].pop("video"), "connect an image or a video"),
])
def test_what_cannot_be_captioned_is_one_line_and_the_server_goes_on(comfy, change, fragment):
    prompt = copy.deepcopy(twin("scr_caption_clip"))
    change(prompt)
    prompt["5"]["inputs"] = {k: v for k, v in prompt["5"]["inputs"].items() if v is not None}
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error"
    message = failure(entry)["exception_message"]
    assert fragment in message and "Traceback" not in message
    assert comfy.run(twin("scr_caption_clip"))["status"]["status_str"] == "success"


def test_the_onnx_runner_refuses_a_clip_in_one_line(comfy):
    if not has_extra("onnx"):
        pytest.skip("the onnx extra is not installed")
    prompt = twin("scr_caption_clip")
    prompt["2"] = {"class_type": "SCRLoadOnnxVLM", "inputs": {"model": "testbed-onnx", "path": "", "provider": "cpu"}}
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error"
    assert "video clips are not exported" in failure(entry)["exception_message"]


def test_a_long_video_costs_the_memory_of_its_sampled_frames(comfy):
    """Load Video gives a file-backed VIDEO; get_components() would hold all 1,200 frames as float tensors
    (1.1 GB); read lazily, only the 4 sampled frames are kept."""
    from .server import PeakRSS

    frames = np.repeat(moving_square(40, 320, 240), 30, axis=0)  # 1,200 frames, 320x240, 50 s at 24 fps
    write_clip(comfy.base / "input" / "long_clip.mp4", frames, fps=24)
    del frames
    prompt = twin("scr_caption_clip")
    prompt["4"]["inputs"]["frames"] = prompt["5"]["inputs"]["frames"] = 4  # the testbed's default, said outright
    warm = comfy.run(prompt)
    assert warm["status"]["status_str"] == "success", failure(warm)  # the model loaded
    prompt["1"]["inputs"]["file"] = "long_clip.mp4"
    baseline = comfy.rss()
    with PeakRSS(comfy) as peak:
        entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert entry["outputs"]["4"]["text"][0].startswith("clip 0 (4 frames)")
    assert peak.bytes - baseline < 150 * 2**20, peak.bytes - baseline


def test_a_workflow_saved_before_the_clip_inputs_runs_as_it_did(comfy):
    """Workflows saved before image_batch_is, frames, fps and clips carry none of them: each picture is captioned
    on its own and a folder's clips are left alone, as then."""
    folder = comfy.base / "input" / "scr_testbed"
    write_clip(folder / "not_listed.mp4", moving_square(8), fps=8)
    results = []
    for keep in (True, False):
        for caption in folder.glob("*.txt"):
            caption.unlink()
        for name, node in (("scr_caption", "5"), ("scr_folder_captions", "3")):
            prompt = twin(name)
            for inputs in (n["inputs"] for n in prompt.values() if not keep):
                for key in ("image_batch_is", "frames", "fps", "clips"):
                    inputs.pop(key, None)
            entry = comfy.run(prompt)
            assert entry["status"]["status_str"] == "success", failure(entry)
            results.append(entry["outputs"][node]["text"])
        results.append(sorted((p.name, p.read_text()) for p in folder.glob("*.txt")))
    for made in [folder / "not_listed.mp4", *folder.glob("*.txt")]:  # the folder as a fresh install has it
        made.unlink()
    assert results[:3] == results[3:] and "6 caption(s) written" in results[1][0]
    assert len(results[2]) == len(FOLDER_SCENES)  # the .mp4 got none
