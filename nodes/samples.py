"""Testbed scenes in ComfyUI's input folder, so the shipped workflows' first run captions a picture the
bundled model knows (ComfyUI's stock ``example.png``, a child's drawing, gives it nothing to name).

Written once when the pack loads and never over anything that is there (a user's edits or deletions of
their own copies are theirs): ``scr_testbed_scene.png`` for the caption workflows (ComfyUI's Load Image
lists only the input folder's top level), the folder ``scr_testbed/`` for the folder workflow, and
``scr_testbed_clip.mp4`` (the folder's scenes one after another, a short slideshow) for the clip workflow
(core Load Video lists the input folder's videos). Nobody
asked for these files, so they are never written through a link: a linked ``scr_testbed`` (the user's
photo drive, say) gets nothing, and a link in a scene's place, dangling or not, stays as it is
(``scr_core.outputs.write_no_follow``).
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

SCENE_FILE = "scr_testbed_scene.png"
SCENE_FOLDER = "scr_testbed"
CLIP_FILE = "scr_testbed_clip.mp4"
FOLDER_SCENES = (7, 9, 10, 11, 21, 26)  # held-out scenes of the demo's seed the testbed model captions well
CLIP_FPS, FRAMES_A_SCENE = 4, 4  # the clip: each scene a second, 6 s in all


def install_samples(input_dir: str | Path) -> list[Path]:
    """Write the scenes that are missing; returns what was written. A failure is logged, never raised:
    a read-only input folder must not stop the pack from loading."""
    from scr_core.demo import DEMO_SCENE, testbed_scene
    from scr_core.outputs import write_no_follow

    seed, demo_index = DEMO_SCENE
    written = []
    try:
        Path(input_dir).mkdir(parents=True, exist_ok=True)
        base = Path(os.path.realpath(input_dir))  # ComfyUI's input folder itself may be the owner's link
        wanted = {base / SCENE_FILE: demo_index}
        folder = base / SCENE_FOLDER
        if not os.path.lexists(folder):
            folder.mkdir()
        if folder.is_dir() and not folder.is_symlink():
            wanted.update({folder / f"scene_{i:02d}.png": i for i in FOLDER_SCENES})
        for target, index in wanted.items():
            if os.path.lexists(target):
                continue
            data = io.BytesIO()
            testbed_scene(seed, index).image.save(data, format="PNG")
            if write_no_follow(target, data.getvalue()):
                written.append(target)
        clip = base / CLIP_FILE
        if not os.path.lexists(clip) and write_no_follow(clip, scenes_clip([testbed_scene(seed, i).image
                                                                            for i in FOLDER_SCENES])):
            written.append(clip)
    except Exception as err:  # OSError, SCRError, PyAV's errors: logged, the pack loads anyway
        logging.warning("SCR: could not write the sample scenes into %s (%s); the shipped workflows need "
                        "input/%s and input/%s", input_dir, err, SCENE_FILE, CLIP_FILE)
    return written


def scenes_clip(pictures) -> bytes:
    """An H.264 ``.mp4`` (what browsers preview) of ``pictures``, each held for ``FRAMES_A_SCENE`` frames."""
    import tempfile

    import numpy as np

    from scr_core.testbed.clips import write_clip

    frames = np.stack([np.asarray(p.convert("RGB")) for p in pictures for _ in range(FRAMES_A_SCENE)])
    with tempfile.TemporaryDirectory() as folder:
        return write_clip(Path(folder) / CLIP_FILE, frames, fps=CLIP_FPS).read_bytes()
