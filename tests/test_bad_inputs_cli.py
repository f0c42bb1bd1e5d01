"""Bad input through the command line and the pipeline, as a hostile user would try it: one row per
case, each giving one ``error: …`` line (exit code 2) and no traceback, or the API's ``SCRError``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from scr_core import SCRConfig
from scr_core.cli import main
from scr_core.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad-inputs") / "scene.png"
    Image.new("RGB", (120, 90), (200, 30, 30)).save(path)
    return path


LONG_PROMPT = "word " * 1500  # ~1,500 tokens for a 1,024-position tiny LLaVA

# (arguments after the image; the model is appended when the row needs it), expected message fragment
CLI_CASES = [
    (["caption", "--prompt", ""], "the prompt is empty"),
    (["caption", "--prompt", "what is <image> here"], "contains the model's image token '<image>'"),
    (["caption", "--prompt", LONG_PROMPT], "but the model's context is 1024 positions"),
    (["caption", "--prompt", "bad \udcff bytes"], "not valid UTF-8"),
    (["caption", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    (["caption", "--dtype", "float17"], "unknown dtype 'float17'"),
    (["caption", "--device", "tpu"], "unknown device 'tpu'"),
    (["caption", "--k", "0"], "k must be a positive integer"),
    (["caption", "--lam", "nan"], "lam must be a finite number"),
    (["caption", "--hook-layers", "40-41"], "--hook-layers reaches layer 41"),
    (["diagnose", "--diag-layers", "3-30"], "--diag-layers reaches layer 30"),
    (["caption", "--max-tiles", "2"], "llava models have no option 'max_tiles'"),
    (["diagnose", "--heatmap", "{tmp}/missing/heat.png"], "does not exist; create it first"),
    (["diagnose", "--heatmap", "{tmp}/heat"], "unknown or missing file extension"),
    (["diagnose", "--heatmap", "{tmp}/heat.xyz"], "unknown or missing file extension"),
    (["diagnose", "--heatmap", "{tmp}"], "unknown or missing file extension"),
    (["diagnose", "--heatmap", "{existing}"], "exists; pass --overwrite"),
]


@pytest.mark.parametrize("args, message", CLI_CASES, ids=[" ".join(a)[:40] for a, _ in CLI_CASES])
def test_cli_bad_input_is_one_clear_line(args, message, picture, tiny_llava_dir, tmp_path, capsys):
    existing = tmp_path / "old.png"
    existing.write_bytes(b"keep me")
    args = [a.format(tmp=tmp_path, existing=existing) for a in args]
    code = main([args[0], str(picture), *args[1:], "--model", str(tiny_llava_dir)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error:") and message in err and "Traceback" not in err
    assert existing.read_bytes() == b"keep me"  # nothing overwritten


def test_cli_argument_errors_name_the_range(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["caption", "x.png", "--hook-layers", "5-2,3"])
    assert exit_info.value.code == 2 and "'5-2' is reversed" in capsys.readouterr().err


def test_layer_ranges_are_checked_before_the_weights_load(picture, tiny_llava_dir, capsys, monkeypatch):
    import scr_core.pipeline as pipeline

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(pipeline.SCRPipeline, "from_pretrained", never)
    assert main(["caption", str(picture), "--model", str(tiny_llava_dir), "--hook-layers", "0-99"]) == 2
    assert "--hook-layers reaches layer 99, but the model has only 18 decoder layers" in capsys.readouterr().err


def test_missing_model_folder_fails_at_once(picture, capsys):
    assert main(["caption", str(picture), "--model", "some_dir_that_does_not_exist"]) == 2
    assert "model folder not found" in capsys.readouterr().err


def test_heatmap_overwrite_is_explicit_and_atomic(picture, tiny_llava_dir, tmp_path, capsys):
    heat = tmp_path / "heat.jpg"
    heat.write_bytes(b"old")
    assert main(["diagnose", str(picture), "--model", str(tiny_llava_dir), "--k", "4", "--heatmap", str(heat),
                 "--overwrite"]) == 0
    assert Image.open(heat).format == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.jpg"]  # no temporary left behind


def test_unexpected_errors_are_one_line_unless_debug(picture, tiny_llava_dir, capsys, monkeypatch):
    import scr_core.cli as cli

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setitem(cli.COMMANDS, "caption", broken)
    assert main(["caption", str(picture)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected RuntimeError: boom") and "Traceback" not in err
    with pytest.raises(RuntimeError):
        main(["--debug", "caption", str(picture)])


# -- the same rules in the API ---------------------------------------------------------------
@pytest.mark.parametrize("call, error, message", [
    (lambda p, im: p.caption(im, ""), InputError, "the prompt is empty"),
    (lambda p, im: p.caption(im, LONG_PROMPT), InputError, "context is 1024 positions"),
    (lambda p, im: p.caption(im, "hi", max_new_tokens=1020), InputError, "lower max_new_tokens"),
    (lambda p, im: p.caption(im, max_new_tokens=0), ConfigError, "max_new_tokens must be an integer >= 1"),
    (lambda p, im: p.caption(im, max_new_tokens=True), ConfigError, "max_new_tokens"),
    (lambda p, im: p.answer(im, "is there an <image> ?"), InputError, "image token"),
])
def test_api_bad_input(call, error, message, pipe, images):
    with pytest.raises(error, match=message):
        call(pipe, images[0])


def test_uniform_smooth_does_not_depend_on_the_batch(pipe, images):
    cfg = SCRConfig(k=4, selection="uniform", seed=3)
    alone = pipe.caption(images[1], "describe the image .", scr=cfg, max_new_tokens=2)[0].plan
    batched = pipe.caption(images[:3], "describe the image .", scr=cfg, max_new_tokens=2)
    assert batched[1].plan == alone
    assert batched[0].plan != batched[1].plan  # different images: different random sources
    assert pipe.caption(images[1], "describe the image .", scr=cfg.with_(seed=4),
                        max_new_tokens=2)[0].plan != alone


def test_hostile_but_valid_prompts_work(pipe, images):
    for prompt in ("🐱 what is this? 🐶", "  spaced  ", "ünïcödé ß"):
        result = pipe.caption(images[0], prompt, scr=SCRConfig(k=4), max_new_tokens=2)[0]
        assert len(result.token_ids) >= 1
    tiny = Image.fromarray(np.zeros((1, 1, 3), np.uint8))
    assert pipe.caption(tiny, scr=SCRConfig(k=4), max_new_tokens=2)[0].plan is not None


def test_quantize_without_bitsandbytes_is_one_line_naming_it(picture, tiny_llava_dir, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as where it does not install (find_spec: None)
    code = main(["caption", str(picture), "--model", str(tiny_llava_dir), "--quantize", "4bit"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error:") and "bitsandbytes is not installed" in err
