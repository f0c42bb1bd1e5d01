"""Testbed scenes in ComfyUI's input folder, so the shipped workflows' first run captions a picture the
bundled model knows (ComfyUI's stock ``example.png``, a child's drawing, gives it nothing to name).

Written once when the pack loads and never over a file that is there (a user's edits or deletions of
their own copies are theirs): ``scr_testbed_scene.png`` for the caption workflows (ComfyUI's Load Image
lists only the input folder's top level) and the folder ``scr_testbed/`` for the folder workflow.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

SCENE_FILE = "scr_testbed_scene.png"
SCENE_FOLDER = "scr_testbed"
FOLDER_SCENES = (7, 9, 10, 11, 21, 26)  # held-out scenes of the demo's seed the testbed model captions well


def install_samples(input_dir: str | Path) -> list[Path]:
    """Write the scenes that are missing; returns what was written. A failure is logged, never raised:
    a read-only input folder must not stop the pack from loading."""
    from scr_core.demo import DEMO_SCENE, testbed_scene
    from scr_core.outputs import write_atomically

    seed, demo_index = DEMO_SCENE
    wanted = {Path(input_dir) / SCENE_FILE: demo_index}
    wanted.update({Path(input_dir) / SCENE_FOLDER / f"scene_{i:02d}.png": i for i in FOLDER_SCENES})
    written = []
    try:
        for target, index in wanted.items():
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            image = testbed_scene(seed, index).image
            write_atomically(target, partial(image.save, format="PNG"))
            written.append(target)
    except OSError as err:
        logging.warning("SCR: could not write the sample scenes into %s (%s); the shipped workflows need "
                        "input/%s", input_dir, err, SCENE_FILE)
    return written
