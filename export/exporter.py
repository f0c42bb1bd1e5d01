"""Export a VLM checkpoint with SCR baked in: the graphs, the processor files and ``scr_config.json``.

Layout of the output folder (onnxruntime-genai's split, plus the SCR pieces):

    vision.onnx       pixel_values → image_features[N, D]
    embedding.onnx    input_ids + image_features → inputs_embeds (image rows merged in-graph)
    decoder_head.onnx layers 0 … last diagnostic layer (+ ai.scr nodes at its hook layers): hidden state,
                      KV, and scr_scores = the diagnostic map at the visual tokens
    decoder_tail.onnx the remaining layers (+ their hook layers), final norm, LM head: logits, KV
    select.onnx       ai.scr SCRSelect: scr_scores → scr_map (the plan)
    NAME.onnx.data    the weights of a graph past folder_config.EXTERNAL_DATA_BYTES (the decoder's always)
    scr_config.json   graphs, inputs/outputs, the grid rule, SCR defaults, the ai.scr opset version

The folder is built in a temporary sibling and renamed into place at the end: a failure (a full disk
included: one ``ExportWriteError`` line) leaves nothing behind, every file gets the mode a plain ``open``
gives (the umask's), and an existing folder is replaced only with ``overwrite`` and only when it is an
SCR export that does not hold the checkpoint.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from scr_core import ConfigError, InputError, SCRError, UnsupportedModelError
from scr_core.config import check_depth
from scr_core.outputs import ordinary_mode

from . import quantize
from .dtypes import EXPORT_DTYPES, ExportDtype, export_dtype
from .folder_config import CONFIG_NAME, is_export

log = logging.getLogger(__name__)

# the decoder's attention as ONNX Attention nodes (docs/performance.md#onnx-runtime-at-the-default-opset-23)
DEFAULT_OPSET = 23
OPSETS = (18, 19, 20, 21, 23)  # 18-21: sdpa's decomposition, for runtimes older than onnxruntime 1.23
DTYPES = tuple(EXPORT_DTYPES)  # int4: int4 weights (export/quantize.py), fp32 or fp16 activations
FULL = (errno.ENOSPC, errno.EDQUOT)  # what a full disk or quota says


class ExportWriteError(SCRError):
    """The output folder could not be written (the disk is full, a file-size limit, a permission)."""


@dataclass(frozen=True)
class ExportOptions:
    """Everything ``python -m export.onnx`` takes; checked before any weight is read."""

    model: Path
    out: Path
    k: int | None = None
    lam: float | None = None
    diag_layers: tuple[int, ...] | None = None
    hook_layers: tuple[int, ...] | None = None
    dtype: str = "fp32"
    opset: int = DEFAULT_OPSET
    overwrite: bool = False
    block_size: int | None = None  # int4 only (default quantize.DEFAULT_BLOCK_SIZE)
    int4_lm_head: bool = False  # int4 only: quantize the LM head too
    int4_vision: bool = False  # int4 only: quantize the vision tower too

    @property
    def export_dtype(self) -> ExportDtype:
        """The ``--dtype`` row: weights and activations (``ConfigError`` for an unknown one)."""
        return export_dtype(self.dtype)

    @property
    def int4(self) -> quantize.Int4 | None:
        if not self.export_dtype.quantized:
            return None
        parts = ("decoder", *(["lm_head"] if self.int4_lm_head else []), *(["vision"] if self.int4_vision else []))
        return quantize.Int4(block_size=quantize.DEFAULT_BLOCK_SIZE if self.block_size is None else self.block_size,
                             parts=parts)

    def scr_config(self):
        """The asked settings as an ``SCRConfig`` (raises ``ConfigError`` naming the field); what is left
        out is ``SCRConfig``'s default, the paper's."""
        from scr_core import SCRConfig

        given = {name: value for name, value in (("k", self.k), ("lam", self.lam)) if value is not None}
        return SCRConfig(**given, diag_layers=self.diag_layers, hook_layers=self.hook_layers)

    def check(self) -> None:
        checked = self.scr_config()
        if self.int4 is None and (self.block_size is not None or self.int4_lm_head or self.int4_vision):
            raise ConfigError("--block-size, --int4-lm-head and --int4-vision go with --dtype int4 or int4-fp16")
        from scr_core.config import check_lam

        check_lam(checked.lam, self.export_dtype.torch)
        if self.opset not in OPSETS:
            raise ConfigError(f"--opset must be one of {', '.join(map(str, OPSETS))} (got {self.opset}); 23 puts "
                              "ONNX's Attention op in the decoder graphs, 18-21 the decomposed attention")
        from scr_core.loading import checkpoint_config, checkpoint_quantization

        model_type = checkpoint_config(self.model, required=True).get("model_type")
        quantized = checkpoint_quantization(self.model)
        if quantized:
            raise UnsupportedModelError(f"{self.model} is a {quantized} quantized checkpoint; "
                                        "the ONNX export needs its unquantized weights (for int4 graphs: export "
                                        "the unquantized checkpoint with --dtype int4)")
        if self.int4:
            self.int4.check(self.model)
        from .families import check_exportable

        check_exportable(model_type)
        from scr_core.loading import decoder_depth

        depth = decoder_depth(self.model)
        for name, layers in (("diag_layers", self.diag_layers), ("hook_layers", self.hook_layers)):
            check_depth(f"{name}={list(layers)}" if layers else name, layers, depth)
        check_output_folder(self.out, self.overwrite, self.model)


def check_output_folder(out: Path, overwrite: bool, model: Path | None = None) -> None:
    """``out`` may be written: new, or (with ``overwrite``) an earlier SCR export that neither holds
    ``model`` nor lies inside it: ``--overwrite`` never deletes a checkpoint or a user's other files."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a folder")
    if out.exists() and model is not None:
        here, there = out.resolve(), Path(model).resolve()
        where = "is" if here == there else "holds" if here in there.parents else \
            "lies inside" if there in here.parents else None
        if where:
            raise InputError(f"--out {out} {where} the checkpoint {model}; --overwrite only replaces an earlier "
                             "export: pick another --out")
    try:
        filled = out.exists() and any(out.iterdir())
    except OSError as err:
        raise InputError(f"cannot read {out} ({err.strerror})") from None
    if filled and not is_export(out):
        raise InputError(f"{out} is not an SCR export (no valid {CONFIG_NAME}); --overwrite only replaces an "
                         "earlier export: pick another --out, or empty the folder yourself")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"folder {parent} does not exist; create it first")
    try:
        with tempfile.TemporaryDirectory(dir=parent, prefix=f".{out.name}.check-"):
            pass
    except OSError as err:
        raise InputError(f"folder {parent} is not writable ({err.strerror})") from None


