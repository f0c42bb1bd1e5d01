"""The folder nodes Load Image Folder and Save Captions, and what the folder nodes share: they read images
from and write captions to the folders a posted workflow may use (``scr_core.allowed``,
``scr_core.caption_files``). Caption Folder is in ``folder_captions``.
"""

from __future__ import annotations

from pathlib import Path

from comfy_api.latest import io, ui

from scr_core import SCRError
from scr_core.caption_files import CaptionMode, caption_targets, list_images, write_captions
from scr_core.caption_quality import degenerate_captions, degenerate_line

from .convert import first, pils_to_tensor
from .held import held_pixels, hold, room
from .shared import CATEGORY, Choice, Node

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
