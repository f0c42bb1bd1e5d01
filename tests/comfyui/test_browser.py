"""The shipped workflows in a real browser (Debian's chromium via Playwright) on the real ComfyUI frontend:
v0.3.64's own (1.27.10) and today's (``server.TODAY_FRONTEND``), on its classic canvas and on Nodes 2.0."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .browser import FOOTPRINTS, HOME_OFFSET, HOME_VIEW, chromium_path, comfy_page, overlaps
from .conftest import skip_or_fail
from .server import ROOT, SHIPPED, TODAY_FRONTEND, ComfyServer, comfyui_dir, shipped, today_frontend

WORKFLOWS = [shipped(twin) for twin in SHIPPED]
SCREENSHOT = ROOT / "docs" / "comfyui_compare.png"
SETUPS = {"v0.3.64-frontend": (False, False), "today-classic": (True, False), "today-nodes-2": (True, True)}


@pytest.fixture(scope="module")
def today_server(comfy, comfy_base, tmp_path_factory):
    """A second server on today's frontend, with the same models (its own input, user and output folders)."""
    static = today_frontend()
    if static is None:
        skip_or_fail(f"today's frontend is not installed: pip install --no-deps --target "
                     f".venv/frontend-{TODAY_FRONTEND} comfyui-frontend-package=={TODAY_FRONTEND} (.ci/run does)")
    base = tmp_path_factory.mktemp("comfy-today")
    (base / "models").symlink_to(comfy_base / "models", target_is_directory=True)
    server = ComfyServer(comfyui_dir(), base, args=("--front-end-root", str(static))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=list(SETUPS))
def page(request, comfy):
    from importlib.util import find_spec

    if find_spec("playwright") is None:
        skip_or_fail("playwright is not installed (requirements-test.txt)")
    if chromium_path() is None:
        skip_or_fail("no chromium: apt-get install chromium (.ci/run does)")
    today, nodes_2 = SETUPS[request.param]
    server = request.getfixturevalue("today_server") if today else comfy
    with comfy_page(server, nodes_2=nodes_2) as page:
        page.setup = request.param
        page.console = []
        page.on("console", lambda m: page.console.append((m.type, m.text, (m.location or {}).get("url", ""))))
        yield page


def load(page, workflow: Path) -> list[dict]:
    page.evaluate("([ui, name]) => window.app.loadGraphData(ui, true, true, name)",
                  [json.loads(workflow.read_text()), workflow.stem])
    page.wait_for_timeout(800)
    return page.evaluate("""() => window.app.graph._nodes.map((n) => ({
        id: n.id, type: n.type, known: !!LiteGraph.registered_node_types[n.type], errors: !!n.has_errors}))""")


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=list(SHIPPED))
def test_every_shipped_workflow_loads_with_no_missing_red_or_overlapping_node(page, workflow):
    ds = json.loads(workflow.read_text())["extra"]["ds"]
    assert ds == {"scale": 1, "offset": HOME_OFFSET}  # opens at zoom 1 with its nodes in sight
    nodes = load(page, workflow)
    assert "Invalid workflow" not in page.inner_text("body")  # the frontend's schema check passed
    assert len(nodes) == len(json.loads(workflow.read_text())["nodes"])
    assert [n for n in nodes if not n["known"] or n["errors"]] == []
    footprints = page.evaluate(FOOTPRINTS)
    assert len(footprints) == len(nodes) and overlaps(footprints) == [], footprints


def run_from_page(page, workflow: Path, node_type: str) -> str:
    """Queue the workflow as a user does and wait for the text the node shows after running."""
    load(page, workflow)
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.wait_for_function(f"""() => {{
        const node = window.app.graph._nodes.find((n) => n.type === "{node_type}");
        const widget = node && (node.widgets || []).find((w) => w.name === "scr_output");
        return widget && widget.value && widget.value.length > 0;
    }}""", timeout=180_000)
    return page.evaluate(f"""() => window.app.graph._nodes.find((n) => n.type === "{node_type}")
        .widgets.find((w) => w.name === "scr_output").value""")


def shown_text_boxes(page) -> list[dict]:
    """The result boxes people see: their label and text, and whether they are on screen."""
    return page.evaluate("""() => [...document.querySelectorAll('textarea.scr-output')].map((box) => {
        const r = box.getBoundingClientRect();
        return {label: box.parentElement.querySelector('.scr-output-label')?.textContent, text: box.value,
                visible: r.width > 50 && r.height > 30};
    })""")


def test_queued_from_the_page_the_caption_appears_on_the_node(page):
    text = run_from_page(page, shipped("scr_caption"), "SCRCaption")
    assert text.strip() and "a " in text  # a testbed scene: a real caption, e.g. "a cat and a fork."
    boxes = shown_text_boxes(page)
    assert any(b["text"] == text and b["visible"] and b["label"] == "result" for b in boxes), boxes


def test_comparison_workflow_runs_and_is_shown(page, tmp_path):
    text = run_from_page(page, shipped("scr_compare_heatmap"), "SCRCaptionCompare")
    assert "vanilla:" in text and "SCR:" in text
    page.wait_for_function("""() => window.app.graph._nodes.some((n) => n.type === "PreviewImage" && n.imgs
        && n.imgs.length && n.imgs[0].complete) || [...document.querySelectorAll('img')].some((i) =>
        i.src.includes('/view') && i.complete && i.naturalWidth > 0)""", timeout=60_000)
    page.evaluate(HOME_VIEW)
    page.wait_for_timeout(500)
    readme_shot = os.environ.get("SCR_UPDATE_SCREENSHOT") == "1" and page.setup == "today-classic"
    target = SCREENSHOT if readme_shot else tmp_path / "compare.png"
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000


def test_the_pack_uses_only_the_public_frontend_api(page):
    """The pack's script loaded (its extension registered) with no deprecation or error from it."""
    assert "scr.nodeText" in page.evaluate("() => window.app.extensions.map((e) => e.name)")
    ours = [c for c in page.console if "scr_text" in c[2] or "scr_text" in c[1] or "widgets.js" in c[1]
            or ("deprecat" in c[1].lower() and ("inputEl" in c[1] or "ComfyWidgets" in c[1]))]
    assert ours == []
    source = (ROOT / "web" / "scr_text.js").read_text()
    assert "scripts/widgets.js" not in source and "inputEl" not in source
