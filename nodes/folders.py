"""The folder nodes: Load Image Folder, Save Captions and Caption Folder, which read images from and write
captions to the folders a posted workflow may use (``scr_core.allowed``, ``scr_core.caption_files``).

Caption Folder does the same per-batch work as ``python -m scr_core caption-folder``
(``scr_core.caption_folder.caption_batch``): images are read from disk a batch at a time (never the whole
folder in memory), each batch's captions are written atomically as it finishes, and an image whose
caption file exists is skipped, so queueing again after a crash or Cancel resumes where the run stopped.
"""

from __future__ import annotations

from pathlib import Path

from comfy_api.latest import io, ui

from scr_core import SCRError
from scr_core.caption_files import CaptionMode, caption_targets, list_images, write_captions
from scr_core.caption_quality import degenerate_captions, degenerate_line

from .convert import first, pils_to_tensor
from .held import held_pixels, hold, room
from .shared import (CATEGORY, Choice, Node, SCRSettingsType, VLMModel, caption_inputs, caption_instruction,
                     check_caption_values, instruction_input, interruptible, preset_note_for, validates)

WRITE_TO = tuple(mode.value for mode in CaptionMode)  # "beside images", "output folder": the one checked value


def io_folders() -> list:
    """Where a posted workflow may read images and write captions (``scr_core.allowed``)."""
    import folder_paths

    from scr_core.allowed import allowed_folders

    return allowed_folders([folder_paths.get_input_directory(), folder_paths.get_output_directory()])


def user_folder(text: str) -> str | Path:
    """A folder a workflow names: a relative one is inside ComfyUI's input folder (so a shipped workflow can
    name ``scr_testbed``), an absolute one as given; ``scr_core.allowed`` decides if it may be used."""
    import folder_paths

    from scr_core.path_text import checked_path

    raw = str(text or "").strip()
    if not raw:
        return raw
    path = checked_path(raw, "folder")  # NUL bytes, over-long names, "~nosuchuser": one line
    return path if path.is_absolute() else Path(folder_paths.get_input_directory()) / raw


def folder_inputs(default: str) -> list:
    """The image-folder inputs of the folder nodes (``user_folder`` and ``list_images`` read them)."""
    return [io.String.Input("folder", default=default,
                            tooltip="a folder of images: relative to ComfyUI's input folder, or inside input, output "
                                    "or SCR_ALLOWED_FOLDERS"),
            io.String.Input("filter", default="", tooltip="e.g. *.png;*cat* (blank = every image)"),
            io.Boolean.Input("recursive", default=False)]


class LoadImageFolder(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRLoadImageFolder", display_name="Load Image Folder (SCR)", category=CATEGORY,
            description="Every image of a folder as a list (any sizes), sorted by path, with their paths "
                        "(folders inside input, output or SCR_ALLOWED_FOLDERS); an unreadable image is named in "
                        "the report and left out.",
            inputs=[*folder_inputs(""),
                    io.Int.Input("limit", default=0, min=0, max=1_000_000, tooltip="0 = all")],
            outputs=[io.Image.Output(display_name="images", is_output_list=True),
                     io.String.Output(display_name="paths", is_output_list=True),
                     io.String.Output(display_name="report")],
        )

    @classmethod
    def fingerprint_inputs(cls, folder, filter, recursive, limit):
        """Re-run when the folder's files change (names and modification times), not only the inputs."""
        try:
            return [(str(p), p.stat().st_mtime_ns)
                    for p in list_images(user_folder(folder), filter, recursive, limit, allowed=io_folders())]
        except (SCRError, OSError):
            return float("nan")

    @classmethod
    def execute(cls, folder, filter, recursive, limit) -> io.NodeOutput:
        from scr_core.caption_folder import read_image

        cls.recheck({"limit": limit})
        paths = list_images(user_folder(folder), filter, recursive, limit, allowed=io_folders())
        check_room(paths)  # from the headers, before anything is decoded
        images, loaded, failed = [], [], []
        for path in paths:
            picture, error = read_image(path)
            if picture is None:
                failed.append(f"  {path.name}: {error}")
                continue
            images.append(pils_to_tensor([picture]))
            hold(images[-1], picture.width * picture.height)  # released when ComfyUI drops the output
            loaded.append(str(path))
        if not images:
            raise SCRError(f"none of the {len(paths)} image(s) in {folder} could be read; {failed[0].strip()}")
        report = "\n".join([f"{folder}: {len(images)} image(s) loaded, {len(failed)} failed", *failed])
        return io.NodeOutput(images, loaded, report, ui=ui.PreviewText(report))


