"""Write held-out testbed scenes as POPE and CHAIR benchmark folders in the official formats.

Why: the testbed must be scored by the same code paths as the real benchmarks, so the
files here are byte-compatible with RUCAIBox/POPE's question files (and LLaVA's
``eval_pope.py``) and with the COCO annotation files that CHAIR (LisaAnne/Hallucination and
the Maxlinn standalone variant used by OPERA, PAI, SID, lmms-eval) reads.

POPE negatives follow POPE's ``utils.pope``: for each positive a negative is drawn, either
uniformly from the absent classes (random), as the most frequent absent class in the set
(popular), or as the absent class that co-occurs most often with that positive (adversarial);
frequencies and co-occurrences are counted over the written set, as POPE does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scr_core.testbed.scenes import CLASS_NAMES, OBJECT_CLASSES, Scene, question_for

POPE_SPLITS: tuple[str, ...] = ("random", "popular", "adversarial")
IMAGE_PREFIX = "testbed"
COCO_YEAR = "2014"
_SPLIT_CODES = {"random": 1, "popular": 2, "adversarial": 3}
_SUPERCATEGORIES = {"fork": "kitchen", "knife": "kitchen", "cup": "kitchen", "plate": "kitchen",
                    "dog": "animal", "cat": "animal", "ball": "sports", "box": "indoor"}


# --------------------------------------------------------------------------- shared
def image_file_name(image_id: int) -> str:
    """COCO-like name with a 12-digit id, e.g. ``testbed_000000000001.png``."""
    return f"{IMAGE_PREFIX}_{image_id:012d}.png"


def image_ids(scenes: Sequence[Scene]) -> list[int]:
    """Image ids are 1-based positions in ``scenes``, shared by the POPE and CHAIR writers."""
    return list(range(1, len(scenes) + 1))


def write_images(scenes: Sequence[Scene], images_dir: str | Path) -> list[str]:
    """Save every scene as a lossless PNG; returns the file names in scene order."""
    folder = Path(images_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for image_id, scene in zip(image_ids(scenes), scenes):
        name = image_file_name(image_id)
        scene.image.save(folder / name, format="PNG")
        names.append(name)
    return names


def _write_json(path: Path, payload) -> Path:
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def _write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- POPE
def pope_file_name(split: str, dataset: str = "coco") -> str:
    """POPE's own naming: ``coco_pope_random.json`` etc. (JSON lines despite the suffix)."""
    if split not in POPE_SPLITS:
        raise ValueError(f"unknown POPE split {split!r}")
    return f"{dataset}_pope_{split}.json"


def object_frequencies(scenes: Sequence[Scene]) -> dict[str, int]:
    """Images containing each class, most frequent first (POPE's ``ground_truth_objects``)."""
    counts = Counter(name for s in scenes for name in s.present)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], CLASS_NAMES.index(kv[0]))))


def co_occurrence(scenes: Sequence[Scene]) -> dict[str, list[str]]:
    """For each class, the classes seen with it, most often first (POPE's ``co_occur``)."""
    pairs: dict[str, Counter] = {}
    for s in scenes:
        for a in s.present:
            pairs.setdefault(a, Counter()).update(b for b in s.present if b != a)
    return {
        a: [b for b, _ in sorted(c.items(), key=lambda kv: (-kv[1], CLASS_NAMES.index(kv[0])))]
        for a, c in sorted(pairs.items(), key=lambda kv: CLASS_NAMES.index(kv[0]))
    }


def _rng(seed: int, image_id: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(image_id), stream, 0x909E]))


def _pick_negative(split, positive, taken, universe, freq_order, co_occur, rng) -> str:
    """One negative as POPE's ``utils.pope`` picks it; random is the fallback for the others."""
    ranked: list[str] = []
    if split == "popular":
        ranked = freq_order
    elif split == "adversarial":
        ranked = co_occur.get(positive, [])
    for name in ranked:
        if name not in taken:
            return name
    eligible = [n for n in universe if n not in taken]
    return eligible[int(rng.integers(len(eligible)))]


