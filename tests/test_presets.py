"""Caption presets: one table, checked inputs, and the preset's text is what reaches the model."""

from __future__ import annotations

import json

import pytest

from scr_core import CAPTION_LENGTHS, CAPTION_PRESETS, CAPTION_PROMPT, InputError, instruction_for
from scr_core.cli import main
from scr_core.defaults import TESTBED_CHECKPOINT

bundled = pytest.mark.skipif(not (TESTBED_CHECKPOINT / "config.json").is_file(),
                             reason="the trained testbed checkpoint is not bundled in this checkout")
QUESTION = "Is there a cup in the image?"


def test_each_preset_sends_its_table_text_and_length_adds_its_phrase():
    assert list(CAPTION_PRESETS) == ["descriptive", "short", "detailed", "tags", "training", "custom"]
    assert list(CAPTION_LENGTHS) == ["any", "short", "medium", "long"]
    assert instruction_for() == CAPTION_PROMPT  # the default is the paper's caption prompt
    for preset, text in CAPTION_PRESETS.items():
        expected = QUESTION if text is None else text
        assert instruction_for(preset, "any", QUESTION) == expected  # other presets ignore the typed text
        for length, phrase in CAPTION_LENGTHS.items():
            sent = instruction_for(preset, length, QUESTION)
            assert sent.startswith(expected) and sent.endswith(phrase)
            assert len({instruction_for(preset, n, QUESTION) for n in CAPTION_LENGTHS}) == len(CAPTION_LENGTHS)
    assert "comma-separated" in CAPTION_PRESETS["tags"]


@pytest.mark.parametrize("args, fragment", [
    (("fancy",), "preset must be one of descriptive, short, detailed, tags, training, custom (got 'fancy')"),
    (("short", "huge"), "length must be one of any, short, medium, long (got 'huge')"),
    (("custom", "any", None), "preset custom needs an instruction of your own"),
    (("custom", "any", "  "), "the prompt is empty"),
])
def test_a_bad_preset_or_length_is_one_line_naming_what_is_allowed(args, fragment):
    with pytest.raises(InputError) as err:
        instruction_for(*args)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def testbed():
    from scr_core import SCRPipeline

    if not (TESTBED_CHECKPOINT / "config.json").is_file():
        pytest.skip("the trained testbed checkpoint is not bundled in this checkout")
    return SCRPipeline.from_pretrained(TESTBED_CHECKPOINT)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from scr_core.demo import demo_scene

    path = tmp_path_factory.mktemp("presets") / "scene.png"
    demo_scene()[0].save(path)
    return path


def words_sent(pipe, batch) -> list[str]:
    """The tokens of the prepared sequence after its image (what the model reads of the instruction)."""
    ids = batch.inputs["input_ids"][0].tolist()
    image = pipe.processor.tokenizer.convert_tokens_to_ids("<image>")
    last = len(ids) - 1 - ids[::-1].index(image)
    return pipe.processor.tokenizer.convert_ids_to_tokens(ids[last + 1:])


@bundled
def test_the_prepared_input_ids_hold_the_preset_text(testbed, scene):
    tokenizer = testbed.processor.tokenizer
    seen = set()
    for preset in ("descriptive", "tags", "training"):
        text = instruction_for(preset, "short")
        batch = testbed.prepare(scene, text)
        assert batch.prompts == (text,) and text in testbed.adapter.format_prompt(text, 1)
        sent = words_sent(testbed, batch)
        expected = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert " ".join(expected) in " ".join(sent)
        seen.add(tuple(sent))
    assert len(seen) == 3


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@bundled
def test_the_cli_sends_the_preset_and_length_it_is_given(testbed, scene, capsys):
    def caption(*flags) -> dict:
        code, out, err = run_cli(capsys, "caption", scene, "--no-scr", "--max-new-tokens", 12, "--json", *flags)
        assert code == 0, err
        return json.loads(out)

    default = caption()
    assert default["prompt"] == CAPTION_PROMPT and default["text"]
    for flags, preset, length, typed in ((("--preset", "tags", "--length", "long"), "tags", "long", None),
                                         (("--prompt", QUESTION), "custom", "any", QUESTION),
                                         (("--preset", "custom", "--prompt", QUESTION, "--length", "short"),
                                          "custom", "short", QUESTION)):
        result = caption(*flags)
        sent = instruction_for(preset, length, typed)
        assert result["prompt"] == sent
        assert result["token_ids"] == list(testbed.caption(scene, sent, scr=None, max_new_tokens=12)[0].token_ids)
    assert caption("--prompt", QUESTION)["text"] != default["text"]  # the instruction changed the answer


