"""Caption Folder: every image (and, asked, every video clip) of a folder captioned into a ``.txt`` beside
it, or mirrored into an output folder, inside the folders a posted workflow may use (``folders``).

It does the same per-batch work as ``python -m scr_core caption-folder``
(``scr_core.caption_folder.caption_batch``): images are read from disk a batch at a time (never the whole
folder in memory), each clip sampled alone (only its sampled frames decoded, and they must fit
``SCR_MAX_BATCH_PIXELS``), each batch's captions are written atomically as it finishes, and a file whose
caption file exists is skipped, so queueing again after a crash or Cancel resumes where the run stopped.
A file that cannot be read (a corrupt clip) is one line of the report; the others are captioned.
"""

from __future__ import annotations

from pathlib import Path

from comfy_api.latest import io, ui

from scr_core import SCRError
from scr_core.caption_files import CaptionMode, caption_targets, list_images
from scr_core.caption_quality import degenerate_captions, degenerate_line

from .folders import WRITE_TO, folder_inputs, io_folders, user_folder
from .shared import (CATEGORY, Choice, Node, SCRSettingsType, VLMModel, caption_inputs, caption_instruction,
                     check_caption_values, clip_inputs, instruction_input, interruptible, preset_note_for,
                     validates)


def _mirrored(paths: list[Path], root: Path, output_folder: str) -> list[Path]:
    """Caption Folder's output-folder targets: the images' names relative to ``root`` mirrored under
    ``output_folder`` (relative: inside ComfyUI's output folder; absolute: inside the allowed folders)."""
    import folder_paths

    from scr_core.allowed import check_allowed
    from scr_core.caption_files import safe_subfolder
    from scr_core.caption_folder import mirrored_targets

    text = str(output_folder or "").strip()
    if text and Path(text).expanduser().is_absolute():
        base = check_allowed(text, io_folders(), "output folder")
        base.mkdir(parents=True, exist_ok=True)
        base = check_allowed(base, io_folders(), "output folder")  # again, now that it exists
    else:
        base = safe_subfolder(folder_paths.get_output_directory(), text)
    return mirrored_targets([p.relative_to(root).as_posix() for p in paths], base)  # list_images' paths lie under root


