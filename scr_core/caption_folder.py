"""``python -m scr_core caption-folder``: caption every image of a folder tree (or a list file) for
dataset builders — batched, resumable, data-parallel under ``accelerate launch`` / ``torchrun`` or on
Ray actors (``--engine ray``, ``scr_core.ray_engine``), with the same files.

``OUT`` (JSON lines) gains one record per image, in path order once the run ends::

    {"image": "cats/001.jpg", "caption": "...", "plan": {...}, "entropy": 4.1}
    {"image": "broken.png", "caption": null, "error": "cannot read image: ..."}

``image`` is relative to the folder (or to the list file's folder). Unreadable images are
recorded with their error, listed in ``OUT``'s summary and skipped, never dropped silently.
``OUT.run.json`` holds the settings (a resume with other settings is refused, as for ``eval``);
``OUT.summary.json`` the counts, the unreadable images and the empty or degenerate captions
(``caption_quality``: no letters, a word loop), which the command also lists, and the ``.txt`` files
that could not be written. ``--txt`` also writes ``<stem>.txt`` beside each image file with ComfyUI's Save
Captions rules (``caption_files``; the local user may write beside any image this command lists, and only
beside images), or with ``--txt-dir`` under that folder, the source's
names mirrored as Caption Folder's output folder does (``mirrored_targets``); never over an existing file
unless asked (checked before the model runs; a file that appears meanwhile is skipped), each atomically
and through no link, once the captions
are safely in ``OUT`` (a resumed run writes the ones an interrupted run did not get to). ``--prefix``
and ``--suffix`` join the caption with commas.

Video clips (``.mp4``, ``.webm``, ``.mov``, ``.mkv``, animated ``.gif``) are captioned too, each as one
clip sampled by ``frames`` / ``fps`` or the family's defaults (``SCRPipeline.read_clip``), one clip per
model call (clips of different lengths do not batch in every family); their record's ``image`` is the
clip's name, ``frames`` the frames sampled. A runner without video (an ONNX export) records an error per
clip. A video-LoRA data set is ``--txt`` (and ``--prefix``) on a folder of clips.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .allowed import inside
from .budgets import batch_pixel_budget, header_pixels, pixel_runs
from .caption_files import (IMAGE_PATTERNS, CaptionMode, caption_targets, is_image_name, list_images,
                           write_caption_files)
from .caption_quality import degenerate_captions
from .config import SCRConfig
from .errors import ConfigError, InputError
from .images import load_image
from .outputs import write_atomically
from .path_text import checked_path
from .runs import check_run, check_sizes, model_numerics, on_cpu
from .shards import Shard, batches_of, one_by_one, read_all, run_shards
from .video import Clip, SampledClip, is_clip

_FIX = "delete that line (its image is captioned again) or the file (to start over)"

#: The longest trigger-word prefix, in characters: a word or a few tags, not a text copied into every file.
MAX_PREFIX_CHARS = 200


@dataclass(frozen=True)
class Item:
    """One image: ``name`` as recorded (relative to the root), ``path`` on disk."""

    name: str
    path: Path


def list_items(source: str | Path) -> list[Item]:
    """Images of a folder tree (sorted by path), or of a list file (one path per line, relative to
    the file's folder; blank lines and ``#`` comments skipped; listed files may be missing or broken:
    they are reported per image, not here)."""
    source = checked_path(source, "source")
    if source.is_dir():
        return [Item(p.relative_to(source).as_posix(), p) for p in list_images(source, recursive=True, clips=True)]
    if not source.is_file():
        raise InputError(f"{source} is neither an image folder nor a list file")
    not_a_list = InputError(f"{source} lists no images (one image path per line)")
    try:
        text_lines = source.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise not_a_list from None
    except OSError as err:
        raise InputError(f"cannot read {source} ({err.strerror})") from None
    if not any(is_image_name(Path(line.strip()).name, clips=True) for line in text_lines if "\0" not in line):
        raise not_a_list  # e.g. /etc/passwd: refused without echoing a line of it
    items, seen = [], set()
    for number, line in enumerate(text_lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        path = checked_path(text, f"{source} line {number}:")
        path = path if path.is_absolute() else source.parent / path
        if text in seen:
            raise InputError(f"{source}: {text} is listed twice")
        seen.add(text)
        items.append(Item(text, path))
    if not items:
        raise InputError(f"{source} lists no images")
    return items


def sidecar(out: Path, kind: str) -> Path:
    """``captions.jsonl`` -> ``captions.run.json`` / ``captions.summary.json``."""
    return out.with_name(f"{out.stem}.{kind}.json")


def plan_summary(plan) -> dict | None:
    """What the JSON line keeps of a plan: λ, hook layers, sources and coverage per grid."""
    if plan is None:
        return None
    return {"lam": plan.lam, "hook_layers": list(plan.hook_layers),
            "grids": [{"size": [g.height, g.width], "sources": g.num_sources, "coverage": round(g.coverage, 4)}
                      for g in plan.grids]}


def read_image(path: Path) -> tuple[Image.Image | None, str | None]:
    """The image as every entry point reads it (``load_image``), or why it cannot be read."""
    return _load(path)


def _load(path: Path, pipe=None, sampling: dict | None = None) -> tuple[Any, str | None]:
    """The image as every entry point reads it (``load_image``) and as the runner accepts it
    (``check_image``: no strip its processor would blow up), or a clip's sampled frames (``pipe.read_clip``),
    or why it cannot be used."""
    clip = is_clip(path)
    try:
        if clip:
            reader = getattr(pipe, "read_clip", None)
            if reader is None:
                return None, "cannot read clip: this runner has no video (an ONNX export); caption clips with the model"
            media = reader(path, **(sampling or {}))
        else:
            media = load_image(path)
    except InputError as err:
        return None, f"cannot read {'clip' if clip else 'image'}: {err}"
    except Exception as err:  # unreadable for any reason: reported per image
        return None, f"cannot read {'clip' if clip else 'image'}: {type(err).__name__}: {err}"
    if pipe is not None:
        try:
            pipe.check_image(media)
        except InputError as err:
            return None, str(err)
    return media, None


def caption_batch(pipe, batch: Sequence[Item], *, scr, prompt: str | None, max_new_tokens: int,
                  sampling: dict | None = None, **generate_kwargs) -> list[dict]:
    """One record per item (module docstring). The batch's images are read here, so a folder of thousands
    is never in memory at once, and in runs of at most ``SCR_MAX_BATCH_PIXELS`` decoded pixels (sizes
    from the headers: ``budgets``), so eight 64-megapixel scans never sit in memory together; each clip
    is a model call of its own (clips of different lengths do not batch in every family); an unreadable
    one gets its error and the others are captioned. ``sampling``: ``frames`` / ``fps`` for the clips (and
    ``max_pixels``, the bound of their sampled frames: ``video.read_clip``; the ComfyUI node passes it).
    ``generate_kwargs`` go to ``pipe.generate`` (``progress``, ``should_stop``)."""
    stills = [item for item in batch if not is_clip(item.path)]
    runs = [[stills[i] for i in run]
            for run in pixel_runs([header_pixels(item.path) for item in stills], batch_pixel_budget())]
    runs += [[item] for item in batch if is_clip(item.path)]
    done = {}
    for run in runs:
        for record in _caption_run(pipe, run, scr=scr, prompt=prompt, max_new_tokens=max_new_tokens,
                                   sampling=sampling, **generate_kwargs):
            done[record["image"]] = record
    return [done[item.name] for item in batch]


def _caption_run(pipe, batch: Sequence[Item], *, scr, prompt: str | None, max_new_tokens: int,
                 sampling: dict | None = None, **generate_kwargs) -> list[dict]:
    """``caption_batch`` for pictures decoded together (or one clip)."""
    loaded = [(item, *_load(item.path, pipe, sampling)) for item in batch]
    readable = [(index, media) for index, (_, media, _) in enumerate(loaded) if media is not None]
    results = {}
    if readable:
        answers = pipe.generate([[media] for _, media in readable], prompt if prompt is None else
                                [prompt] * len(readable), scr=scr, max_new_tokens=max_new_tokens, **generate_kwargs)
        results = {index: r for (index, _), r in zip(readable, answers)}
    records: list[dict] = []
    for index, (item, media, error) in enumerate(loaded):
        if error is not None:
            records.append({"image": item.name, "caption": None, "error": error})
            continue
        r = results[index]
        records.append({"image": item.name, "caption": r.text, "plan": plan_summary(r.plan),
                        "entropy": r.diagnosis.entropy if r.diagnosis else None,
                        **({"frames": len(media.frames)} if isinstance(media, SampledClip) else {})})
    return records


def clean_prefix(prefix: str, what: str = "prefix") -> str:
    """A prefix (or suffix) as written into every caption file: control characters (NUL, newlines, tabs) and
    line separators become spaces, runs of spaces one, a joining comma dropped; more than
    ``MAX_PREFIX_CHARS`` is one line (checked before the model runs)."""
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") else c for c in str(prefix or ""))
    word = " ".join(text.split()).strip(",").strip()
    if len(word) > MAX_PREFIX_CHARS:
        raise InputError(f"the {what} is {len(word):,} characters, more than {MAX_PREFIX_CHARS}; it is a trigger word "
                         "or a few tags put around every caption")
    return word


@dataclass(frozen=True)
class CaptionJob:
    """What is done to each batch, apart from the model: ``job(pipe)`` is the batch function
    (``caption_batch``). Picklable, so a Ray actor builds the same function around its own model."""

    scr: SCRConfig | None
    prompt: str | None
    max_new_tokens: int
    sampling: dict | None = None  # frames / fps for the clips

    def __call__(self, pipe):
        return lambda batch: caption_batch(pipe, batch, scr=self.scr, prompt=self.prompt,
                                           max_new_tokens=self.max_new_tokens, sampling=self.sampling)


def with_prefix(prefix: str, caption: str) -> str:
    """A trigger word before the caption, as LoRA data sets want it: ``ohwx`` -> ``ohwx, a cup ...``."""
    word = clean_prefix(prefix)
    return f"{word}, {caption}" if word else caption


def with_suffix(caption: str, suffix: str) -> str:
    """Words after the caption (the same rules as ``with_prefix``), its final full stop giving way to the
    comma: ``best quality`` -> ``a cup, best quality``."""
    word = clean_prefix(suffix, "suffix")
    return f"{caption.rstrip().removesuffix('.')}, {word}" if word else caption


def mirrored_targets(names: Sequence[str], base: Path, extension: str = ".txt") -> list[Path]:
    """``base/<name with extension>`` for each image name relative to its source folder (``Item.name``):
    the source's subfolders mirrored under ``base``, whose subfolders are created and must stay inside it
    (a symlinked subfolder leading out is refused)."""
    base = Path(base).resolve()
    targets = []
    for name in names:
        relative = Path(name).with_suffix(extension)
        if relative.is_absolute() or ".." in relative.parts:
            raise InputError(f"{name}: not a name inside the source folder")
        target = base / relative
        for made in (False, True):  # checked before the folders are made (a symlink out) and after
            real = target.parent.resolve()
            if not inside(real, [base]):
                raise InputError(f"{target.parent} leads outside {base}")
            if not made:
                target.parent.mkdir(parents=True, exist_ok=True)
        targets.append(target)
    if len(set(targets)) != len(targets):
        raise InputError("two captions would go to the same file (e.g. a.png and a.jpg); rename one image")
    return targets


def txt_targets(items: Sequence[Item], done: set[str], overwrite: bool,
                txt_dir: Path | None = None) -> dict[str, Path]:
    """``<stem>.txt`` beside each image file (Save Captions' rules: a listed ``notes.txt`` gets none), or with
    ``txt_dir`` the image names
    mirrored under it (``mirrored_targets``), by image name; refused up front (before any captioning) if one
    is in the way for an image still to caption."""
    present = [i for i in items if is_image_name(i.path.name, clips=True) and i.path.is_file()]
    targets = dict(zip((i.name for i in present), mirrored_targets([i.name for i in present], txt_dir)
                       if txt_dir is not None else caption_targets([str(i.path) for i in present],
                                                                    CaptionMode.BESIDE_IMAGES, output_dir=".")))
    existing = [t for name, t in targets.items() if name not in done and t.exists()]
    if existing and not overwrite:
        raise InputError(f"{existing[0]} exists ({len(existing)} caption file(s) in the way); pass "
                         "--overwrite-txt to replace them")
    return targets


def _write_txt(records: dict[str, dict], targets: dict[str, Path], overwrite: bool, prefix: str = "",
               suffix: str = "") -> tuple[int, list[dict]]:
    """Write the .txt of every captioned image whose file is missing (or all, with ``overwrite``):
    after the captions are safely in OUT, so a crash never leaves a .txt without its record.
    Returns (files written, [{"image", "file", "error"}] for those that could not be)."""
    todo = [(name, with_suffix(with_prefix(prefix, r["caption"]), suffix), targets[name])
            for name, r in records.items()
            if r.get("caption") is not None and name in targets and (overwrite or not targets[name].exists())]
    done = write_caption_files([c for _, c, _ in todo], [t for _, _, t in todo], overwrite=overwrite)
    names = {t: name for name, _, t in todo}
    return len(done.written), [{"image": names[t], "file": str(t), "error": why} for t, why in done.failed]


def check_caption_run(source: str | Path, out: str | Path, txt: bool = False, overwrite_txt: bool = False,
                      shard: Shard = Shard(), txt_dir: Path | None = None, prefix: str = "",  # noqa: B008
                      suffix: str = "") -> tuple[list[Item], dict[str, Path]]:
    """(images, .txt targets) after every check that needs no model: the output file's name and
    folder, the prefix, the source, and (with ``txt``) the files beside the images still to caption."""
    out = Path(out)
    if out.suffix.lower() != ".jsonl":
        raise InputError(f"{out}: the captions file must end in .jsonl")
    if not out.parent.is_dir():
        raise InputError(f"folder {out.parent} does not exist; create it first")
    clean_prefix(prefix), clean_prefix(suffix, "suffix")
    items = list_items(source)
    targets = txt_targets(items, set(read_all(out, "image", ("image",), _FIX, own=shard.file(out))),
                          overwrite_txt, txt_dir) if txt else {}
    return items, targets


def caption_folder(pipe, source: str | Path, out: str | Path, *, scr: SCRConfig | None = SCRConfig(),  # noqa: B008
                   prompt: str | None = None, max_new_tokens: int = 64, batch_size: int = 8, txt: bool = False,
                   overwrite_txt: bool = False, prefix: str = "", suffix: str = "", txt_dir: Path | None = None,
                   model_name: str = "", progress: bool = True, shard: Shard | None = None, engine=None,
                   frames: int | None = None, fps: float | None = None) -> dict:
    """Caption every image of ``source`` into ``out`` (module docstring); returns the summary.
    ``frames`` / ``fps``: how the folder's clips are sampled (default: the family's sampling).

    engine: where the batches run when not here with ``pipe`` (``scr_core.ray_engine.RayEngine``; ``pipe``
    is then None): the records, files and summary are the same.
    """
    check_sizes(None, batch_size)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1 (got {max_new_tokens!r})")
    out = Path(out)
    numerics = engine.numerics() if engine else model_numerics(pipe)
    shard = shard or (Shard() if engine else Shard.current(cpu=on_cpu(numerics)))
    items, targets = check_caption_run(source, out, txt, overwrite_txt, shard, txt_dir, prefix, suffix)
    meta = {"source": str(Path(source).resolve()), "model": model_name, **numerics,
            "scr": None if scr is None else {k: v for k, v in scr.__dict__.items() if not k.startswith("_")},
            "prompt": prompt, "max_new_tokens": max_new_tokens, "batch_size": batch_size}
    sampling: dict[str, Any] = {k: v for k, v in (("frames", frames), ("fps", fps)) if v is not None}
    if sampling:
        Clip("clip", **sampling)  # checked before any captioning
        meta["clip_sampling"] = sampling  # a resume with other sampling is refused
    check_run(out.parent, json.loads(json.dumps(meta)), run_file=sidecar(out, "run"))

    job = CaptionJob(scr, prompt, max_new_tokens, sampling)
    batches = batches_of(items, batch_size)
    execute = engine.executor(job) if engine else one_by_one(job(pipe))
    records = run_shards(batches, lambda i: i.name, execute, out, shard, "image", ("image",), _FIX, progress,
                         desc="caption-folder")
    summary_file = sidecar(out, "summary")
    if shard.main:
        assert records is not None  # rank 0 gets every record
        unreadable = [{"image": r["image"], "error": r["error"]} for r in records.values() if r.get("error")]
        degenerate = degenerate_captions((r["image"], r["caption"]) for r in records.values() if not r.get("error"))
        written, txt_failed = _write_txt(records, targets, overwrite_txt, prefix, suffix) if txt else (0, [])
        summary = {**meta, "images": len(items), "captioned": len(records) - len(unreadable),
                   "unreadable": unreadable, "txt_written": written, "txt_failed": txt_failed,
                   "degenerate": [{"image": name, "reason": reason} for name, reason in degenerate]}
        write_atomically(summary_file, lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    shard.barrier()
    return json.loads(summary_file.read_text())


__all__ = ["IMAGE_PATTERNS", "CaptionJob", "Item", "caption_batch", "caption_folder", "clean_prefix", "list_items",
           "mirrored_targets", "plan_summary", "sidecar", "with_prefix", "with_suffix"]
