"""A real browser on the real ComfyUI frontend: Debian's chromium driven by Playwright (from PyPI)."""

from __future__ import annotations

import shutil
from contextlib import contextmanager


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def comfy_page(server, width: int = 1600, height: int = 1000, nodes_2: bool = False):
    """A page with the server's UI loaded (``window.app`` ready, the template dialog closed), on the classic
    canvas or (``nodes_2``) Nodes 2.0, the Vue renderer of today's frontend (a per-user setting, set back)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(server.url)
            page.wait_for_function("() => window.app && window.app.graph", timeout=60_000)
            page.wait_for_timeout(1500)
            page.keyboard.press("Escape")
            set_nodes_2(page, nodes_2)
            try:
                yield page
            finally:
                set_nodes_2(page, False)
        finally:
            browser.close()


def set_nodes_2(page, on: bool) -> None:
    page.evaluate("(on) => window.app.extensionManager.setting.set('Comfy.VueNodes.Enabled', on)", on)
    page.wait_for_timeout(800)


# Each node's footprint [x, y, width, height] in graph units (title included), as the current renderer
# draws it: Nodes 2.0 from the node's element (screen pixels over the canvas scale, so only their
# differences are graph positions), the classic canvas from the node's size, at least what its widgets need.
FOOTPRINTS = """
() => {
  const scale = window.app.canvas.ds.scale;
  const title = window.LiteGraph.NODE_TITLE_HEIGHT;
  const out = {};
  for (const n of window.app.graph._nodes) {
    const element = document.querySelector(`[data-node-id="${n.id}"]`);
    if (element) {
      const r = element.getBoundingClientRect();  // screen pixels: all four over the scale, one frame
      out[n.id] = [r.left / scale, r.top / scale, r.width / scale, r.height / scale];
    } else {
      const need = n.computeSize ? n.computeSize() : n.size;
      out[n.id] = [n.pos[0], n.pos[1] - title, Math.max(n.size[0], need[0]), Math.max(n.size[1], need[1]) + title];
    }
  }
  return out;
}
"""


# The view a workflow opens with: zoom 1, the graph's origin just clear of today's frontend's sidebar and
# breadcrumb, which float over the canvas (ARRANGE starts the nodes there).
HOME_OFFSET = [60, 40]
HOME_VIEW = f"""
() => {{
  const canvas = window.app.canvas;
  canvas.ds.scale = 1;
  canvas.ds.offset = {HOME_OFFSET};
  canvas.setDirty(true, true);
}}
"""


def overlaps(footprints: dict) -> list[tuple[str, str]]:
    """Pairs of nodes whose footprints intersect."""
    boxes = list(footprints.items())
    return [(a, b) for i, (a, (ax, ay, aw, ah)) in enumerate(boxes) for b, (bx, by, bw, bh) in boxes[i + 1:]
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah]


# Lays a loaded workflow out left to right by dependency depth, so shipped files read well; ``measured``
# holds the sizes other renderers need ({id: [width, height]}), so nodes do not overlap on any of them.
ARRANGE = """
(measured) => {
  const nodes = window.app.graph._nodes;
  const depth = {};
  const of = (n) => {
    if (depth[n.id] !== undefined) return depth[n.id];
    depth[n.id] = 0;
    let d = 0;
    for (const input of n.inputs || []) {
      if (input.link == null) continue;
      const link = window.app.graph.links[input.link];
      const source = window.app.graph.getNodeById(link.origin_id);
      d = Math.max(d, of(source) + 1);
    }
    return (depth[n.id] = d);
  };
  const rows = {};
  const widths = {};
  // Room a node takes on load beyond its saved size: Load Video grows (about 105 px each way) once its
  // preview has the video.
  const grows = {LoadVideo: [160, 160]};
  const grow = (n) => grows[n.type] || [0, 0];
  for (const n of nodes) {
    const sizes = {PreviewImage: [420, 480], LoadImage: [320, 360], LoadVideo: [400, 380],
                   SCRCaptionCompare: [560, 420], SCRCaption: [440, 420], SCRDiagnose: [420, 300],
                   SCRSaveCaptions: [400, 260]};
    if (sizes[n.type]) n.size = sizes[n.type];
    const size = n.computeSize ? n.computeSize() : n.size;
    const other = (measured || {})[n.id] || [0, 0];  // what other renderers need (title included)
    const title = window.LiteGraph.NODE_TITLE_HEIGHT;
    n.size = [Math.max(n.size[0], size[0], other[0]), Math.max(n.size[1], size[1], other[1] - title)];
    widths[of(n)] = Math.max(widths[of(n)] || 0, n.size[0] + grow(n)[0]);
  }
  const left = (d) => { let x = 40; for (let i = 0; i < d; i++) x += (widths[i] || 0) + 80; return x; };
  for (const n of [...nodes].sort((a, b) => a.id - b.id)) {
    const d = of(n);
    const row = (rows[d] = (rows[d] || 60));
    n.pos = [left(d), row];
    rows[d] = row + n.size[1] + grow(n)[1] + 70;
  }
  window.app.graph.setDirtyCanvas(true, true);
}
"""
