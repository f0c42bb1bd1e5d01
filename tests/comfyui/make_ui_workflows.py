"""Regenerate ``workflows/*.json`` (UI format, what users drag in) from the API twins in
``tests/comfyui/workflows/*.api.json`` through the real frontend: load, lay out, serialize.

    .venv/bin/python -m tests.comfyui.make_ui_workflows
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .browser import ARRANGE, comfy_page
from .server import ROOT, ComfyServer, comfyui_dir

TWINS = Path(__file__).parent / "workflows"


def without_nulls(value):
    """JavaScript's ``undefined`` arrives as None; the frontend's schema rejects such keys, so drop them."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def main() -> None:
    with tempfile.TemporaryDirectory() as base:
        server = ComfyServer(comfyui_dir(), Path(base)).start()
        try:
            with comfy_page(server) as page:
                for twin in sorted(TWINS.glob("*.api.json")):
                    page.evaluate("(api) => window.app.loadApiJson(api)", json.loads(twin.read_text()))
                    page.wait_for_timeout(500)
                    page.evaluate(ARRANGE)
                    ui = without_nulls(page.evaluate("() => window.app.graph.serialize()"))
                    for node in ui["nodes"]:  # seeds stay fixed: greedy captions are cached, not re-run
                        if "widgets_values" in node:
                            values = node["widgets_values"]
                            node["widgets_values"] = ["fixed" if v == "randomize" else v for v in values]
                    target = ROOT / "workflows" / twin.name.replace(".api.json", ".json")
                    target.write_text(json.dumps(ui, indent=1) + "\n")
                    print(f"wrote {target}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
