"""One real ComfyUI server for the session (when a ComfyUI source tree is there)."""

from __future__ import annotations

import os
import shutil
from importlib.util import find_spec

import pytest

from .fake_hub import FakeHub
from .server import ComfyServer, comfyui_dir


@pytest.fixture(scope="session")
def comfy_base(tmp_path_factory, tiny_llava_dir):
    base = tmp_path_factory.mktemp("comfy-base")
    (base / "models" / "LLM").mkdir(parents=True)
    shutil.copytree(tiny_llava_dir, base / "models" / "LLM" / "tiny-random-llava")
    from scr_core.testbed.tiny_modern import build_tiny_gemma3, build_tiny_remote_code

    build_tiny_gemma3(base / "models" / "LLM" / "tiny-gemma3")  # a newer family: its options become widgets
    build_tiny_remote_code(base / "models" / "LLM" / "tiny-remote-code")  # ships its own modeling code
    (base / "input").mkdir()  # empty, as on a fresh install: the pack writes its sample scenes there
    from tests.extras import has_extra

    if has_extra("onnx") or os.environ.get("SCR_REQUIRE_EXTRAS") == "1":  # not in CI's floor job
        from export.exporter import ExportOptions, export

        from scr_core import default_model

        # the bundled testbed exported, for the ONNX loader
        export(ExportOptions(model=str(default_model()[0]), out=base / "models" / "LLM" / "testbed-onnx", k=8))
    return base


def skip_or_fail(reason: str) -> None:
    """Skip with the reason on a developer's machine; fail in CI (``SCR_REQUIRE_COMFYUI=1``), where
    these tests must run."""
    if os.environ.get("SCR_REQUIRE_COMFYUI") == "1":
        pytest.fail(f"SCR_REQUIRE_COMFYUI=1 but {reason}")
    pytest.skip(reason)


def comfy_source():
    """The ComfyUI source tree, with its requirements installed (else a skip, or a failure in CI)."""
    source = comfyui_dir()
    if source is None:
        skip_or_fail("no ComfyUI source tree: set COMFYUI_DIR (CI has ../shared/comfyui)")
    missing = [m for m in ("aiohttp", "comfyui_frontend_package", "alembic", "av") if find_spec(m) is None]
    if missing:
        skip_or_fail(f"ComfyUI's requirements are not installed ({', '.join(missing)} missing): "
                     f"pip install -r {source}/requirements.txt (without its torch lines) requests")
    return source


def downloads_from(hub: FakeHub) -> dict:
    """A server's environment for downloads on, from ``hub`` only, giving up on a silent hub after 20 s."""
    return {"SCR_ALLOW_DOWNLOADS": "1", "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_ETAG_TIMEOUT": "3",
            "HF_HUB_DOWNLOAD_TIMEOUT": "3", "SCR_DOWNLOAD_STALL_SECONDS": "20"}


@pytest.fixture(scope="session")
def fake_hub():
    hub = FakeHub().start()
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def comfy(comfy_base, fake_hub, tmp_path_factory):
    source = comfy_source()
    # the owner's choices a server can make: one dataset folder allowed, downloads on, from the fake hub only
    allowed = tmp_path_factory.mktemp("allowed-data")
    server = ComfyServer(source, comfy_base, env={"SCR_ALLOWED_FOLDERS": str(allowed),
                                                  **downloads_from(fake_hub)}).start()
    server.allowed, server.hub = allowed, fake_hub
    yield server
    server.stop()
