"""Regenerate ``workflows/*.json`` (UI format, what users drag in) from the API twins in
``tests/comfyui/workflows/*.api.json`` through the real frontend: load, lay out, serialize. The layout
leaves room for what every renderer draws: today's frontend (classic and Nodes 2.0) is measured first
(when installed, see ``server.today_frontend``), then v0.3.64's own frontend lays out and serializes
(so the files load on both).

    .venv/bin/python -m tests.comfyui.make_ui_workflows
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .browser import ARRANGE, FOOTPRINTS, HOME_VIEW, comfy_page
from .server import ROOT, ComfyServer, comfyui_dir, shipped, today_frontend

TWINS = Path(__file__).parent / "workflows"


# The colour word of each testbed class's RGB (scr_core.testbed.scenes.OBJECT_CLASSES), for the Notes.
COLOUR_WORDS = {"fork": "red", "knife": "blue", "cup": "green", "plate": "orange", "dog": "purple", "cat": "teal",
                "ball": "pink", "box": "brown"}

# What each shipped workflow's Note adds to what the bundled model sees (``canvas_note``).
EXPECT = {
    "scr_caption": "The caption node shows the caption with SCR's plan from the Diagnose node; the heatmap shows "
                   "the source patches SCR spreads attention from (red) and to (cyan).",
    "scr_compare_heatmap": "Vanilla and SCR captions are often the same on this small model: SCR moves a little "
                           "attention between patches, which changes what a large VLM mentions; its effect shows "
                           "on real VLMs (Load VLM: a model under models/LLM).",
    "scr_folder_captions": "Every image of input/scr_testbed gets a .txt (beside it, or mirrored into an output "
                           "folder); the report lists empty or degenerate captions. Other presets than "
                           "descriptive give word loops on this model.",
    "scr_caption_clip": "Load Video reads input/scr_testbed_clip.mp4 (six scenes, a second each); only the "
                        "frames sampled are decoded. This model has no video processor, so its 4 sampled frames "
                        "are one multi-image prompt and the caption tends to name the last scenes; Qwen2-VL, "
                        "Qwen2.5-VL, Qwen3-VL and LLaVA-OneVision read the clip natively as video. The heatmap is "
                        "a strip, one panel per slice (here a frame). Frames from a video loader as an IMAGE "
                        "batch: connect them to image and set image_batch_is to one clip.",
}


def canvas_note(twin: str) -> str:
    """The Note each shipped workflow carries: what the bundled model sees, and what to expect of SCR on it."""
    from scr_core.testbed.scenes import OBJECT_CLASSES

    shapes = ", ".join(f"{COLOUR_WORDS[c.name]} {c.shape} = {c.name}" for c in OBJECT_CLASSES)
    return ("The bundled testbed model (1.8 M parameters) was trained on synthetic scenes of coloured shapes, "
            f"each named as an object: {shapes}. So 'a cat and a fork.' means a teal diamond and a red cross. "
            f"{EXPECT[twin]}")


ADD_NOTE = """
(text) => {
  const note = window.LiteGraph.createNode("Note");
  note.widgets[0].value = text;
  note.size = [440, 240];
  note.title = "What the bundled model sees";
  window.app.graph.add(note);
}
"""


def without_nulls(value):
    """JavaScript's ``undefined`` arrives as None; the frontend's schema rejects such keys, so drop them."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def measured_sizes(base: Path) -> dict[str, dict[str, list[float]]]:
    """Per twin, per node id, the largest [width, height] today's frontend draws on either renderer."""
    static = today_frontend()
    if static is None:
        print("today's frontend is not installed: laying out for v0.3.64's frontend only")
        return {}
    sizes: dict[str, dict[str, list[float]]] = {}
    server = ComfyServer(comfyui_dir(), base, args=("--front-end-root", str(static))).start()
    try:
        for nodes_2 in (False, True):
            with comfy_page(server, nodes_2=nodes_2) as page:
                for twin in sorted(TWINS.glob("*.api.json")):
                    page.evaluate("([api, name]) => window.app.loadApiJson(api, name)", [json.loads(twin.read_text()), twin.stem])
                    page.wait_for_timeout(800)
                    for node, (_, _, w, h) in page.evaluate(FOOTPRINTS).items():
                        old = sizes.setdefault(twin.name, {}).get(node, [0, 0])
                        sizes[twin.name][node] = [max(old[0], w), max(old[1], h)]
    finally:
        server.stop()
    return sizes


