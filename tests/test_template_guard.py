"""Chat templates render in their own process (``scr_core.template_guard``): the text is transformers' own,
and a hostile template (a huge power, a huge string, a huge sort, recursion, terminal codes in its error)
costs one line within the time bound, while this process's other threads keep running."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from scr_core.errors import DependencyError, GenerationInterrupted, InputError, SCRError
from scr_core.prompts import MAX_PROMPT_CHARS, chat_messages, check_prompt
from scr_core.template_guard import (TEMPLATE_MEMORY_MB, TEMPLATE_SECONDS, ChatTemplateError, TemplateWorker,
                                     clean_message, render_chat, shared_worker)

ROOT = Path(__file__).resolve().parent.parent
TESTBED = ROOT / "scr_core" / "testbed" / "checkpoint"
#: Allowed beyond the time limit for a refusal: the kill and the poll, on a loaded CI machine.
SLACK = 3.0

HOSTILE = {
    "power": ("{% set x = 3 ** ((messages|length) * 50000000) %}", "took more than 2 s"),
    "string": ("{{ 'a' * 1500000000 }}", "needed more than 256 MB"),
    "sort": ("{% set x = (range(100000)|list * 300)|sort|unique %}{{ x|length }}", "more than"),
    "recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursed too deeply"),
    "ansi": ("{{ raise_exception('\x1b[31mred\x1b[0m alert\nsecond line\x07\x1b]0;title\x07 end') }}",
             "refused the prompt: red alert second line end"),
}

CONVERSATIONS = [
    chat_messages("Describe the image.", 1),
    chat_messages("Compare these two pictures, please.", 2),
    chat_messages("Is there a dog? Answer yes or no.", 0),
    chat_messages('Unicode “quotes” — {{ braces }} {% raw %} <b>tags</b>\nand a new line', 1),
    [*chat_messages("What is this?", 1), {"role": "assistant", "content": [{"type": "text", "text": "A box."}]},
     {"role": "user", "content": [{"type": "text", "text": "What colour?"}]}],
]


@pytest.fixture(scope="module")
def processor():
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(TESTBED)


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- the same text as transformers ---------------------------------------------------------------
def _family_folders(root: Path) -> dict[str, Path]:
    from scr_core.testbed import tiny_families, tiny_modern
    from scr_core.testbed.tiny import build_tiny_llava

    folders = {"testbed": TESTBED, "llava": build_tiny_llava(root / "llava", seed=0)}
    for module in (tiny_families, tiny_modern):
        for family in module.BUILDERS:
            folders[family] = module.build(family, root / family)
    return folders


@pytest.fixture(scope="module")
def family_folders(tmp_path_factory):
    return _family_folders(tmp_path_factory.mktemp("template-families"))


def test_the_worker_renders_what_apply_chat_template_renders_for_every_family(family_folders):
    from transformers import AutoProcessor

    checked = []
    for family, folder in family_folders.items():
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=family == "remote_code")
        # Chameleon's processor loads without its template: its adapter passes the tokenizer's
        template = None if processor.chat_template else processor.tokenizer.chat_template
        for messages in CONVERSATIONS:
            expected = processor.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                     add_generation_prompt=True)
            assert render_chat(processor, messages, template) == expected, (family, messages)
        tokenizer = processor.tokenizer  # the ONNX runtime's path for families it expands itself
        if tokenizer.chat_template is not None:
            messages = CONVERSATIONS[0]
            assert render_chat(tokenizer, messages) == tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True)
        checked.append(family)
    assert len(checked) >= 14, checked


def test_an_explicit_template_is_rendered_as_apply_chat_template_renders_it(processor):
    template = "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{% endfor %}{{ strftime_now('%Y') }}"
    messages = CONVERSATIONS[0]
    assert render_chat(processor, messages, template) == processor.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=True)


def test_the_worker_is_reused_and_holds_no_torch(processor):
    import psutil

    render_chat(processor, CONVERSATIONS[0])
    pid = shared_worker().pid
    for messages in CONVERSATIONS:
        render_chat(processor, messages)
    assert shared_worker().pid == pid
    worker = psutil.Process(pid)
    assert worker.memory_info().rss < 200 * 2**20
    if sys.platform.startswith("linux"):
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "torch" not in maps and "libtorch" not in maps


# -- hostile templates ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_template_costs_one_line_in_bounded_time_and_the_next_render_works(processor, case):
    template, fragment = HOSTILE[case]
    messages = CONVERSATIONS[0]
    expected = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert render_chat(processor, messages) == expected  # a ready worker: start-up is not counted below
    started = time.monotonic()
    with pytest.raises(ChatTemplateError) as caught:
        render_chat(processor, messages, template)
    assert time.monotonic() - started < TEMPLATE_SECONDS + SLACK
    message = str(caught.value)
    assert fragment in message and "\n" not in message, message
    assert not any(ord(c) < 32 or c == "\x7f" for c in message), repr(message)
    assert render_chat(processor, messages) == expected


def test_other_threads_run_while_a_template_computes_a_huge_power(processor):
    """What froze ComfyUI's HTTP thread: the power is computed in C, holding the GIL of its process."""
    gaps, done = [], threading.Event()

    def tick():
        last = time.monotonic()
        while not done.is_set():
            time.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    render_chat(processor, CONVERSATIONS[0])
    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        with pytest.raises(ChatTemplateError, match="took more than"):
            render_chat(processor, CONVERSATIONS[0], HOSTILE["power"][0])
    finally:
        done.set()
        ticker.join()
    assert len(gaps) > 50 and max(gaps) < 0.5, max(gaps)


