"""Tests for the synthetic testbed scenes and the POPE/CHAIR benchmark writers."""

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter

import numpy as np
import pytest

from scr_core.testbed import benchmarks as bm
from scr_core.testbed.scenes import (
    CAPTION_PROMPTS,
    CHAT_ROLE_MARKERS,
    CLASS_NAMES,
    CO_OCCURRENCE_PAIRS,
    OBJECT_CLASSES,
    SHORT_ANSWER_PROMPT,
    SceneOptions,
    generate_scene,
    generate_scenes,
    get_class,
    partners_of,
    relation,
    vocabulary,
    words_of,
)

TEST_SEED = 20250611


@pytest.fixture(scope="module")
def many_scenes():
    """2,000 default scenes, timed once so the speed check costs nothing extra."""
    start = time.perf_counter()
    scenes = generate_scenes(2000, seed=1)
    return scenes, time.perf_counter() - start


@pytest.fixture(scope="module")
def held_out():
    return generate_scenes(300, seed=TEST_SEED)


@pytest.fixture(scope="module")
def pope_dir(tmp_path_factory, held_out):
    out = tmp_path_factory.mktemp("pope")
    bm.write_pope(held_out, out, seed=3, n_questions_per_image=6)
    return out


@pytest.fixture(scope="module")
def chair_dir(tmp_path_factory, held_out):
    out = tmp_path_factory.mktemp("chair")
    bm.write_chair(held_out, out)
    return out


def _png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _class_mentions(text: str) -> list[str]:
    return [w for w in words_of(text) if w in CLASS_NAMES]


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_pixels_and_metadata():
    a, b = generate_scenes(25, seed=7), generate_scenes(25, seed=7)
    for sa, sb in zip(a, b):
        assert sa.image.tobytes() == sb.image.tobytes()
        assert _png_bytes(sa.image) == _png_bytes(sb.image)
        assert (sa.objects, sa.captions, sa.index, sa.seed) == (sb.objects, sb.captions, sb.index, sb.seed)


def test_scene_does_not_depend_on_batch_size():
    batch = generate_scenes(12, seed=7)
    alone = generate_scene(9, seed=7)
    assert alone.image.tobytes() == batch[9].image.tobytes()
    assert alone.objects == batch[9].objects


def test_different_seed_gives_different_scenes():
    a, b = generate_scenes(25, seed=7), generate_scenes(25, seed=8)
    assert all(sa.image.tobytes() != sb.image.tobytes() for sa, sb in zip(a, b))
    assert [s.objects for s in a] != [s.objects for s in b]


# --------------------------------------------------------------------------- layout
def test_object_counts_sizes_and_bounds(many_scenes):
    scenes, _ = many_scenes
    counts = Counter(len(s.objects) for s in scenes)
    assert set(counts) == {1, 2, 3, 4, 5}
    assert min(counts.values()) > 300  # roughly uniform over 1..5
    for s in scenes:
        assert s.image.size == (96, 96) and s.image.mode == "RGB"
        assert len(s.present) == len(s.objects)  # each class at most once
        for o in s.objects:
            x, y, w, h = o.bbox
            assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96
            assert 16 <= w <= 32 and w == h  # at least two 8-px patches wide
            assert o.shape == get_class(o.name).shape


def test_objects_do_not_overlap_by_default(many_scenes):
    scenes, _ = many_scenes
    for s in scenes[:500]:
        for i, a in enumerate(s.objects):
            for b in s.objects[i + 1:]:
                ax0, ay0, ax1, ay1 = a.xyxy
                bx0, by0, bx1, by1 = b.xyxy
                assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0


def test_object_count_options_are_respected():
    scenes = generate_scenes(200, seed=2, min_objects=3, max_objects=4)
    assert {len(s.objects) for s in scenes} == {3, 4}


def test_hard_scenes_have_small_objects():
    scenes = generate_scenes(200, seed=2, hard_fraction=0.5)
    hard = [s for s in scenes if s.hard]
    assert 60 < len(hard) < 140
    assert all(o.bbox[2] <= 14 for s in hard for o in s.objects)
    assert all(o.bbox[2] >= 16 for s in scenes if not s.hard for o in s.objects)


def test_present_objects_are_drawn_and_absent_ones_are_not():
    """Each present class colour fills its outline; no absent class colour appears anywhere."""
    for s in generate_scenes(200, seed=4):
        pixels = np.asarray(s.image).astype(int)
        for cls in OBJECT_CLASSES:
            close = np.abs(pixels - np.array(cls.colour_rgb)).max(axis=-1) <= 30
            if cls.name in s.present:
                obj = next(o for o in s.objects if o.name == cls.name)
                x, y, w, h = obj.bbox
                assert close[y:y + h, x:x + w].sum() >= 0.6 * obj.area()
            else:
                assert close.sum() == 0