@pytest.mark.parametrize("flags, fragment", [
    (("--preset", "tags", "--prompt", QUESTION), "--prompt is the custom preset's instruction"),
    (("--preset", "custom"), "preset custom needs an instruction of your own"),
])
def test_the_cli_refuses_a_typed_prompt_the_preset_would_ignore(capsys, scene, flags, fragment):
    code, out, err = run_cli(capsys, "caption", scene, "--no-scr", *flags)
    assert code == 2 and err.startswith("error:") and fragment in err and len(err.strip().splitlines()) == 1


def test_the_cli_lists_the_presets_for_a_wrong_one(capsys, scene):
    with pytest.raises(SystemExit) as exit_:
        main(["caption", str(scene), "--preset", "fancy"])
    assert exit_.value.code == 2
    assert "invalid choice: 'fancy'" in capsys.readouterr().err


def test_the_readme_shows_the_presets_table():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for preset, text in CAPTION_PRESETS.items():
        assert f"| `{preset}` | {text or 'the instruction as typed'}" in readme
    assert all(phrase in readme for phrase in CAPTION_LENGTHS.values())


# -- the bundled testbed follows only its training instruction (scr_core.defaults.preset_note) ----------------
def test_the_preset_note_is_one_rule_for_the_testbed_and_instructions_it_was_not_trained_on(tmp_path):
    from scr_core.defaults import TESTBED_PRESET_NOTE, preset_note

    assert preset_note(TESTBED_CHECKPOINT, None) is None  # the default instruction
    for length in CAPTION_LENGTHS:
        assert preset_note(TESTBED_CHECKPOINT, instruction_for("descriptive", length)) is None
    for preset in ("short", "detailed", "tags", "training"):
        assert preset_note(TESTBED_CHECKPOINT, instruction_for(preset)) == f"note: {TESTBED_PRESET_NOTE}"
    assert preset_note(TESTBED_CHECKPOINT, QUESTION) == f"note: {TESTBED_PRESET_NOTE}"  # custom
    assert preset_note(TESTBED_CHECKPOINT / ".." / "checkpoint", instruction_for("tags")) is not None
    assert preset_note(tmp_path, instruction_for("tags")) is None  # any other model follows presets
    assert preset_note(None, instruction_for("tags")) is None


def test_where_the_preset_is_chosen_the_testbed_note_is_said(capsys):
    from scr_core.defaults import TESTBED_PRESET_NOTE

    with pytest.raises(SystemExit):
        main(["caption", "--help"])
    assert " ".join(TESTBED_PRESET_NOTE.split()) in " ".join(capsys.readouterr().out.split())


@bundled
def test_the_cli_says_the_note_when_the_testbed_gets_another_preset(testbed, scene, capsys):
    from scr_core.defaults import TESTBED_PRESET_NOTE

    code, out, err = run_cli(capsys, "caption", scene, "--no-scr", "--max-new-tokens", 8, "--preset", "tags")
    assert code == 0 and f"note: {TESTBED_PRESET_NOTE}" in err.splitlines()
    code, out, err = run_cli(capsys, "caption", scene, "--no-scr", "--max-new-tokens", 8, "--length", "short")
    assert code == 0 and "note:" not in err  # descriptive with a length: what it was trained on