def test_memory_is_watched_from_outside_where_the_kernel_does_not_cap_it():
    """Windows' and macOS's path (psutil polls the worker), checked here with the kernel's cap left off."""
    pytest.importorskip("psutil")
    grows = ("{% set ns = namespace(items=[]) %}{% for i in range(100000) %}"
             "{% set ns.items = ns.items + ['x' * 100000 ~ i] %}{% endfor %}{{ ns.items|length }}")
    worker = TemplateWorker(seconds=60, memory_mb=64, kernel_limit=False)
    try:
        assert worker.render("ok {{ messages|length }}", CONVERSATIONS[0], {}) == "ok 1"
        started = time.monotonic()
        with pytest.raises(ChatTemplateError, match="needed more than 64 MB"):
            worker.render(grows, CONVERSATIONS[0], {})
        assert time.monotonic() - started < 30 and worker.pid is None
        assert worker.render("ok {{ messages|length }}", CONVERSATIONS[0], {}) == "ok 1"
    finally:
        worker.stop()


def test_an_interrupt_kills_the_render():
    loops = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    worker = TemplateWorker(seconds=60)
    try:
        worker.render("warm", [], {})
        asked = time.monotonic() + 0.5
        with pytest.raises(GenerationInterrupted, match="while the chat template was rendering"):
            worker.render(loops, [], {}, stop_check=lambda: time.monotonic() > asked)
        assert time.monotonic() - asked < 1.5 and worker.pid is None

        class HostInterrupt(Exception):
            pass

        def host_check():  # ComfyUI's check raises its own exception
            if time.monotonic() > asked:
                raise HostInterrupt()

        asked = time.monotonic() + 0.5
        with pytest.raises(HostInterrupt):
            worker.render(loops, [], {}, stop_check=host_check)
        assert time.monotonic() - asked < 1.5 and worker.pid is None
        assert worker.render("again", [], {}) == "again"
    finally:
        worker.stop()


def test_a_crashed_worker_is_one_line_and_replaced():
    worker = TemplateWorker()
    try:
        assert worker.render("one", [], {}) == "one"
        os.kill(worker.pid, 9)
        time.sleep(0.2)
        assert worker.render("two", [], {}) == "two"  # died while idle: replaced silently
        loops = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
        killer = threading.Timer(0.5, lambda: os.kill(worker.pid, 9))
        killer.start()
        with pytest.raises(ChatTemplateError, match=r"stopped its renderer \(exit code -9\)"):
            worker.render(loops, [], {})
        killer.join()
        assert worker.render("three", [], {}) == "three"
    finally:
        worker.stop()


