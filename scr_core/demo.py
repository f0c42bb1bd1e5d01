"""``python -m scr_core demo``: one scene, captioned with and without SCR, plus its heatmap."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from .cli import _timing_line
from .config import SCRConfig
from .heatmap import render_heatmap


def demo_scene() -> Image.Image:
    """A fixed, drawn scene (no file needed): a few coloured shapes on an off-white background."""
    image = Image.new("RGB", (336, 336), (245, 243, 238))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 60, 140, 160), fill=(200, 30, 30))
    draw.rectangle((190, 50, 290, 150), fill=(30, 60, 200))
    draw.polygon([(110, 300), (170, 190), (230, 300)], fill=(240, 200, 20))
    return image


def run_demo(pipe, out_dir: Path) -> None:
    image = demo_scene()
    out_dir.mkdir(parents=True, exist_ok=True)
    vanilla = pipe.caption(image, scr=None, max_new_tokens=24)[0]
    scr = pipe.caption(image, scr=SCRConfig(), max_new_tokens=24)[0]
    diagnosis, plan = scr.diagnosis, scr.plan
    print(f"vanilla: {vanilla.text}")
    print(f"SCR:     {scr.text}")
    for grid in plan.grids:
        print(f"plan: {grid.height}x{grid.width} grid, {grid.num_sources} sources at (row, col) "
              f"{[divmod(s, grid.width) for s in grid.sources]}, {len(grid.neighbours)} neighbours, "
              f"λ={plan.lam}, hook layers {plan.hook_layers[0]}-{plan.hook_layers[-1]}")
    print(f"entropy: {diagnosis.entropy:.3f} nats")
    print(f"timings vanilla: {_timing_line(vanilla.timings)}")
    print(f"timings SCR:     {_timing_line(scr.timings)}")
    image.save(out_dir / "scene.png")
    heatmap = out_dir / "heatmap.png"
    render_heatmap(image, diagnosis.maps[0], plan.grids[0]).save(heatmap)
    print(f"heatmap: {heatmap}")