def thumbnail(server, page, target: Path) -> None:
    """The template card's picture: the workflow after a run (captions and heatmap on the nodes), fitted."""
    import io
    import time

    from PIL import Image

    page.evaluate("() => window.app.queuePrompt(0, 1)")
    deadline = time.time() + 300
    time.sleep(1)
    while time.time() < deadline:
        queue = server.get("/queue")
        if not queue["queue_running"] and not queue["queue_pending"]:
            break
        time.sleep(0.5)
    page.wait_for_timeout(1500)
    size = page.viewport_size
    page.set_viewport_size({"width": 2400, "height": 1500})  # fitted at a zoom where the canvas draws text
    page.wait_for_timeout(500)
    page.mouse.click(1200, 750)  # focus the canvas, then fit the view to every node
    page.keyboard.press(".")
    page.wait_for_timeout(800)
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    page.set_viewport_size(size)
    shot.thumbnail((640, 400))
    shot.save(target, format="JPEG", quality=85)
    print(f"wrote {target}")


def icon(target: Path = ROOT / "docs" / "icon.png") -> None:
    """The registry icon (pyproject ``[tool.comfy] Icon``): a 3x3 patch neighbourhood, the source red, its
    neighbours cyan, over the testbed's demo scene, drawn by the pack's own heatmap colours."""
    from PIL import Image, ImageDraw

    from scr_core.demo import demo_scene
    from scr_core.heatmap import NEIGHBOUR_COLOUR, SOURCE_COLOUR

    picture = demo_scene()[0].resize((400, 400), Image.BICUBIC)
    draw = ImageDraw.Draw(picture)
    cell = 400 // 5
    for row in range(1, 4):
        for col in range(1, 4):
            box = (col * cell + 4, row * cell + 4, (col + 1) * cell - 4, (row + 1) * cell - 4)
            centre = (row, col) == (2, 2)
            draw.rectangle(box, outline=SOURCE_COLOUR if centre else NEIGHBOUR_COLOUR, width=12 if centre else 6)
    picture.save(target, format="PNG", optimize=True)
    print(f"wrote {target}")


def main() -> None:
    icon()
    with tempfile.TemporaryDirectory() as base:
        sizes = measured_sizes(Path(base))
        server = ComfyServer(comfyui_dir(), Path(base)).start()
        try:
            with comfy_page(server) as page:
                for twin in sorted(TWINS.glob("*.api.json")):
                    page.evaluate("([api, name]) => window.app.loadApiJson(api, name)", [json.loads(twin.read_text()), twin.stem])
                    page.wait_for_timeout(500)
                    page.evaluate(ADD_NOTE, canvas_note(twin.name.removesuffix(".api.json")))
                    page.evaluate(ARRANGE, sizes.get(twin.name, {}))
                    page.evaluate(HOME_VIEW)  # saved as the file's view: it opens at zoom 1, nodes in sight
                    ui = without_nulls(page.evaluate("() => window.app.graph.serialize()"))
                    for node in ui["nodes"]:  # seeds stay fixed: greedy captions are cached, not re-run
                        if "widgets_values" in node:
                            values = node["widgets_values"]
                            node["widgets_values"] = ["fixed" if v == "randomize" else v for v in values]
                    target = shipped(twin.name.removesuffix(".api.json"))
                    target.write_text(json.dumps(ui, indent=1) + "\n")
                    print(f"wrote {target}")
                    thumbnail(server, page, target.with_suffix(".jpg"))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