def test_a_renderer_that_cannot_start_is_one_line(tmp_path, monkeypatch):
    import scr_core.template_guard as guard

    broken = tmp_path / "broken.py"
    broken.write_text("import sys\nsys.exit(3)\n")
    monkeypatch.setattr(guard, "WORKER", broken)
    with pytest.raises(SCRError, match=r"renderer exited at start \(exit code 3\); run .* to see why"):
        TemplateWorker().render("x", [], {})
    broken.write_text('print(\'{"kind": "start", "error": "ModuleNotFoundError: no jinja2"}\')\n')
    with pytest.raises(DependencyError, match="renderer could not start: ModuleNotFoundError: no jinja2"):
        TemplateWorker().render("x", [], {})


def test_limits_and_messages():
    with pytest.raises(ChatTemplateError, match="1,000,001 characters long"):
        TemplateWorker().render("x" * 1_000_001, [], {})
    assert clean_message("\x1b[1;31mbold\x1b[0m\ttab\r\nnext\u202eevil\x00") == "bold tab nextevil"
    assert clean_message("x" * 1000, 10) == "x" * 9 + "…"
    assert TEMPLATE_SECONDS == 2.0 and TEMPLATE_MEMORY_MB == 256


def test_the_limits_follow_the_owners_variables(monkeypatch):
    monkeypatch.setenv("SCR_TEMPLATE_SECONDS", "0.5")
    monkeypatch.setenv("SCR_TEMPLATE_MEMORY_MB", "100")
    worker = TemplateWorker()
    assert (worker.seconds, worker.memory_mb) == (0.5, 100)
    monkeypatch.setenv("SCR_TEMPLATE_SECONDS", "soon")
    with pytest.raises(Exception, match="SCR_TEMPLATE_SECONDS='soon' must be a positive number"):
        TemplateWorker()


# -- the prompt itself ---------------------------------------------------------------------------
def test_an_over_long_prompt_is_refused_as_such_before_the_template(pipe):
    check_prompt("x" * MAX_PROMPT_CHARS)
    with pytest.raises(InputError, match="the prompt is 10,000,000 characters long; the limit is 100,000"):
        pipe.prepare(Image.new("RGB", (32, 32)), "x" * 10_000_000)


# -- the command line and an exported folder -------------------------------------------------------
def test_the_cli_refuses_a_hostile_template_in_one_line(tmp_path):
    model = tmp_path / "hostile"
    shutil.copytree(TESTBED, model)
    (model / "chat_template.jinja").write_text(HOSTILE["power"][0])
    Image.new("RGB", (32, 32), (200, 40, 40)).save(tmp_path / "red.png")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "scr_core", "caption", "--model", str(model),
                           str(tmp_path / "red.png")], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0
    line = one_line(done.stderr)
    assert line.startswith("error: the model's chat template took more than 2 s"), line
    assert time.monotonic() - started < 300


@pytest.mark.parametrize("rule", ["processor", "expand"])
@pytest.mark.parametrize("case", ["power", "ansi"])
def test_an_exported_folders_template_is_refused_the_same_way(tmp_path, rule, case):
    """The ONNX runtime's preprocessing (torch-free) with the two rules an export writes: the processor's
    template from ``scr_config.json`` (``model.processor.chat_template``), or the folder's
    ``chat_template.jinja`` around the tokenizer (families whose placeholders it expands itself). The
    whole route from a crafted ``scr_config.json`` is in test_hardening.py."""
    from export.folder_config import Expand, ProcessorRule
    from export.preprocess import Preprocessor

    template, fragment = HOSTILE[case]
    if rule == "processor":
        pre = Preprocessor(TESTBED, ProcessorRule(reserved_tokens=(), chat_template=template))
    else:
        folder = tmp_path / "export"
        shutil.copytree(TESTBED, folder)
        (folder / "chat_template.jinja").write_text(template)
        pre = Preprocessor(folder, ProcessorRule(reserved_tokens=(), expand=Expand(
            count="num_patches", image_token="<image>", tokens_per_patch=1)))
    shared_worker().render("warm", [], {})  # start-up is not counted below
    started = time.monotonic()
    with pytest.raises(ChatTemplateError) as caught:
        pre.format("Describe the image.", 1)
    assert time.monotonic() - started < TEMPLATE_SECONDS + SLACK
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert shared_worker().render("ok", [], {}) == "ok"
