"""What a posted workflow can cost, on a real server of this module's own with small budgets (the
``SCR_*`` variables of ``scr_core.budgets``): memory per prompt and per batch read against the server's
RSS, downloads that are cancelled, trickle, are too large or are cut by a killed server, checked on
the disk and in the server's open connections and files (psutil)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from .conftest import comfy_source, downloads_from
from .fake_hub import Stream
from .server import ComfyServer, free_port
from .test_hostile import error_of, loading
from .test_server import caption_folder_growth, failure, twin

FOLDER_PIXELS, BATCH_PIXELS = 20_000_000, 4_000_000
DOWNLOAD_SECONDS, DOWNLOAD_GB = 12, 0.05


@pytest.fixture(scope="module")
def server(fake_hub, tmp_path_factory):
    source = comfy_source()
    base, data = tmp_path_factory.mktemp("budget-base"), tmp_path_factory.mktemp("budget-data")
    (base / "models" / "LLM").mkdir(parents=True)
    (base / "input").mkdir()
    started = ComfyServer(source, base, env={
        "SCR_ALLOWED_FOLDERS": str(data), **downloads_from(fake_hub), "SCR_DOWNLOAD_SECONDS": str(DOWNLOAD_SECONDS),
        "SCR_DOWNLOAD_MAX_GB": str(DOWNLOAD_GB), "SCR_MAX_FOLDER_PIXELS": str(FOLDER_PIXELS),
        "SCR_MAX_BATCH_PIXELS": str(BATCH_PIXELS)}).start()
    started.data = data
    yield started
    started.stop()


def models(server) -> Path:
    return server.base / "models" / "LLM"


def staging(server, name: str) -> list[Path]:
    return list(models(server).glob(f".{name}.download-*"))


def used_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def processes(server) -> list[psutil.Process]:
    parent = psutil.Process(server.process.pid)
    return [parent, *parent.children(recursive=True)]


def hub_connections(server, fake_hub) -> list:
    port = int(fake_hub.url.rsplit(":", 1)[1])
    found = []
    for proc in processes(server):
        try:
            found += [c for c in proc.net_connections(kind="tcp") if c.raddr and c.raddr.port == port]
        except psutil.NoSuchProcess:
            pass
    return found


def files_open_under(server, folder: Path) -> list[str]:
    found = []
    for proc in processes(server):
        try:
            found += [f.path for f in proc.open_files() if str(folder) in f.path]
        except psutil.NoSuchProcess:
            pass
    return found


def until(check, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def checkpoint_files() -> dict[str, bytes]:
    from scr_core import default_model

    source = Path(default_model()[0])
    return {p.relative_to(source).as_posix(): p.read_bytes() for p in source.rglob("*") if p.is_file()}


# -- downloads -----------------------------------------------------------------------------------------

def test_a_cancelled_download_stops_its_transfer_and_frees_the_disk(server, fake_hub):
    fake_hub.repos["slow/big"] = {"config.json": b"{}", "model.safetensors": Stream(40_000_000, 1_000_000, 0.1)}
    before = used_bytes(models(server))
    status, body = server.queue(loading("slow/big", download=True))
    assert status == 200, body
    assert until(lambda: fake_hub.open_transfers == 1 and staging(server, "slow--big")
                 and used_bytes(staging(server, "slow--big")[0]) > 2_000_000, 30)
    assert hub_connections(server, fake_hub)  # the transfer is running
    assert server.request("POST", "/interrupt", {})[0] == 200
    entry = server.wait(body["prompt_id"], timeout=30)
    assert failure(entry)["event"] == "execution_interrupted"
    assert until(lambda: fake_hub.open_transfers == 0, 5), "the hub still sends"
    assert until(lambda: not hub_connections(server, fake_hub), 5), hub_connections(server, fake_hub)
    assert not files_open_under(server, models(server))  # no file kept open, deleted or not
    assert not staging(server, "slow--big") and used_bytes(models(server)) == before


def test_a_hub_that_trickles_is_given_up_after_the_download_time_limit(server, fake_hub):
    fake_hub.repos["trickle/tiny"] = {"config.json": b"{}", "model.safetensors": Stream(100_000, 64, 2)}
    started = time.time()
    message = error_of(server.run(loading("trickle/tiny", download=True), timeout=120))
    assert f"it took longer than {DOWNLOAD_SECONDS} s (SCR_DOWNLOAD_SECONDS)" in message
    assert DOWNLOAD_SECONDS - 1 < time.time() - started < DOWNLOAD_SECONDS + 15
    assert until(lambda: fake_hub.open_transfers == 0 and not hub_connections(server, fake_hub), 5)
    assert not staging(server, "trickle--tiny") and not (models(server) / "trickle--tiny").exists()


def test_a_repo_larger_than_the_size_cap_is_refused_from_its_file_listing(server, fake_hub):
    fake_hub.repos["huge/model"] = {"config.json": b"{}", "model.safetensors": Stream(10**9, 10**6, 0.01)}
    fake_hub.requests.clear()
    message = error_of(server.run(loading("huge/model", download=True), timeout=60))
    assert f"more than {DOWNLOAD_GB:g} GB (SCR_DOWNLOAD_MAX_GB)" in message
    assert not any("model.safetensors" in r and r.startswith("GET") for r in fake_hub.requests)
    assert not staging(server, "huge--model") and not (models(server) / "huge--model").exists()


def test_a_downloaded_onnx_shaped_repo_is_kept_out_of_load_onnx_vlm(server, fake_hub):
    fake_hub.repos["evil/onnx"] = {**checkpoint_files(), "scr_config.json": b"{}"}
    server.run(loading("evil/onnx", download=True))  # downloads; loading it as a checkpoint may work or not
    folder = models(server) / "evil--onnx"
    assert (folder / "scr_config.json").is_file() and (folder / ".scr_downloaded.json").is_file()
    options = server.get("/object_info/SCRLoadOnnxVLM")["SCRLoadOnnxVLM"]["input"]["required"]["model"][1]
    assert "evil--onnx" not in json.dumps(options)
    prompt = twin("scr_caption")
    prompt["2"] = {"class_type": "SCRLoadOnnxVLM", "inputs": {"model": options["options"][0], "path": str(folder),
                                                              "provider": "cpu"}}
    assert "was downloaded from the hub by a workflow" in error_of(server.run(prompt))


# -- memory ----------------------------------------------------------------------------------------------

def folder_of(server, name: str, count: int, size: int) -> Path:
    folder = server.data / name
    folder.mkdir()
    for index in range(count):
        Image.new("L", (size, size), 30 * index).save(folder / f"{name}{index}.png")
    return folder


def loaders(folders: list[Path]) -> dict:
    """A Load Image Folder per folder, each into Save Captions (output folder), so every loader runs."""
    prompt = {"t": {"class_type": "PrimitiveString", "inputs": {"value": "a caption"}}}
    for index, folder in enumerate(folders):
        prompt[f"l{index}"] = {"class_type": "SCRLoadImageFolder",
                               "inputs": {"folder": str(folder), "filter": "", "recursive": False, "limit": 0}}
        prompt[f"s{index}"] = {"class_type": "SCRSaveCaptions",
                               "inputs": {"captions": ["t", 0], "paths": [f"l{index}", 1], "mode": "output folder",
                                          "subfolder": f"held{index}", "overwrite": True}}
    return prompt


def test_folder_loads_of_one_prompt_and_the_cache_hold_at_most_the_folder_budget(server):
    """Four loads of 9 MP each (float tensors: 108 MB each) under a 20 MP budget: two are held, the third
    is refused with one line; a later prompt's loads fit again once ComfyUI dropped the earlier ones."""
    folders = [folder_of(server, f"held{index}", 1, 3000) for index in range(4)]
    baseline = server.rss()
    message = error_of(server.run(loaders(folders)))
    assert f"more than {FOLDER_PIXELS:,} pixels in total (SCR_MAX_FOLDER_PIXELS)" in message
    assert "beside 18,000,000 that earlier Load Image Folder outputs still hold" in message
    bound = FOLDER_PIXELS * 12 + 80 * 2**20  # what the budget lets the cache hold, plus slack
    assert server.rss() - baseline < bound
    later = loaders(folders[2:])  # other loads: ComfyUI drops the first two from its cache at the start
    entry = server.run(later)
    assert entry["status"]["status_str"] == "success", failure(entry)
    assert server.rss() - baseline < bound


