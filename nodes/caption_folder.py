"""Caption Folder (SCR): a folder of thousands of images to ``.txt`` captions beside them, for LoRA data sets.

The same per-batch work as ``python -m scr_core caption-folder`` (``scr_core.caption_folder.caption_batch``):
images are read from disk a batch at a time (never the whole folder in memory), each batch's captions
are written atomically as it finishes, and an image whose caption file exists is skipped, so queueing
again after a crash or Cancel resumes where the run stopped.
"""

from __future__ import annotations

from pathlib import Path

from comfy_api.latest import io, ui

from scr_core import SCRError

from .definitions import (CATEGORY, Node, SCRSettingsType, VLMModel, _caption_inputs, _caption_instruction,
                          _check_caption_values, _instruction_input, _interruptible, folder_inputs, io_folders,
                          user_folder)
from .paths import caption_targets, list_images, write_captions


class CaptionFolder(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRCaptionFolder", display_name="Caption Folder (SCR)", category=CATEGORY,
            description="Caption every image of a folder into a .txt beside it, batch_size at a time, reading "
                        "one batch from disk at a time; existing captions are skipped, so a rerun resumes.",
            is_output_node=True,
            inputs=[VLMModel.Input("vlm"), *folder_inputs("scr_testbed"), _instruction_input(),
                    SCRSettingsType.Input("scr_config", optional=True,
                                          tooltip="SCR with these settings; not connected = the vanilla model"),
                    io.Int.Input("max_new_tokens", default=64, min=1, max=4096),
                    io.Boolean.Input("skip_existing", default=True,
                                     tooltip="skip an image whose caption file exists (a rerun resumes)"),
                    io.Boolean.Input("overwrite", default=False,
                                     tooltip="with skip_existing off: replace existing caption files"),
                    io.String.Input("prefix", default="",
                                    tooltip="a trigger word put before each caption: ohwx -> 'ohwx, a cup ...'"),
                    *_caption_inputs()],
            outputs=[io.String.Output(display_name="report")],
        )

    @classmethod
    def check_more(cls, instruction=None, preset=None, **_):
        return _check_caption_values(preset, instruction)

    @classmethod
    def fingerprint_inputs(cls, **_):
        """Always runs: what it makes is files on disk, which may have changed since the last run."""
        return float("nan")

    @classmethod
    def execute(cls, vlm, folder, filter, recursive, instruction, max_new_tokens, skip_existing, overwrite, prefix,
                scr_config=None, preset=None, length=None, batch_size=None) -> io.NodeOutput:
        import comfy.model_management as mm
        import comfy.utils

        from scr_core.caption_folder import Item, caption_batch, with_prefix
        from scr_core.shards import batches_of

        cls.recheck({"max_new_tokens": max_new_tokens, "preset": preset, "length": length, "batch_size": batch_size})
        prompt = _caption_instruction(preset, length, instruction)
        named = user_folder(folder)
        paths = list_images(named, filter, recursive, allowed=io_folders())  # refuses a blank folder
        root = Path(named).expanduser()
        targets = caption_targets([str(p) for p in paths], "beside images", ".", allowed=io_folders())
        existing = [t for t in targets if t.exists()]
        if existing and not skip_existing and not overwrite:
            raise SCRError(f"{existing[0]} exists ({len(existing)} caption file(s) in the way); turn on "
                           "skip_existing to resume or overwrite to replace them")
        todo = [(Item(p.relative_to(root).as_posix(), p), t)  # list_images' paths lie under root
                for p, t in zip(paths, targets) if not (skip_existing and t.exists())]
        bar = comfy.utils.ProgressBar(max(len(todo), 1))
        written, failed = 0, []
        with vlm.use() as pipe:
            for batch in batches_of(todo, batch_size or 4):
                mm.throw_exception_if_processing_interrupted()
                with _interruptible() as stop:
                    records = caption_batch(pipe, [item for item, _ in batch], scr=scr_config, prompt=prompt,
                                            max_new_tokens=max_new_tokens, should_stop=stop)
                done = [(with_prefix(prefix, r["caption"]), t) for r, (_, t) in zip(records, batch)
                        if r["caption"] is not None]
                write_captions([c for c, _ in done], [t for _, t in done], overwrite=bool(overwrite))
                written += len(done)
                failed += [f"  {r['image']}: {r['error']}" for r in records if r["caption"] is None]
                bar.update(len(batch))
        skipped = len(paths) - len(todo)
        report = "\n".join([f"{root}: {written} caption(s) written, {skipped} skipped (caption file exists), "
                            f"{len(failed)} failed", *failed])
        return io.NodeOutput(report, ui=ui.PreviewText(report))