def test_patch_indices_cover_every_painted_pixel():
    """The 8-px patches an object is drawn on are exactly within its reported patch set."""
    for s in generate_scenes(30, seed=5, noise_std=0.0, colour_jitter=0):
        pixels = np.asarray(s.image).astype(int)
        for obj in s.objects:
            patches = set(obj.patch_indices(patch_size=8, image_width=96))
            painted = np.abs(pixels - np.array(obj.colour_rgb)).max(axis=-1) <= 10
            rows, cols = np.nonzero(painted)
            assert rows.size > 0
            assert {int(r // 8 * 12 + c // 8) for r, c in zip(rows, cols)} <= patches
            assert 4 <= len(patches) <= 25 and all(0 <= p < 144 for p in patches)


# --------------------------------------------------------------------------- co-occurrence
def test_cooccurrence_rate_is_close_to_point_nine(many_scenes):
    scenes, _ = many_scenes
    with_a = with_both = 0
    for a, b in CO_OCCURRENCE_PAIRS:
        scenes_a = [s for s in scenes if a in s.present]
        both = sum(b in s.present for s in scenes_a)
        assert len(scenes_a) > 400
        assert abs(both / len(scenes_a) - 0.9) < 0.05, (a, b, both / len(scenes_a))
        with_a, with_both = with_a + len(scenes_a), with_both + both
    assert abs(with_both / with_a - 0.9) < 0.025


def test_class_frequencies_are_roughly_balanced(many_scenes):
    scenes, _ = many_scenes
    freq = Counter(n for s in scenes for n in s.present)
    assert set(freq) == set(CLASS_NAMES)
    assert max(freq.values()) / min(freq.values()) < 1.6


def test_prior_can_be_switched_off():
    scenes = generate_scenes(1500, seed=9, cooccurrence_prob=None)
    forks = [s for s in scenes if "fork" in s.present]
    rate = sum("knife" in s.present for s in forks) / len(forks)
    assert rate < 0.6


def test_generation_is_fast_enough_for_10k_scenes(many_scenes):
    _, seconds = many_scenes
    assert seconds * 5 < 60  # 2,000 scenes timed; 10k must take under a minute


# --------------------------------------------------------------------------- text
def test_captions_mention_exactly_the_present_objects(many_scenes):
    scenes, _ = many_scenes
    for s in scenes[:500]:
        assert s.caption == s.captions[0] and 1 <= len(s.captions) <= 5
        for cap in s.captions:
            mentions = _class_mentions(cap)
            assert sorted(mentions) == sorted(s.present), cap
            assert cap.endswith(".") and cap.startswith("a ")


def test_spatial_relations_in_captions_are_true(many_scenes):
    scenes, _ = many_scenes
    seen = Counter()
    pattern = re.compile(r"^a (\w+) (next to|above|below|and) a (\w+)")
    for s in scenes[:800]:
        by_name = {o.name: o for o in s.objects}
        for cap in s.captions:
            m = pattern.match(cap)
            if not m:
                continue
            first, rel, second = by_name[m.group(1)], m.group(2), by_name[m.group(3)]
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = first.xyxy, second.xyxy
            seen[rel] += 1
            if rel == "above":
                assert ay1 <= by0 and ax0 < bx1 and bx0 < ax1
            elif rel == "below":
                assert by1 <= ay0 and ax0 < bx1 and bx0 < ax1
            elif rel == "next to":
                assert ay0 < by1 and by0 < ay1 and (ax1 <= bx0 or bx1 <= ax0)
            else:
                assert relation(first, second) is None
    assert all(seen[r] > 50 for r in ("next to", "above", "below", "and"))


def test_yes_no_questions_match_scene(many_scenes):
    scene = many_scenes[0][0]
    qs = scene.questions()
    assert [q.name for q in qs] == list(CLASS_NAMES)
    for q in qs:
        assert q.text == f"Is there a {q.name} in the image?"
        assert q.answer == ("yes" if q.name in scene.present else "no")


def test_vocabulary_covers_every_caption_question_and_prompt(many_scenes):
    scenes, _ = many_scenes
    vocab = set(vocabulary())
    texts = [cap for s in scenes[:500] for cap in s.captions]
    texts += [q.text for q in scenes[0].questions()] + ["yes", "no", SHORT_ANSWER_PROMPT]
    texts += [*CAPTION_PROMPTS, *CHAT_ROLE_MARKERS]
    used = {tok for t in texts for tok in words_of(t)}
    assert used <= vocab
    assert set(CLASS_NAMES) <= vocab and len(vocab) < 80
    assert set(vocabulary(lowercase=True)) == {w.lower() for w in vocab}


def test_invalid_options_are_rejected():
    with pytest.raises(TypeError):
        generate_scenes(1, seed=0, n_objects=3)
    with pytest.raises(ValueError):
        SceneOptions(min_objects=4, max_objects=2)
    with pytest.raises(ValueError):
        SceneOptions(cooccurrence_prob=1.5)


# --------------------------------------------------------------------------- POPE
def test_pope_files_have_official_names_and_structure(pope_dir, held_out):
    images = {p.name for p in (pope_dir / "images").iterdir()}
    assert len(images) == len(held_out)
    for split in bm.POPE_SPLITS:
        rows = _read_jsonl(pope_dir / f"coco_pope_{split}.json")
        assert [r["question_id"] for r in rows] == list(range(1, len(rows) + 1))
        for r in rows:
            assert set(r) == {"question_id", "image", "text", "label"}
            assert r["label"] in ("yes", "no") and r["image"] in images
            assert re.fullmatch(r"Is there an? \w+ in the image\?", r["text"])
    freq = json.loads((pope_dir / "coco_ground_truth_objects.json").read_text())
    assert set(freq) == set(CLASS_NAMES)
    co = json.loads((pope_dir / "coco_co_occur.json").read_text())
    assert co["fork"][0] == "knife" and co["cup"][0] == "plate" and co["dog"][0] == "cat"
    seg = _read_jsonl(pope_dir / "coco_ground_truth_segmentation.json")
    assert [set(r["objects"]) for r in seg] == [set(s.present) for s in held_out]


def _questions_by_image(rows):
    per_image: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        per_image.setdefault(r["image"], []).append((r["text"].split()[3], r["label"]))
    return per_image


def test_pope_is_balanced_and_negatives_are_truly_absent(pope_dir, held_out):
    truth = {bm.image_file_name(i): s.present for i, s in zip(bm.image_ids(held_out), held_out)}
    for split in bm.POPE_SPLITS:
        per_image = _questions_by_image(_read_jsonl(pope_dir / f"coco_pope_{split}.json"))
        assert set(per_image) == set(truth)  # every image is asked about
        for image, qa in per_image.items():
            labels = Counter(label for _, label in qa)
            assert labels["yes"] == labels["no"] >= 1
            assert labels["yes"] == min(3, len(truth[image]))
            names = [name for name, _ in qa]
            assert len(set(names)) == len(names)
            for name, label in qa:
                assert (name in truth[image]) == (label == "yes")


def test_pope_splits_share_positives(pope_dir):
    positives = []
    for split in bm.POPE_SPLITS:
        rows = _read_jsonl(pope_dir / f"coco_pope_{split}.json")
        positives.append([(r["image"], r["text"]) for r in rows if r["label"] == "yes"])
    assert positives[0] == positives[1] == positives[2]


def test_popular_negatives_are_the_most_frequent_absent_classes(pope_dir, held_out):
    order = list(bm.object_frequencies(held_out))
    truth = {bm.image_file_name(i): s.present for i, s in zip(bm.image_ids(held_out), held_out)}
    per_image = _questions_by_image(_read_jsonl(pope_dir / "coco_pope_popular.json"))
    for image, qa in per_image.items():
        negatives = [name for name, label in qa if label == "no"]
        absent_by_freq = [n for n in order if n not in truth[image]]
        assert negatives == absent_by_freq[: len(negatives)]


def _partner_fraction(rows, truth):
    negatives = [(r["image"], r["text"].split()[3]) for r in rows if r["label"] == "no"]
    hits = sum(any(name in partners_of(p) for p in truth[image]) for image, name in negatives)
    return hits / len(negatives)


def test_adversarial_negatives_are_cooccurrence_partners_more_often(pope_dir, held_out):
    truth = {bm.image_file_name(i): s.present for i, s in zip(bm.image_ids(held_out), held_out)}
    adv = _partner_fraction(_read_jsonl(pope_dir / "coco_pope_adversarial.json"), truth)
    rnd = _partner_fraction(_read_jsonl(pope_dir / "coco_pope_random.json"), truth)
    assert adv > 1.3 * rnd and adv - rnd > 0.04


def test_write_pope_is_deterministic(tmp_path, held_out):
    scenes = held_out[:40]
    bm.write_pope(scenes, tmp_path / "a", seed=1)
    bm.write_pope(scenes, tmp_path / "b", seed=1)
    bm.write_pope(scenes, tmp_path / "c", seed=2)
    name = "coco_pope_random.json"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    png = bm.image_file_name(1)
    assert (tmp_path / "a" / "images" / png).read_bytes() == (tmp_path / "b" / "images" / png).read_bytes()


def test_pope_questions_per_image_is_validated(held_out):
    with pytest.raises(ValueError):
        bm.build_pope(held_out[:5], "random", seed=0, n_questions_per_image=3)
    rows = bm.build_pope(held_out[:50], "random", seed=0, n_questions_per_image=2)
    assert len(rows) == 100


# --------------------------------------------------------------------------- CHAIR / COCO
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own numpy-2 warning
def test_coco_instances_load_with_pycocotools(chair_dir, held_out):
    from pycocotools.coco import COCO

    coco = COCO(str(chair_dir / "annotations" / "instances_val2014.json"))
    cats = coco.loadCats(coco.getCatIds())
    assert [c["name"] for c in cats] == list(CLASS_NAMES)
    assert len(coco.getAnnIds()) == sum(len(s.objects) for s in held_out)
    for image_id, scene in zip(bm.image_ids(held_out), held_out):
        info = coco.loadImgs(image_id)[0]
        assert (chair_dir / "images" / info["file_name"]).is_file()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        names = {coco.loadCats(a["category_id"])[0]["name"] for a in anns}
        assert names == set(scene.present)
        boxes = sorted(tuple(map(float, o.bbox)) for o in scene.objects)
        assert sorted(tuple(a["bbox"]) for a in anns) == boxes
    ring_id = CLASS_NAMES.index("plate") + 1  # the only shape with a hole; its polygon is the outline
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=list(range(1, 31)))):
        mask = coco.annToMask(ann)
        assert mask.shape == (96, 96)
        if ann["category_id"] != ring_id:
            assert abs(int(mask.sum()) - ann["area"]) <= 0.15 * ann["area"] + 8


