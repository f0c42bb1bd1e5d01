"""A real browser on the real ComfyUI frontend: Debian's chromium driven by Playwright (from PyPI)."""

from __future__ import annotations

import shutil
from contextlib import contextmanager


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def comfy_page(server, width: int = 1600, height: int = 1000):
    """A page with the server's UI loaded (``window.app`` ready, the template dialog closed)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(server.url)
            page.wait_for_function("() => window.app && window.app.graph", timeout=60_000)
            page.wait_for_timeout(1500)
            page.keyboard.press("Escape")
            yield page
        finally:
            browser.close()


# Lays a loaded workflow out left to right by dependency depth, so shipped files read well.
ARRANGE = """
() => {
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
  for (const n of nodes) {
    const sizes = {PreviewImage: [420, 480], LoadImage: [320, 360], SCRCaptionCompare: [560, 420],
                   SCRCaption: [440, 420], SCRDiagnose: [420, 300], SCRSaveCaptions: [400, 260]};
    if (sizes[n.type]) n.size = sizes[n.type];
    const size = n.computeSize ? n.computeSize() : n.size;
    n.size = [Math.max(n.size[0], size[0]), Math.max(n.size[1], size[1])];
    widths[of(n)] = Math.max(widths[of(n)] || 0, n.size[0]);
  }
  const left = (d) => { let x = 40; for (let i = 0; i < d; i++) x += (widths[i] || 0) + 80; return x; };
  for (const n of [...nodes].sort((a, b) => a.id - b.id)) {
    const d = of(n);
    const row = (rows[d] = (rows[d] || 60));
    n.pos = [left(d), row];
    rows[d] = row + n.size[1] + 70;
  }
  window.app.graph.setDirtyCanvas(true, true);
}
"""
