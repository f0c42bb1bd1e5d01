"""A real ComfyUI server for the pack's tests: ComfyUI's own ``main.py`` from an unmodified source tree,
with the pack linked into ``<base>/custom_nodes`` and a tiny saved model in ``<base>/models/LLM``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACK_NAME = "ComfyUI-SCR"


def comfyui_dir() -> Path | None:
    """``COMFYUI_DIR``, else ``../shared/comfyui`` beside the checkout (the layout CI has)."""
    configured = os.environ.get("COMFYUI_DIR")
    candidates = [Path(configured)] if configured else [ROOT.parent / "shared" / "comfyui"]
    return next((c for c in candidates if (c / "main.py").is_file()), None)


# The shipped UI workflows by their API twin's name. ComfyUI's template browser shows a pack's template by
# its file name (as title and, with "_" as spaces, as the card's description) and ``<name>.jpg`` as its
# thumbnail; it has no other field for them, so the names say what each workflow does.
SHIPPED = {
    "scr_caption": "SCR_caption_an_image_and_see_its_heatmap",
    "scr_compare_heatmap": "SCR_compare_vanilla_and_SCR_captions_side_by_side",
    "scr_folder_captions": "SCR_caption_a_folder_into_txt_files_for_LoRA_training",
    "scr_caption_clip": "SCR_caption_a_video_clip_and_see_its_slice_heatmap",
}


def shipped(twin: str) -> Path:
    return ROOT / "workflows" / f"{SHIPPED[twin]}.json"


TODAY_FRONTEND = "1.58.1"  # comfyui-frontend-package of today's ComfyUI (v0.3.64 bundles 1.27.10)


def today_frontend() -> Path | None:
    """Its static folder for ``--front-end-root``: ``SCR_FRONTEND_ROOT``, else where .ci/run installs it
    (``pip install --no-deps --target .venv/frontend-1.58.1 comfyui-frontend-package==1.58.1``)."""
    configured = os.environ.get("SCR_FRONTEND_ROOT")
    root = Path(configured) if configured else ROOT / ".venv" / f"frontend-{TODAY_FRONTEND}"
    static = next((p for p in (root, root / "comfyui_frontend_package" / "static") if (p / "index.html").is_file()),
                  None)
    return static


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PeakRSS:
    """``with PeakRSS(server) as peak:`` samples the server's RSS every 50 ms; ``peak.bytes`` is the highest."""

    def __init__(self, server) -> None:
        import threading

        self.server, self.bytes, self.done = server, 0, threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.done.is_set():
            self.bytes = max(self.bytes, self.server.rss())
            time.sleep(0.05)

    def __enter__(self) -> "PeakRSS":
        self.bytes = self.server.rss()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(5)


class ComfyServer:
    """Start, talk to and stop one server (always by its PID)."""

    def __init__(self, comfy: Path, base: Path, env: dict | None = None, args: tuple[str, ...] = ()) -> None:
        self.comfy, self.base, self.port = comfy, base, free_port()
        self.extra_env, self.extra_args = env or {}, list(args)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / f"server-{self.port}.log"
        self.client_id = str(uuid.uuid4())
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "ComfyServer":
        (self.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / PACK_NAME
        if not link.exists():
            link.symlink_to(ROOT, target_is_directory=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "OMP_NUM_THREADS": "2", **self.extra_env}
        command = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--base-directory", str(self.base), "--disable-auto-launch", "--database-url", "sqlite:///:memory:", *self.extra_args]
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=self.comfy, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log_text()[-4000:]}")
            try:
                self.get("/system_stats")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not start in {timeout} s:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        if getattr(self, "log", None):
            self.log.close()

    def rss(self) -> int:
        """The server process's resident memory now, in bytes (Linux)."""
        with open(f"/proc/{self.process.pid}/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- HTTP -----------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else {}

    def get(self, path: str) -> dict:
        status, body = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status} {body}")
        return body

    def queue(self, prompt: dict) -> tuple[int, dict]:
        return self.request("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id})

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        """The prompt's history entry once it finished (success or error)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and \
                    entry["status"].get("status_str") in ("success", "error"):
                return entry
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, prompt: dict, timeout: float = 300) -> dict:
        status, body = self.queue(prompt)
        if status != 200 or body.get("node_errors"):
            raise AssertionError(f"prompt refused: HTTP {status} {body}")
        return self.wait(body["prompt_id"], timeout)