def test_caption_folder_decodes_at_most_the_batch_budget_at_once(server):
    """Eight 16 MP images at batch_size 8 (512 MB as decoded RGB together) are captioned a run of one at a
    time under a 4 MP batch budget."""
    folder = folder_of(server, "scans", 8, 4000)
    entry, grown = caption_folder_growth(server, folder, "scans0", batch_size=8, max_new_tokens=2)
    assert "8 caption(s) written" in entry["outputs"]["3"]["text"][0]
    assert grown < 250 * 2**20, grown


def test_load_image_folder_reports_a_corrupt_image_and_loads_the_others(server):
    folder = folder_of(server, "mixed", 2, 16)
    (folder / "broken.png").write_bytes(b"not a picture")
    prompt = loaders([folder])
    prompt["s0"]["inputs"].update(subfolder="mixed", captions=["l0", 1])  # a caption per image: its path
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", failure(entry)
    report = entry["outputs"]["l0"]["text"][0]
    assert "2 image(s) loaded, 1 failed" in report and "broken.png: cannot read image" in report
    assert sorted(p.name for p in (server.base / "output" / "mixed").iterdir()) == ["mixed0.txt", "mixed1.txt"]


def vlm_choices(server) -> list[str]:
    return server.get("/object_info/SCRLoadVLM")["SCRLoadVLM"]["input"]["required"]["model"][1]["options"]


# -- a killed server -------------------------------------------------------------------------------------

def test_a_server_killed_mid_download_leaves_nothing_listed_after_a_restart(server, fake_hub):
    fake_hub.repos["cut/model"] = {"config.json": b"{}", "model.safetensors": Stream(40_000_000, 100_000, 0.1)}
    status, body = server.queue(loading("cut/model", download=True))
    assert status == 200, body
    assert until(lambda: any((s / "config.json").is_file() for s in staging(server, "cut--model")), 30)
    assert not [o for o in vlm_choices(server) if ".download-" in o]  # a staging folder is never listed
    os.kill(server.process.pid, signal.SIGKILL)  # the server alone, as the OOM killer would
    server.process.wait(20)
    assert until(lambda: fake_hub.open_transfers == 0, 10), "the orphaned download process still fetches"
    assert staging(server, "cut--model")  # what the crash left
    server.log.close()
    server.port = free_port()
    server.url = f"http://127.0.0.1:{server.port}"
    server.start()
    assert not staging(server, "cut--model")
    assert not [o for o in vlm_choices(server) if ".download-" in o]