def build_pope(
    scenes: Sequence[Scene], split: str, seed: int, n_questions_per_image: int = 6
) -> list[dict]:
    """POPE question rows for one split: ``{"question_id", "image", "text", "label"}``.

    Per image ``k = min(n_questions_per_image // 2, #present, #absent)`` positives and as
    many negatives, alternating yes/no as POPE does. POPE drops images with fewer than
    three objects; here they are kept with fewer pairs, so every image stays balanced.
    The positives depend only on ``seed`` and the image, so all splits share them.
    """
    if split not in POPE_SPLITS:
        raise ValueError(f"unknown POPE split {split!r}")
    if n_questions_per_image < 2 or n_questions_per_image % 2:
        raise ValueError("n_questions_per_image must be an even number >= 2")
    freq = object_frequencies(scenes)
    universe = [n for n in CLASS_NAMES if n in freq]
    freq_order = list(freq)
    co_occur = co_occurrence(scenes)
    rows: list[dict] = []
    for image_id, scene in zip(image_ids(scenes), scenes):
        present = [n for n in universe if n in scene.present]
        absent = [n for n in universe if n not in scene.present]
        k = min(n_questions_per_image // 2, len(present), len(absent))
        order = _rng(seed, image_id, 0).permutation(len(present))
        positives = [present[i] for i in order[:k]]
        neg_rng = _rng(seed, image_id, _SPLIT_CODES[split])
        taken = set(scene.present)
        for pos in positives:
            neg = _pick_negative(split, pos, taken, universe, freq_order, co_occur, neg_rng)
            taken.add(neg)
            for name, label in ((pos, "yes"), (neg, "no")):
                rows.append({"question_id": len(rows) + 1, "image": image_file_name(image_id),
                             "text": question_for(name), "label": label})
    return rows


def write_pope(
    scenes: Sequence[Scene],
    out_dir: str | Path,
    seed: int,
    n_questions_per_image: int = 6,
    dataset: str = "coco",
) -> dict[str, Path]:
    """Write a POPE folder; returns the written paths by role.

    Layout (names as in RUCAIBox/POPE ``output/coco/``)::

        out_dir/images/testbed_000000000001.png ...
        out_dir/coco_pope_{random,popular,adversarial}.json   JSON lines, the question files
        out_dir/coco_ground_truth_objects.json                class -> #images (POPE output)
        out_dir/coco_co_occur.json                            class -> co-occurring classes
        out_dir/coco_ground_truth_segmentation.json           POPE's input: {"image", "objects"} lines
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"images": out / "images"}
    write_images(scenes, paths["images"])
    for split in POPE_SPLITS:
        rows = build_pope(scenes, split, seed, n_questions_per_image)
        paths[split] = _write_jsonl(out / pope_file_name(split, dataset), rows)
    paths["ground_truth_objects"] = _write_json(
        out / f"{dataset}_ground_truth_objects.json", object_frequencies(scenes)
    )
    paths["co_occur"] = _write_json(out / f"{dataset}_co_occur.json", co_occurrence(scenes))
    segmentation = [
        {"image": image_file_name(i), "image_id": i, "objects": [o.name for o in s.objects]}
        for i, s in zip(image_ids(scenes), scenes)
    ]
    paths["segmentation"] = _write_jsonl(out / f"{dataset}_ground_truth_segmentation.json", segmentation)
    return paths


# --------------------------------------------------------------------------- CHAIR / COCO
def coco_categories() -> list[dict]:
    """COCO ``categories``: ids 1..8 in class order; ``name`` is CHAIR's node word."""
    return [
        {"supercategory": _SUPERCATEGORIES.get(c.name, "object"), "id": i, "name": c.name, "shape": c.shape}
        for i, c in enumerate(OBJECT_CLASSES, start=1)
    ]


def _coco_header(kind: str) -> dict:
    return {
        "info": {"description": f"scr_core synthetic testbed ({kind})", "version": "1.0",
                 "year": int(COCO_YEAR), "contributor": "scr_core.testbed", "url": "", "date_created": ""},
        "licenses": [],
    }


def _coco_images(scenes: Sequence[Scene]) -> list[dict]:
    return [
        {"id": i, "file_name": image_file_name(i), "width": s.image.width, "height": s.image.height,
         "license": 0, "scene_seed": s.seed, "scene_index": s.index}
        for i, s in zip(image_ids(scenes), scenes)
    ]


def coco_instances(scenes: Sequence[Scene]) -> dict:
    """COCO ``instances`` dict: one box annotation per object, the drawn outline as polygon."""
    cat_id = {c.name: i for i, c in enumerate(OBJECT_CLASSES, start=1)}
    annotations: list[dict] = []
    for image_id, scene in zip(image_ids(scenes), scenes):
        for obj in scene.objects:
            polygon = [round(v, 2) for point in obj.polygon() for v in point]
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cat_id[obj.name],
                "bbox": [float(v) for v in obj.bbox], "area": round(obj.area(), 2),
                "iscrowd": 0, "segmentation": [polygon],
            })
    return {**_coco_header("instances"), "images": _coco_images(scenes),
            "annotations": annotations, "categories": coco_categories()}