def export(options: ExportOptions, progress: Callable[[str], None] = lambda message: None) -> Path:
    """Export ``options.model`` into ``options.out``; returns the folder."""
    from scr_core.extras import require

    require("onnx", "the ONNX export (python -m export.onnx)")
    options.check()
    out = Path(options.out)
    parent = out.parent if str(out.parent) else Path(".")
    remove_stale_staging(parent, out.name)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.tmp-{os.getpid()}-"))
    ordinary_mode(staging, folder=True)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        _export_into(options, staging, progress)
        for path in staging.iterdir():  # onnx writes external data 0600: every file as a plain open makes it
            ordinary_mode(path)
        _replace(staging, out)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportWriteError(f"cannot write the export into {out}: {err.strerror or err}; nothing was written"
                               f"{' (free some space and export again)' if err.errno in FULL else ''}") from err
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # someone else's process: leave its folder alone
    return True


def remove_stale_staging(parent: Path, name: str) -> None:
    """Remove the ``.NAME.tmp-PID-*`` folders of earlier exports whose process is gone (killed with
    SIGKILL, the machine lost power); a live export's folder is left alone."""
    for folder in parent.glob(f".{name}.tmp-*"):
        pid = folder.name[len(f".{name}.tmp-"):].split("-", 1)[0]
        if folder.is_dir() and not folder.is_symlink() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _replace(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    if out.exists():
        aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.rename(out, aside / "old")
        try:
            os.rename(staging, out)
        except BaseException:
            os.rename(aside / "old", out)
            raise
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    else:
        os.rename(staging, out)


def _export_into(options: ExportOptions, folder: Path, progress: Callable[[str], None]) -> None:
    import onnx
    import torch

    from scr_core import SCRPipeline

    from . import ops
    from .families import family_for
    from .graph_export import GraphExporter  # torch and the tracer load when an export starts, not on --help

    started = time.perf_counter()
    progress(f"loading {options.model}")
    pipe = SCRPipeline.from_pretrained(options.model, dtype=options.export_dtype.torch,
                                       device="cpu", attn_implementation="sdpa")
    family = family_for(pipe)
    cfg = pipe.resolve(options.scr_config())
    graphs = GraphExporter(pipe, family, cfg, options.opset)
    files = {}
    order = (("vision", graphs.vision), ("embedding", graphs.embedding), ("decoder_head", graphs.head),
             ("decoder_tail", graphs.tail))
    with torch.no_grad():
        for done, (name, build) in enumerate(order, 1):
            progress(f"exporting {name}.onnx")
            files[name] = build(folder / f"{name}.onnx")
            graphs.release(tuple(later for later, _ in order[done:]))  # the pipeline is not used again
    int4 = options.int4
    if int4:
        for name in int4.graphs():
            progress(f"quantizing {name}.onnx to int4 (block size {int4.block_size})")
            written = quantize.quantize_graph(folder / f"{name}.onnx", int4, keep_lm_head="lm_head" not in int4.parts)
            files[name] = replace(files[name], external_data=written["external_data"])
    progress("writing select.onnx")
    onnx.save(ops.select_model(cfg.exclude_border), folder / "select.onnx")
    for name in (*files, "select"):
        external = " (external data)" if name in files and files[name].external_data else ""
        progress(f"checking {name}.onnx by path{external}")
        # by path: the checker reads the graph and leaves external data on disk (a proto holds < 2 GiB)
        onnx.checker.check_model(str(folder / f"{name}.onnx"), full_check=True)
    progress("writing processor files and scr_config.json")
    pipe.processor.save_pretrained(folder)
    config = graphs.config(cfg, files, options.export_dtype)
    if int4:
        config = replace(config, model=replace(config.model, quantization=int4.record()))
    config.write(folder)
    progress(f"done in {time.perf_counter() - started:.1f} s")