def check_room(paths: list[Path]) -> None:
    """One line when the images' pixels (from their headers) do not fit in ``SCR_MAX_FOLDER_PIXELS``
    beside what earlier Load Image Folder outputs still hold (``held``)."""
    from scr_core.allowed import PIXELS_ENV, folder_pixel_budget
    from scr_core.budgets import header_pixels

    total, budget = sum(header_pixels(p) for p in paths), folder_pixel_budget()
    if total > room(budget):
        others = f" beside {held_pixels():,} that earlier Load Image Folder outputs still hold" if held_pixels() else ""
        raise SCRError(f"the folder's images hold {total:,} pixels{others}: more than {budget:,} pixels in total "
                       f"({PIXELS_ENV}); use the filter or limit, raise the budget, or caption it with Caption "
                       "Folder (SCR) or python -m scr_core caption-folder, which read one batch at a time")


class SaveCaptions(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRSaveCaptions", display_name="Save Captions (SCR)", category=CATEGORY,
            description="Write each caption as a .txt file: beside its image (an image inside input, output or "
                        "SCR_ALLOWED_FOLDERS) or into ComfyUI's output folder. Never overwrites unless asked; "
                        "empty or degenerate captions are written and listed.",
            is_input_list=True, is_output_node=True,
            inputs=[io.String.Input("captions", force_input=True), io.String.Input("paths", force_input=True),
                    Choice("mode", options=list(WRITE_TO), default=WRITE_TO[0]),
                    io.String.Input("subfolder", default="captions", tooltip="inside the output folder"),
                    io.Boolean.Input("overwrite", default=False)],
            outputs=[io.String.Output(display_name="files", is_output_list=True)],
        )

    @classmethod
    def fingerprint_inputs(cls, **_):
        """Always runs: its result is the files on disk, so a re-queue after deleting them writes them again
        (and with them still there it says so instead of silently writing nothing)."""
        return float("nan")

    @classmethod
    def execute(cls, captions, paths, mode, subfolder, overwrite) -> io.NodeOutput:
        import folder_paths

        cls.recheck({"mode": mode})
        targets = caption_targets(paths, first(mode), folder_paths.get_output_directory(), first(subfolder),
                                  allowed=io_folders())
        written = [str(p) for p in write_captions(list(captions), targets, bool(first(overwrite)))]
        warning = degenerate_line(degenerate_captions(zip(written, captions)), len(written))
        return io.NodeOutput(written, ui={"text": written + [warning] if warning else written})





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
            description="Caption every image of a folder into a .txt beside it (or, mirrored, into an output "
                        "folder), batch_size at a time, reading one batch from disk at a time; existing captions "
                        "are skipped, so a rerun resumes. Empty or degenerate captions are listed in the report.",
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
                                            "folder, or an absolute one inside output or SCR_ALLOWED_FOLDERS")],
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
                output_folder="captions") -> io.NodeOutput:
        import comfy.model_management as mm
        import comfy.utils

        from scr_core.caption_files import write_caption_files
        from scr_core.caption_folder import Item, caption_batch, clean_prefix, with_prefix, with_suffix
        from scr_core.shards import batches_of

        cls.recheck({"max_new_tokens": max_new_tokens, "preset": preset, "length": length, "batch_size": batch_size,
                     "write_to": write_to})
        prompt = caption_instruction(preset, length, instruction)
        clean_prefix(prefix), clean_prefix(suffix, "suffix")  # as written; an over-long one refused before any work
        named = user_folder(folder)
        paths = list_images(named, filter, recursive, allowed=io_folders())  # refuses a blank folder
        root = Path(named).expanduser()
        targets = caption_targets([str(p) for p in paths], CaptionMode.BESIDE_IMAGES, ".", allowed=io_folders())
        if write_to == "output folder":
            targets = _mirrored(paths, root, output_folder)
        existing = [t for t in targets if t.exists()]
        if existing and not skip_existing and not overwrite:
            raise SCRError(f"{existing[0]} exists ({len(existing)} caption file(s) in the way); turn on "
                           "skip_existing to resume or overwrite to replace them")
        todo = [(Item(p.relative_to(root).as_posix(), p), t)  # list_images' paths lie under root
                for p, t in zip(paths, targets) if not (skip_existing and t.exists())]
        bar = comfy.utils.ProgressBar(max(len(todo), 1))
        written, late, failed, degenerate = 0, 0, [], []
        with vlm.use() as pipe:
            note = preset_note_for(pipe, prompt)
            for batch in batches_of(todo, batch_size or 4):
                mm.throw_exception_if_processing_interrupted()
                with interruptible() as stop:
                    records = caption_batch(pipe, [item for item, _ in batch], scr=scr_config, prompt=prompt,
                                            max_new_tokens=max_new_tokens, should_stop=stop)
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