def coco_captions(scenes: Sequence[Scene]) -> dict:
    """COCO ``captions`` dict with every reference caption of every scene (up to five each)."""
    pairs = [(image_id, cap) for image_id, scene in zip(image_ids(scenes), scenes) for cap in scene.captions]
    annotations = [{"id": n, "image_id": i, "caption": cap} for n, (i, cap) in enumerate(pairs, start=1)]
    return {**_coco_header("captions"), "images": _coco_images(scenes), "annotations": annotations}


def chair_synonyms() -> str:
    """CHAIR's ``synonyms.txt``: one line per class, ", "-separated, canonical name first."""
    return "".join(", ".join((c.name, c.plural, *c.synonyms)) + "\n" for c in OBJECT_CLASSES)


def write_chair(scenes: Sequence[Scene], out_dir: str | Path) -> dict[str, Path]:
    """Write a CHAIR folder; returns the written paths by role.

    Layout (COCO 2014 names, so ``--coco_path out_dir/annotations`` works unchanged)::

        out_dir/images/testbed_000000000001.png ...
        out_dir/annotations/instances_val2014.json   the scenes' objects (COCO instances)
        out_dir/annotations/captions_val2014.json    their reference captions
        out_dir/annotations/instances_train2014.json empty (no images), with the same categories
        out_dir/annotations/captions_train2014.json  empty
        out_dir/synonyms.txt                         CHAIR synonyms for the 8 classes

    The empty train files exist because CHAIR's ``combine_coco_*`` insists on both splits.
    """
    out = Path(out_dir)
    ann_dir = out / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"images": out / "images"}
    write_images(scenes, paths["images"])
    paths["instances"] = _write_json(ann_dir / f"instances_val{COCO_YEAR}.json", coco_instances(scenes))
    paths["captions"] = _write_json(ann_dir / f"captions_val{COCO_YEAR}.json", coco_captions(scenes))
    paths["instances_train"] = _write_json(ann_dir / f"instances_train{COCO_YEAR}.json", coco_instances([]))
    paths["captions_train"] = _write_json(ann_dir / f"captions_train{COCO_YEAR}.json", coco_captions([]))
    paths["synonyms"] = out / "synonyms.txt"
    paths["synonyms"].write_text(chair_synonyms(), encoding="utf-8")
    return paths


def write_benchmarks(
    scenes: Sequence[Scene], out_dir: str | Path, seed: int, **pope_options
) -> dict[str, dict[str, Path]]:
    """Both folders from one held-out set: ``out_dir/pope`` and ``out_dir/chair``."""
    out = Path(out_dir)
    return {
        "pope": write_pope(scenes, out / "pope", seed, **pope_options),
        "chair": write_chair(scenes, out / "chair"),
    }