def test_coco_captions_and_train_placeholders(chair_dir, held_out):
    from pycocotools.coco import COCO

    caps = COCO(str(chair_dir / "annotations" / "captions_val2014.json"))
    for image_id, scene in zip(bm.image_ids(held_out), held_out):
        refs = [a["caption"] for a in caps.loadAnns(caps.getAnnIds(imgIds=image_id))]
        assert refs == list(scene.captions)
    for kind in ("instances", "captions"):
        train = json.loads((chair_dir / "annotations" / f"{kind}_train2014.json").read_text())
        assert {"info", "licenses", "images", "annotations"} <= set(train)
        assert train["images"] == [] and train["annotations"] == []
    train_inst = json.loads((chair_dir / "annotations" / "instances_train2014.json").read_text())
    assert [c["name"] for c in train_inst["categories"]] == list(CLASS_NAMES)


def _chair_tables(chair_dir):
    """Read synonyms.txt the way CHAIR does: ``line.strip().split(', ')``, first entry is the node."""
    lines = (chair_dir / "synonyms.txt").read_text().splitlines()
    synonyms = [line.strip().split(", ") for line in lines]
    inverse = {word: group[0] for group in synonyms for word in group}
    return synonyms, inverse


def test_synonyms_file_is_in_chair_format(chair_dir):
    synonyms, inverse = _chair_tables(chair_dir)
    assert [g[0] for g in synonyms] == list(CLASS_NAMES)
    words = [w for g in synonyms for w in g]
    assert len(words) == len(set(words))  # no word maps to two classes
    assert inverse["knives"] == "knife" and inverse["boxes"] == "box" and inverse["puppy"] == "dog"


def test_reference_captions_score_zero_chair_and_a_hallucination_is_caught(chair_dir, held_out):
    """CHAIR's own rule on our files: references never hallucinate; an added absent class does."""
    _, inverse = _chair_tables(chair_dir)
    instances = json.loads((chair_dir / "annotations" / "instances_val2014.json").read_text())
    id_to_name = {c["id"]: c["name"] for c in instances["categories"]}
    gt: dict[int, set[str]] = {}
    for a in instances["annotations"]:
        gt.setdefault(a["image_id"], set()).add(inverse[id_to_name[a["category_id"]]])

    def hallucinated(image_id, caption):
        nodes = [inverse[w] for w in words_of(caption.lower()) if w in inverse]
        return [n for n in nodes if n not in gt[image_id]]

    captions = json.loads((chair_dir / "annotations" / "captions_val2014.json").read_text())["annotations"]
    assert all(hallucinated(c["image_id"], c["caption"]) == [] for c in captions)
    image_id, scene = 1, held_out[0]
    absent = scene.absent[0]
    assert hallucinated(image_id, scene.caption[:-1] + f" and a {absent}.") == [absent]
