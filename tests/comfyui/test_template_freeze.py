"""A hostile chat template in a model folder under ``models/LLM`` no longer freezes the server: while it
renders (in its own process, ``scr_core.template_guard``), ``/system_stats`` answers every 0.2 s poll within
2 s, ``/interrupt`` answers at once and ends the render, the prompt fails with one line, and the server's
memory stays put (the renderer's is capped apart from it).

Its own server, with the owner's ``SCR_TEMPLATE_SECONDS=8``: a render window long enough to poll through
and to interrupt in (the default 2 s is checked in tests/test_template_guard.py)."""

from __future__ import annotations

import shutil
import threading
import time
import urllib.request
from importlib.util import find_spec

import pytest

from .conftest import skip_or_fail
from .server import ComfyServer, comfyui_dir
from .test_hostile import error_of
from .test_server import failure, twin

SECONDS = 8
HOSTILE = {
    "hostile-power": ("{% set x = 3 ** ((messages|length) * 50000000) %}", f"took more than {SECONDS} s"),
    "hostile-sort": ("{% set x = (range(100000)|list * 300)|sort|unique %}{{ x|length }}", "needed more than 256 MB"),
    "hostile-string": ("{{ 'a' * 1500000000 }}", "needed more than 256 MB"),
}
#: What one hostile render may add to the server process (it used to add 1.4 to 3.2 GB): loading the tiny
#: model's folder and the prompt's bookkeeping only.
SERVER_GROWTH = 300 * 2**20
#: The renderer's whole resident memory (about 60 MB at start plus its 256 MB budget).
WORKER_RSS = 512 * 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_llava_dir):
    source = comfyui_dir()
    if source is None:
        skip_or_fail("no ComfyUI source tree: set COMFYUI_DIR (CI has ../shared/comfyui)")
    if find_spec("aiohttp") is None or find_spec("psutil") is None:
        skip_or_fail("ComfyUI's requirements (aiohttp, psutil) are not installed")
    base = tmp_path_factory.mktemp("template-freeze")
    models = base / "models" / "LLM"
    models.mkdir(parents=True)
    shutil.copytree(tiny_llava_dir, models / "tiny-random-llava")
    for name, (template, _) in HOSTILE.items():
        shutil.copytree(tiny_llava_dir, models / name)
        (models / name / "chat_template.jinja").write_text(template)
    (base / "input").mkdir()
    server = ComfyServer(source, base, env={"SCR_TEMPLATE_SECONDS": str(SECONDS)}).start()
    yield server
    server.stop()


def caption(model: str) -> dict:
    """Load Image → Load VLM (``model``) → Caption, vanilla (the template renders when the caption starts)."""
    prompt = twin("scr_caption")
    for node in ("3", "4", "6"):
        del prompt[node]
    del prompt["5"]["inputs"]["scr_plan"]
    prompt["2"]["inputs"]["model"] = model
    prompt["5"]["inputs"]["max_new_tokens"] = 4
    return prompt


def renderer(server):
    """The server's template-renderer process (psutil), or None."""
    import psutil

    for child in psutil.Process(server.process.pid).children():
        try:
            if any(part.endswith("template_worker.py") for part in child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


class Watch:
    """Polls ``/system_stats`` every 0.2 s (each answer's seconds in ``latencies``) and samples the peak
    resident memory of the server and of its renderer."""

    def __init__(self, server) -> None:
        self.server, self.latencies, self.server_peak, self.worker_peak = server, [], 0, 0
        self.at = []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._poll, daemon=True),
                        threading.Thread(target=self._memory, daemon=True)]

    def _poll(self) -> None:
        while not self.done.is_set():
            started = time.monotonic()
            with urllib.request.urlopen(self.server.url + "/system_stats", timeout=60) as answer:
                answer.read()
            self.latencies.append(time.monotonic() - started)
            self.at.append(started)
            self.done.wait(0.2)

    def _memory(self) -> None:
        import psutil

        while not self.done.is_set():
            self.server_peak = max(self.server_peak, self.server.rss())
            worker = renderer(self.server)
            try:
                self.worker_peak = max(self.worker_peak, worker.memory_info().rss if worker else 0)
            except psutil.Error:
                pass
            time.sleep(0.1)

    def __enter__(self) -> "Watch":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(70)


def succeeds(server, model: str = "tiny-random-llava") -> None:
    entry = server.run(caption(model), timeout=300)
    assert entry["status"]["status_str"] == "success", failure(entry)


@pytest.mark.parametrize("model", list(HOSTILE))
def test_the_server_answers_while_a_hostile_template_renders_and_the_prompt_fails_in_one_line(server, model):
    succeeds(server)  # the tiny model and the renderer are up: what follows is the hostile render
    before = server.rss()
    with Watch(server) as watch:
        started = time.monotonic()
        message = error_of(server.run(caption(model), timeout=300))
        took = time.monotonic() - started
    assert f"the model's chat template {HOSTILE[model][1]}" in message, message
    assert took < SECONDS + 60  # loading the model folder, then at most SECONDS of rendering
    assert watch.latencies and max(watch.latencies) < 2, [(round(at - started, 2), round(seconds, 2))
                                                          for at, seconds in zip(watch.at, watch.latencies)]
    if model == "hostile-power":  # it renders until the limit: polled all along
        assert len(watch.latencies) >= SECONDS * 2, watch.latencies
    assert watch.server_peak - before < SERVER_GROWTH, (watch.server_peak - before) / 2**20
    assert watch.worker_peak < WORKER_RSS, watch.worker_peak / 2**20
    succeeds(server)  # a fresh renderer takes the next prompt


def test_interrupt_answers_at_once_and_ends_a_hostile_render(server):
    succeeds(server)
    worker = renderer(server)
    assert worker is not None
    idle = sum(worker.cpu_times()[:2])
    status, body = server.queue(caption("hostile-power"))
    assert status == 200, body
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(worker.cpu_times()[:2]) - idle < 0.5:  # the power is computing
        time.sleep(0.1)
    assert sum(worker.cpu_times()[:2]) - idle >= 0.5, "the render never started"
    asked = time.monotonic()
    assert server.request("POST", "/interrupt", {})[0] == 200
    assert time.monotonic() - asked < 2
    entry = server.wait(body["prompt_id"], timeout=60)
    assert failure(entry)["event"] == "execution_interrupted", failure(entry)
    assert time.monotonic() - asked < SECONDS / 2  # the interrupt ended it, not the time limit
    assert not worker.is_running()
    succeeds(server)
