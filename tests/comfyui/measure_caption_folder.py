"""docs/comfyui.md's Caption Folder memory figure: a real ComfyUI server captions a folder of 1024x1024 images
with the bundled testbed, and its peak RSS is compared with its level once the model is loaded.

    .venv/bin/python -m tests.comfyui.measure_caption_folder --images 2000

(``COMFYUI_DIR`` or ``../shared/comfyui``; the images are written into a temporary folder first.)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from PIL import Image

from .server import ComfyServer, PeakRSS, comfyui_dir

TWIN = Path(__file__).parent / "workflows" / "scr_folder_captions.api.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base, data = Path(tmp) / "comfy", Path(tmp) / "data"
        (base / "models" / "LLM").mkdir(parents=True)
        data.mkdir()
        for index in range(args.images):  # a little noise, so each PNG is a real ~1 MB decode
            Image.effect_noise((args.size, args.size), 40 + index % 50).convert("RGB").save(data / f"{index:05d}.png")
        server = ComfyServer(comfyui_dir(), base, env={"SCR_ALLOWED_FOLDERS": str(data)}).start()
        try:
            prompt = json.loads(TWIN.read_text())
            prompt["3"]["inputs"].update(folder=str(data), batch_size=args.batch_size,
                                          max_new_tokens=args.max_new_tokens)
            warm = json.loads(json.dumps(prompt))
            warm["3"]["inputs"]["filter"] = "00000.png"
            server.run(warm, timeout=600)
            (data / "00000.txt").unlink()
            loaded = server.rss()
            started = time.time()
            with PeakRSS(server) as peak:
                entry = server.run(prompt, timeout=24 * 3600)
            seconds = time.time() - started
        finally:
            server.stop()
    report = entry["outputs"]["3"]["text"][0] if entry["status"]["status_str"] == "success" else entry["status"]
    print(report)
    print(f"{args.images} images of {args.size}x{args.size}, batch {args.batch_size}: {seconds:.0f} s; server RSS "
          f"with the model loaded {loaded / 2**20:.0f} MiB, peak while captioning {peak.bytes / 2**20:.0f} MiB "
          f"(+{(peak.bytes - loaded) / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
