"""Heatmaps drawn from hand-built diagnoses: panels per image and tile, aspect ratio, one colour
scale, outlines where the plan says, clear errors, and no torch import (onnxruntime path)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scr_core.errors import InputError
from scr_core.heatmap import BAR_HEIGHT, FOOTER_HEIGHT, LEGEND_HEIGHT, PANEL_GAP, footer_width, render_heatmap, save_heatmap
from scr_core.layout import VisualGrid
from scr_core.plan import GridPlan, RedistributionPlan
from scr_core.results import Diagnosis

GREY = 128
ALPHA = 0.55
LEFT, RIGHT = (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)


def plan_grid(h, w, sources=(), neighbours=(), owners=()):
    return GridPlan(h, w, tuple(sources), tuple(neighbours), tuple(owners))


def grid(h, w, image=None, region=(0.0, 0.0, 1.0, 1.0)):
    return VisualGrid(0, h, w, np.arange(h * w, dtype=np.int64), image, region)


def diagnosis(maps, plans, grids=()):
    return Diagnosis(tuple(np.asarray(m, dtype=np.float64) for m in maps), 1.0,
                     RedistributionPlan(tuple(plans), 2.0, (1,)), tuple(grids))


def picture(width, height):
    return Image.new("RGB", (width, height), (GREY, GREY, GREY))


def expected_blend(value: float) -> np.ndarray:
    """What a flat grey pixel becomes under a normalised map value (0 = min, 1 = max)."""
    from matplotlib import colormaps

    colour = (np.asarray(colormaps["inferno"](value)[:3]) * 255).round()
    return (1 - ALPHA) * GREY + ALPHA * colour


def close(pixel, target, tol=3) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, dtype=np.float64) - target) <= tol))


def red(pixel) -> bool:
    r, g, b = (int(v) for v in pixel)
    return r > 200 and g < 90 and b < 90


def cyan(pixel) -> bool:
    r, g, b = (int(v) for v in pixel)
    return r < 60 and g > 170 and b > 200


def test_non_square_image_keeps_its_aspect_ratio():
    diag = diagnosis([np.random.default_rng(0).random((4, 8))], [plan_grid(4, 8)], [grid(4, 8, 0)])
    out = render_heatmap(picture(300, 150), diag)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape == (256 + FOOTER_HEIGHT, 512, 3)
    tall = render_heatmap(picture(150, 300), diag, size=200)
    assert tall.shape == (200 + FOOTER_HEIGHT, max(100, footer_width()), 3)  # narrower: white beside it


def test_two_images_two_panels_top_aligned_with_one_colour_scale():
    diag = diagnosis([np.full((4, 8), 1.0), np.full((8, 4), 3.0)], [plan_grid(4, 8), plan_grid(8, 4)],
                     [grid(4, 8, 0), grid(8, 4, 1)])
    out = render_heatmap([picture(300, 150), picture(100, 200)], diag)
    assert out.shape == (512 + FOOTER_HEIGHT, 512 + PANEL_GAP + 256, 3)
    assert (out[:512, 512:512 + PANEL_GAP] == 255).all()  # the gap
    assert (out[256:512, :512] == 255).all()  # first panel is shorter: white below it (top-aligned)
    # one normalisation over both maps: the first is the minimum, the second the maximum
    assert close(out[128, 256], expected_blend(0.0))
    assert close(out[256, 512 + PANEL_GAP + 128], expected_blend(1.0))


def test_tiles_form_one_mosaic_and_the_thumbnail_its_own_panel():
    maps = [np.zeros((4, 4)), np.ones((4, 4)), np.full((4, 8), 0.5)]
    plans = [plan_grid(4, 4), plan_grid(4, 4, sources=[5]), plan_grid(4, 8)]
    grids = [grid(4, 4, 0, LEFT), grid(4, 4, 0, RIGHT), grid(4, 8, 0)]
    out = render_heatmap(picture(300, 150), diagnosis(maps, plans, grids))
    assert out.shape == (256 + FOOTER_HEIGHT, 512 + PANEL_GAP + 512, 3)
    assert close(out[200, 100], expected_blend(0.0))  # left tile, in the left half of the mosaic
    assert close(out[200, 400], expected_blend(1.0))  # right tile
    assert close(out[200, 512 + PANEL_GAP + 256], expected_blend(0.5))  # thumbnail
    # tile 1's source (row 1, col 1 of a 4x4 grid over x 256..512): outlined inside that tile
    assert any(red(out[96, x]) for x in range(320, 325))
    assert not red(out[96, 352])  # cell centre stays the map colour


def test_sources_red_and_neighbours_cyan_at_their_cells():
    # 300x150 -> 512x256 panel, 4x8 grid -> 64 px cells; source (1, 2), neighbour (1, 3)
    plans = [plan_grid(4, 8, sources=[10], neighbours=[11], owners=[10])]
    out = render_heatmap(picture(300, 150), diagnosis([np.random.default_rng(1).random((4, 8))], plans,
                                                      [grid(4, 8, 0)]))
    assert any(red(out[96, x]) for x in range(128, 133))
    assert any(cyan(out[96, x]) for x in range(192, 197))
    assert not red(out[96, 160]) and not cyan(out[96, 224])
    assert not any(red(out[96, x]) or cyan(out[96, x]) for x in range(0, 120))  # untouched cells


def test_colour_bar_runs_low_to_high_with_labels():
    diag = diagnosis([np.array([[0.001, 0.002], [0.003, 0.004]])], [plan_grid(2, 2)], [grid(2, 2, 0)])
    out = render_heatmap(picture(200, 200), diag, size=256)
    from matplotlib import colormaps

    bar_row = 256 + PANEL_GAP + 7
    assert close(out[bar_row, 0], np.asarray(colormaps["inferno"](0.0)[:3]) * 255)
    assert close(out[bar_row, 255], np.asarray(colormaps["inferno"](1.0)[:3]) * 255)
    labels = out[256 + PANEL_GAP + 14:].min(axis=2)
    assert (labels[:, :40] < 128).any() and (labels[:, -40:] < 128).any()  # min and max written at the ends


def test_the_footer_says_what_red_cyan_and_the_colour_bar_mean():
    diag = diagnosis([np.random.default_rng(1).random((4, 8))], [plan_grid(4, 8)], [grid(4, 8, 0)])
    out = render_heatmap(picture(300, 150), diag)
    legend = out[-LEGEND_HEIGHT:]
    assert any(red(p) for p in legend.reshape(-1, 3)) and any(cyan(p) for p in legend.reshape(-1, 3))
    title = out[256 + PANEL_GAP + BAR_HEIGHT:-LEGEND_HEIGHT].min(axis=2)
    assert (title[:, 200:312] < 128).any()  # the bar's title, centred between min and max


def test_old_style_diagnosis_without_grids_renders(tmp_path):
    path = tmp_path / "a.png"
    picture(120, 60).save(path)
    array = np.full((80, 40, 3), 200, dtype=np.uint8)
    diag = diagnosis([np.eye(3), np.eye(4)], [plan_grid(3, 3, sources=[4]), plan_grid(4, 4)])
    out = render_heatmap([path, array], diag, size=100)
    assert out.shape == (100 + FOOTER_HEIGHT, 100 + PANEL_GAP + 50, 3)
    single = render_heatmap(picture(64, 64), diagnosis([np.eye(3)], [plan_grid(3, 3)]), size=64)
    assert single.shape[0] == 64 + FOOTER_HEIGHT and single.dtype == np.uint8


def test_save_heatmap_writes_a_png(tmp_path):
    diag = diagnosis([np.eye(4)], [plan_grid(4, 4, sources=[5])], [grid(4, 4, 0)])
    path = save_heatmap(tmp_path / "heat.png", picture(100, 50), diag, size=256)
    with Image.open(path) as written:
        assert written.format == "PNG" and written.size == (256, 128 + FOOTER_HEIGHT)


def test_clear_errors():
    with pytest.raises(InputError, match="2 maps but its plan has 1"):
        render_heatmap(picture(50, 50), diagnosis([np.eye(2), np.eye(2)], [plan_grid(2, 2)]))
    with pytest.raises(InputError, match="image 1 but 1 image"):
        render_heatmap(picture(50, 50), diagnosis([np.eye(2), np.eye(2)], [plan_grid(2, 2)] * 2,
                                                  [grid(2, 2, 0), grid(2, 2, 1)]))
    with pytest.raises(InputError, match="image 1 but 1 image"):  # old style: map i is image i
        render_heatmap([picture(50, 50)], diagnosis([np.eye(2), np.eye(2)], [plan_grid(2, 2)] * 2))
    with pytest.raises(InputError, match="shape"):
        render_heatmap(picture(50, 50), diagnosis([np.eye(3)], [plan_grid(2, 2)]))
    with pytest.raises(InputError, match="no images"):
        render_heatmap([], diagnosis([np.eye(2)], [plan_grid(2, 2)]))


def test_renders_without_torch():
    script = textwrap.dedent("""
        import sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None

        sys.meta_path.insert(0, BlockTorch())
        import numpy as np
        from PIL import Image
        from scr_core.heatmap import render_heatmap
        from scr_core.layout import VisualGrid
        from scr_core.plan import GridPlan, RedistributionPlan
        from scr_core.results import Diagnosis

        plan = RedistributionPlan((GridPlan(2, 3, (1,), (0,), (1,)),), 2.0, (1,))
        diag = Diagnosis((np.arange(6.0).reshape(2, 3),), 1.0, plan, (VisualGrid(0, 2, 3, np.arange(6), 0),))
        out = render_heatmap(Image.new("RGB", (90, 60)), diag, size=90)
        assert "torch" not in sys.modules
        print(out.shape, out.dtype)
    """)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"({60 + FOOTER_HEIGHT}, {max(90, footer_width())}, 3) uint8"