class CaptionFolder(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRCaptionFolder", display_name="Caption Folder (SCR)", category=CATEGORY,
            description="Caption every image (and with clips on, every video clip) of a folder into a .txt beside "
                        "it (or, mirrored, into an output folder), batch_size at a time, reading one batch from "
                        "disk at a time; existing captions are skipped, so a rerun resumes. Unreadable files, "
                        "empty or degenerate captions are listed in the report.",
            is_output_node=True,
            inputs=[VLMModel.Input("vlm"), *folder_inputs("scr_testbed"), instruction_input(),
                    SCRSettingsType.Input("scr_config", optional=True,
                                          tooltip="SCR with these settings; not connected = the vanilla model"),
                    io.Int.Input("max_new_tokens", default=64, min=1, max=4096),
                    io.Boolean.Input("skip_existing", default=True,
                                     tooltip="skip an image whose caption file exists (a rerun resumes)"),
                    io.Boolean.Input("overwrite", default=False,
                                     tooltip="with skip_existing off: replace existing caption files"),
                    io.String.Input("prefix", default="",
                                    tooltip="a trigger word put before each caption: ohwx -> 'ohwx, a cup ...'"),
                    *caption_inputs(),
                    # Added after the caption widgets (last, optional) so saved workflows keep their values:
                    io.String.Input("suffix", default="", optional=True,
                                    tooltip="words put after each caption: best quality -> 'a cup, best quality'"),
                    Choice("write_to", options=list(WRITE_TO), default=WRITE_TO[0], optional=True,
                           tooltip="beside each image (<image stem>.txt), or into the output folder below "
                                   "with the source's subfolders and names mirrored"),
                    io.String.Input("output_folder", default="captions", optional=True,
                                    tooltip="with write_to output folder: a folder relative to ComfyUI's output "
                                            "folder, or an absolute one inside output or SCR_ALLOWED_FOLDERS"),
                    io.Boolean.Input("clips", default=False, optional=True,
                                     tooltip="caption the video clips too (.mp4 .webm .mov .mkv; an animated .gif "
                                             "always is one), each as one clip: <clip stem>.txt beside it"),
                    *clip_inputs(video=False)],
            outputs=[io.String.Output(display_name="report")],
        )

    @validates
    def validate_inputs(cls, instruction=None, preset=None):
        return check_caption_values(preset, instruction)

    @classmethod
    def fingerprint_inputs(cls, **_):
        """Always runs: what it makes is files on disk, which may have changed since the last run."""
        return float("nan")

    @classmethod
    def execute(cls, vlm, folder, filter, recursive, instruction, max_new_tokens, skip_existing, overwrite, prefix,
                scr_config=None, preset=None, length=None, batch_size=None, suffix="", write_to=WRITE_TO[0],
                output_folder="captions", clips=False, frames=None, fps=None) -> io.NodeOutput:
        import comfy.model_management as mm
        import comfy.utils

        from scr_core.budgets import batch_pixel_budget
        from scr_core.caption_files import write_caption_files
        from scr_core.caption_folder import Item, caption_batch, clean_prefix, with_prefix, with_suffix
        from scr_core.shards import batches_of

        cls.recheck({"max_new_tokens": max_new_tokens, "preset": preset, "length": length, "batch_size": batch_size,
                     "write_to": write_to, "frames": frames, "fps": fps})
        prompt = caption_instruction(preset, length, instruction)
        clean_prefix(prefix), clean_prefix(suffix, "suffix")  # as written; an over-long one refused before any work
        named = user_folder(folder)
        paths = list_images(named, filter, recursive, allowed=io_folders(), clips=bool(clips))  # refuses a blank one
        sampling = {"frames": frames or None, "fps": fps or None, "max_pixels": batch_pixel_budget()}
        root = Path(named).expanduser()
        targets = caption_targets([str(p) for p in paths], CaptionMode.BESIDE_IMAGES, ".", allowed=io_folders())
        if write_to == "output folder":
            targets = _mirrored(paths, root, output_folder)
        existing = [t for t in targets if t.exists()]
        if existing and not skip_existing and not overwrite:
            raise SCRError(f"{existing[0]} exists ({len(existing)} caption file(s) in the way); turn on "
                           "skip_existing to resume or overwrite to replace them")
        done_before = set(existing) if skip_existing else set()
        todo = [(Item(p.relative_to(root).as_posix(), p), t)  # list_images' paths lie under root
                for p, t in zip(paths, targets) if t not in done_before]
        bar = comfy.utils.ProgressBar(max(len(todo), 1))
        written, late, failed, degenerate = 0, 0, [], []
        with vlm.use() as pipe:
            note = preset_note_for(pipe, prompt)
            for batch in batches_of(todo, batch_size or 4):
                mm.throw_exception_if_processing_interrupted()
                with interruptible() as stop:
                    records = caption_batch(pipe, [item for item, _ in batch], scr=scr_config, prompt=prompt,
                                            max_new_tokens=max_new_tokens, sampling=sampling, should_stop=stop)
                done = [(with_suffix(with_prefix(prefix, r["caption"]), suffix), t)
                        for r, (_, t) in zip(records, batch) if r["caption"] is not None]
                wrote = write_caption_files([c for c, _ in done], [t for _, t in done], overwrite=bool(overwrite))
                written, late = written + len(wrote.written), late + len(wrote.skipped)  # skip at write time too
                failed += [f"  {t.name}: {why}" for t, why in wrote.failed]
                degenerate += degenerate_captions((str(t), r["caption"]) for r, (_, t) in zip(records, batch)
                                                  if r["caption"] is not None)
                failed += [f"  {r['image']}: {r['error']}" for r in records if r["caption"] is None]
                bar.update(len(batch))
        skipped = len(paths) - len(todo) + late
        report = "\n".join(line for line in [
            f"{root}: {written} caption(s) written, {skipped} skipped (caption file exists), {len(failed)} failed",
            *failed, degenerate_line(degenerate, written), note] if line)
        return io.NodeOutput(report, ui=ui.PreviewText(report))
