"""The shipped workflows in a real browser (Debian's chromium via Playwright) on the real ComfyUI frontend."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .browser import chromium_path, comfy_page
from .conftest import skip_or_fail
from .server import ROOT

WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
SCREENSHOT = ROOT / "docs" / "comfyui_compare.png"


@pytest.fixture(scope="module")
def page(comfy):
    from importlib.util import find_spec

    if find_spec("playwright") is None:
        skip_or_fail("playwright is not installed (requirements-test.txt)")
    if chromium_path() is None:
        skip_or_fail("no chromium: apt-get install chromium (.ci/run does)")
    with comfy_page(comfy) as page:
        yield page


def load(page, workflow: Path) -> list[dict]:
    page.evaluate("(ui) => window.app.loadGraphData(ui)", json.loads(workflow.read_text()))
    page.wait_for_timeout(500)
    return page.evaluate("""() => window.app.graph._nodes.map((n) => ({
        id: n.id, type: n.type, known: !!LiteGraph.registered_node_types[n.type], errors: !!n.has_errors}))""")


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.stem for w in WORKFLOWS])
def test_every_shipped_workflow_loads_with_no_missing_or_red_node(page, workflow):
    nodes = load(page, workflow)
    assert "Invalid workflow" not in page.inner_text("body")  # the frontend's schema check passed
    assert len(nodes) == len(json.loads(workflow.read_text())["nodes"])
    assert [n for n in nodes if not n["known"] or n["errors"]] == []


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


def test_queued_from_the_page_the_caption_appears_on_the_node(page):
    text = run_from_page(page, ROOT / "workflows" / "scr_caption.json", "SCRCaption")
    assert text.strip()


def test_comparison_workflow_runs_and_is_shown(page, tmp_path):
    text = run_from_page(page, ROOT / "workflows" / "scr_compare_heatmap.json", "SCRCaptionCompare")
    assert "vanilla:" in text and "SCR:" in text
    page.wait_for_function("""() => window.app.graph._nodes.some((n) => n.type === "PreviewImage" && n.imgs
        && n.imgs.length && n.imgs[0].complete)""", timeout=60_000)
    page.wait_for_timeout(500)
    target = SCREENSHOT if os.environ.get("SCR_UPDATE_SCREENSHOT") == "1" else tmp_path / "compare.png"
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000
