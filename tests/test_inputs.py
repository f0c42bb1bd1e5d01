"""Bad input: one clear SCRError each, and nothing lost (the pipeline keeps working)."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from scr_core.config import SCRConfig
from scr_core.errors import InputError, ModelLoadError, SCRError, UnsupportedModelError
from scr_core.images import load_image
from scr_core.pipeline import SCRPipeline


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1", "F"])
def test_any_image_mode_is_converted_to_rgb(mode, pipe):
    image = Image.new(mode, (40, 30))
    rgb = load_image(image)
    assert rgb.mode == "RGB" and rgb.size == (40, 30)
    assert pipe.caption(image, max_new_tokens=2)[0].text is not None


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_arrays_and_paths(tmp_path):
    arr = np.zeros((5, 6, 3), dtype=np.float32)
    arr[..., 1] = 1.0
    assert load_image(arr).getpixel((0, 0)) == (0, 255, 0)
    Image.new("RGB", (3, 3), "blue").save(tmp_path / "x.png")
    assert load_image(tmp_path / "x.png").getpixel((1, 1)) == (0, 0, 255)


@pytest.mark.parametrize("bad", [
    Image.new("RGB", (0, 10)), np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 5)), "missing.png", 42,
])
def test_unusable_images_raise_input_error(bad, pipe):
    with pytest.raises(InputError):
        pipe.caption(bad, max_new_tokens=2)


def test_unreadable_file_raises_input_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png"):
        load_image(tmp_path / "broken.png")


@pytest.mark.parametrize("prompt", ["", "   ", "\n"])
def test_empty_prompt(prompt, pipe, images):
    with pytest.raises(InputError, match="prompt is empty"):
        pipe.caption(images[0], prompt)


def test_prompt_count_must_match_images(pipe, images):
    with pytest.raises(InputError, match="2 prompts for 3 images"):
        pipe.caption(images, ["a", "b"])


@pytest.mark.parametrize("kwargs", [{"lam": 0.0}, {"lam": float("nan")}, {"lam": -1}, {"k": 0}])
def test_bad_scr_settings(kwargs):
    with pytest.raises(SCRError):
        SCRConfig(**kwargs)


def test_k_larger_than_the_grid(pipe, images):
    with pytest.raises(SCRError, match="k=40 exceeds"):
        pipe.caption(images[0], scr=SCRConfig(k=40), max_new_tokens=2)
    assert pipe.caption(images[0], max_new_tokens=2)  # still usable


def test_layers_beyond_the_model(pipe, images):
    with pytest.raises(SCRError, match="only 18 decoder layers"):
        pipe.caption(images[0], scr=SCRConfig(hook_layers=(0, 30)), max_new_tokens=2)


def test_a_plan_beyond_the_model_meets_the_same_depth_check(pipe, images):
    plan = dataclasses.replace(pipe.diagnose(images[0])[0].plan, hook_layers=(0, 30))
    with pytest.raises(SCRError, match=r"the plan's hook_layers=\[0, 30\] reaches layer 30, but the model has only "
                                       r"18 decoder layers \(0\.\.17\)"):
        pipe.caption(images[0], scr=plan, max_new_tokens=2)
    assert pipe.caption(images[0], max_new_tokens=2)  # still usable


def test_a_checkpoints_config_json_has_one_reader(tmp_path, tiny_llava_dir):
    from scr_core.loading import checkpoint_config, checkpoint_quantization, decoder_depth

    assert checkpoint_config(tiny_llava_dir)["model_type"] == "llava" and decoder_depth(tiny_llava_dir) == 18
    assert checkpoint_quantization(tiny_llava_dir) is None
    for content, problem in ((None, "no config.json"), ("{", "cannot read"), ("[1, 2]", "is not a JSON object")):
        folder = tmp_path / problem.replace(" ", "-")
        folder.mkdir()
        if content is not None:
            (folder / "config.json").write_text(content)
        assert checkpoint_config(folder) is None and decoder_depth(folder) is None
        assert checkpoint_quantization(folder) is None
        with pytest.raises(ModelLoadError, match=problem):
            checkpoint_config(folder, required=True)
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "config.json").write_text(json.dumps({"quantization_config": {"load_in_4bit": True}}))
    assert checkpoint_quantization(tmp_path / "q") == "4bit"


@pytest.mark.parametrize("value,on", [("1", True), ("true", True), (" Yes ", True), ("ON", True), ("0", False),
                                      ("", False), ("no", False), ("2", False), (None, False)])
def test_environment_switches_read_alike(value, on):
    from scr_core.allowed import DOWNLOADS_ENV, downloads_allowed
    from scr_core.env import env_flag, hub_offline
    from scr_core.loading import LoadOptions

    env = {} if value is None else {"HF_HUB_OFFLINE": value, DOWNLOADS_ENV: value}
    assert env_flag("HF_HUB_OFFLINE", env) is on and hub_offline(env) is on and downloads_allowed(env) is on
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("HF_HUB_OFFLINE", raising=False)
        if value is not None:
            patch.setenv("HF_HUB_OFFLINE", value)
        assert LoadOptions().offline is on


def test_folder_without_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        SCRPipeline.from_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="not found"):
        SCRPipeline.from_pretrained(tmp_path / "nope")


def test_corrupt_and_incomplete_checkpoints(tmp_path, tiny_llava_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llava_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="broken"):
        SCRPipeline.from_pretrained(broken)
    weights.unlink()
    with pytest.raises(ModelLoadError):
        SCRPipeline.from_pretrained(broken)


def test_unsupported_model_type(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="'gpt2'.*supports: llava"):
        SCRPipeline.from_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "gpt2"


def test_image_at_the_end_of_the_prompt_needs_query_last(pipe, images):
    class ImageLast(type(pipe.adapter)):
        def format_prompt(self, prompt, num_images):
            return prompt + " <image>"

    other = SCRPipeline(pipe.model, pipe.processor, ImageLast(pipe.model, pipe.processor))
    with pytest.raises(InputError, match="no text after its image"):
        other.diagnose(images[0], "describe")
    assert other.diagnose(images[0], "describe", config=SCRConfig(k=4, query="last"))[0].plan.grids
