"""``python -m scr_core caption-folder``: caption every image of a folder tree (or a list file) for
dataset builders — batched, resumable, data-parallel under ``accelerate launch`` / ``torchrun``.

``OUT`` (JSON lines) gains one record per image, in path order once the run ends::

    {"image": "cats/001.jpg", "caption": "...", "plan": {...}, "entropy": 4.1}
    {"image": "broken.png", "caption": null, "error": "cannot read image: ..."}

``image`` is relative to the folder (or to the list file's folder). Unreadable images are
recorded with their error, listed in ``OUT``'s summary and skipped, never dropped silently.
``OUT.run.json`` holds the settings (a resume with other settings is refused, as for ``eval``);
``OUT.summary.json`` the counts and the unreadable images. ``--txt`` also writes ``<stem>.txt``
beside each image with ComfyUI's Save Captions rules (``caption_files``; the local user may write
beside any image this command lists), symlinks resolved, never over an existing file unless asked (checked before
the model runs), each atomically, once the captions are safely in ``OUT`` (a resumed run writes
the ones an interrupted run did not get to).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .caption_files import IMAGE_PATTERNS, CaptionMode, is_image_name, caption_targets, list_images, write_captions
from .config import SCRConfig
from .errors import ConfigError, InputError
from .images import load_image
from .outputs import write_atomically
from .runs import check_run, check_sizes, model_numerics, on_cpu
from .shards import Shard, batches_of, read_all, run_shards

_FIX = "delete that line (its image is captioned again) or the file (to start over)"


@dataclass(frozen=True)
class Item:
    """One image: ``name`` as recorded (relative to the root), ``path`` on disk."""

    name: str
    path: Path


def list_items(source: str | Path) -> list[Item]:
    """Images of a folder tree (sorted by path), or of a list file (one path per line, relative to
    the file's folder; blank lines and ``#`` comments skipped; listed files may be missing or broken:
    they are reported per image, not here)."""
    source = Path(source).expanduser()
    if source.is_dir():
        return [Item(p.relative_to(source).as_posix(), p) for p in list_images(source, recursive=True)]
    if not source.is_file():
        raise InputError(f"{source} is neither an image folder nor a list file")
    not_a_list = InputError(f"{source} lists no images (one image path per line)")
    try:
        text_lines = source.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise not_a_list from None
    except OSError as err:
        raise InputError(f"cannot read {source} ({err.strerror})") from None
    if not any(is_image_name(Path(line.strip()).name) for line in text_lines if "\0" not in line):
        raise not_a_list  # e.g. /etc/passwd: refused without echoing a line of it
    items, seen = [], set()
    for line in text_lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        path = Path(text).expanduser()
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


def _load(path: Path) -> tuple[Image.Image | None, str | None]:
    """The image as every entry point reads it (``load_image``), or why it cannot be read."""
    try:
        return load_image(path), None
    except InputError as err:
        return None, f"cannot read image: {err}"
    except Exception as err:  # unreadable for any reason: reported per image
        return None, f"cannot read image: {type(err).__name__}: {err}"


def caption_batch(pipe, batch: Sequence[Item], *, scr, prompt: str | None, max_new_tokens: int,
                  **generate_kwargs) -> list[dict]:
    """One record per item (module docstring). The batch's images are read here, so a folder of thousands
    is never in memory at once; an unreadable one gets its error and the others are captioned.
    ``generate_kwargs`` go to ``pipe.generate`` (``progress``, ``should_stop``)."""
    loaded = [(item, *_load(item.path)) for item in batch]
    readable = [(item, image) for item, image, error in loaded if image is not None]
    results = {}
    if readable:
        answers = pipe.generate([[image] for _, image in readable], prompt if prompt is None else
                                [prompt] * len(readable), scr=scr, max_new_tokens=max_new_tokens, **generate_kwargs)
        results = {item.name: r for (item, _), r in zip(readable, answers)}
    records: list[dict] = []
    for item, _image, error in loaded:
        if error is not None:
            records.append({"image": item.name, "caption": None, "error": error})
            continue
        r = results[item.name]
        records.append({"image": item.name, "caption": r.text, "plan": plan_summary(r.plan),
                        "entropy": r.diagnosis.entropy if r.diagnosis else None})
    return records


def with_prefix(prefix: str, caption: str) -> str:
    """A trigger word before the caption, as LoRA data sets want it: ``ohwx`` -> ``ohwx, a cup ...``."""
    word = (prefix or "").strip().rstrip(",").strip()
    return f"{word}, {caption}" if word else caption


def txt_targets(items: Sequence[Item], done: set[str], overwrite: bool) -> dict[str, Path]:
    """``<stem>.txt`` beside each readable file (Save Captions' rules), by image name; refused up
    front (before any captioning) if one is in the way for an image still to caption."""
    present = [i for i in items if i.path.is_file()]
    targets = dict(zip((i.name for i in present), caption_targets([str(i.path) for i in present],
                                                                  CaptionMode.BESIDE_IMAGES, output_dir=".")))
    existing = [t for name, t in targets.items() if name not in done and t.exists()]
    if existing and not overwrite:
        raise InputError(f"{existing[0]} exists ({len(existing)} caption file(s) in the way); pass "
                         "--overwrite-txt to replace them")
    return targets


def _write_txt(records: dict[str, dict], targets: dict[str, Path], overwrite: bool, prefix: str = "") -> int:
    """Write the .txt of every captioned image whose file is missing (or all, with ``overwrite``):
    after the captions are safely in OUT, so a crash never leaves a .txt without its record."""
    todo = [(with_prefix(prefix, r["caption"]), targets[name]) for name, r in records.items()
            if r.get("caption") is not None and name in targets and (overwrite or not targets[name].exists())]
    if todo:
        write_captions([c for c, _ in todo], [t for _, t in todo], overwrite=overwrite)
    return len(todo)


def check_caption_run(source: str | Path, out: str | Path, txt: bool = False, overwrite_txt: bool = False,
                      shard: Shard = Shard()) -> tuple[list[Item], dict[str, Path]]:  # noqa: B008
    """(images, .txt targets) after every check that needs no model: the output file's name and
    folder, the source, and (with ``txt``) the files beside the images still to caption."""
    out = Path(out)
    if out.suffix.lower() != ".jsonl":
        raise InputError(f"{out}: the captions file must end in .jsonl")
    if not out.parent.is_dir():
        raise InputError(f"folder {out.parent} does not exist; create it first")
    items = list_items(source)
    targets = txt_targets(items, set(read_all(out, "image", ("image",), _FIX, own=shard.file(out))),
                          overwrite_txt) if txt else {}
    return items, targets


def caption_folder(pipe, source: str | Path, out: str | Path, *, scr: SCRConfig | None = SCRConfig(),  # noqa: B008
                   prompt: str | None = None, max_new_tokens: int = 64, batch_size: int = 8, txt: bool = False,
                   overwrite_txt: bool = False, prefix: str = "", model_name: str = "", progress: bool = True,
                   shard: Shard | None = None) -> dict:
    """Caption every image of ``source`` into ``out`` (module docstring); returns the summary."""
    check_sizes(None, batch_size)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1 (got {max_new_tokens!r})")
    out = Path(out)
    shard = shard or Shard.current(cpu=on_cpu(pipe))
    items, targets = check_caption_run(source, out, txt, overwrite_txt, shard)
    meta = {"source": str(Path(source).resolve()), "model": model_name, **model_numerics(pipe),
            "scr": None if scr is None else {k: v for k, v in scr.__dict__.items() if not k.startswith("_")},
            "prompt": prompt, "max_new_tokens": max_new_tokens, "batch_size": batch_size}
    check_run(out.parent, json.loads(json.dumps(meta)), run_file=sidecar(out, "run"))

    def work(batch: list[Item]) -> list[dict]:
        return caption_batch(pipe, batch, scr=scr, prompt=prompt, max_new_tokens=max_new_tokens)

    batches = batches_of(items, batch_size)
    records = run_shards(batches, lambda i: i.name, work, out, shard, "image", ("image",), _FIX, progress,
                         desc="caption-folder")
    summary_file = sidecar(out, "summary")
    if shard.main:
        assert records is not None  # rank 0 gets every record
        unreadable = [{"image": r["image"], "error": r["error"]} for r in records.values() if r.get("error")]
        written = _write_txt(records, targets, overwrite_txt, prefix) if txt else 0
        summary = {**meta, "images": len(items), "captioned": len(records) - len(unreadable),
                   "unreadable": unreadable, "txt_written": written}
        write_atomically(summary_file, lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    shard.barrier()
    return json.loads(summary_file.read_text())


__all__ = ["IMAGE_PATTERNS", "Item", "caption_batch", "caption_folder", "list_items", "plan_summary", "sidecar",
           "with_prefix"]
