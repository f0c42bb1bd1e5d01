"""Seeded synthetic scenes for training and evaluating a tiny vision-language model.

Why: SCR claims to reduce object hallucination, and hallucination needs two things a
testbed must control exactly: which objects are really in the image, and a learned prior
that tempts the model to name absent ones. Here every image is drawn from simple coloured
shapes with COCO-like names, and three pairs co-occur with P(B|A) = 0.9 (fork->knife,
cup->plate, dog->cat), so an absent partner is the natural adversarial negative, as in
POPE on COCO.

Everything is a pure function of ``(seed, index, options)``: scene ``i`` of seed ``s``
is byte-identical whether it is made alone or in a batch of any size, which keeps
train/tune/test splits reproducible and disjoint by seed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
from PIL import Image, ImageDraw

from ..prompts import CAPTION_PROMPT, SHORT_ANSWER_PROMPT


# --------------------------------------------------------------------------- classes
@dataclass(frozen=True)
class ObjectClass:
    """One object category: a COCO-like name drawn as a fixed shape and colour."""

    name: str
    shape: str
    colour_rgb: tuple[int, int, int]
    plural: str
    synonyms: tuple[str, ...] = ()


# The one place the categories live. Partners in a co-occurrence pair differ in both
# shape and colour, so confusing them is a prior effect, not a perceptual one.
OBJECT_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("fork", "cross", (214, 39, 40), "forks"),
    # "knive" is what CHAIR's singulariser makes of "knives" (COCO's list has it too).
    ObjectClass("knife", "triangle", (31, 84, 214), "knives", ("knive",)),
    ObjectClass("cup", "square", (44, 160, 44), "cups", ("mug",)),
    ObjectClass("plate", "ring", (245, 130, 20), "plates", ("dish",)),
    ObjectClass("dog", "star", (128, 60, 180), "dogs", ("puppy",)),
    ObjectClass("cat", "diamond", (20, 160, 170), "cats", ("kitten",)),
    ObjectClass("ball", "circle", (220, 50, 160), "balls"),
    ObjectClass("box", "hourglass", (120, 80, 35), "boxes"),
)

# (A, B): when A is in a scene, B is there with probability ``cooccurrence_prob``.
CO_OCCURRENCE_PAIRS: tuple[tuple[str, str], ...] = (
    ("fork", "knife"),
    ("cup", "plate"),
    ("dog", "cat"),
)

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in OBJECT_CLASSES)


def get_class(name: str) -> ObjectClass:
    """Look a class up by name (raises ``KeyError`` for unknown names)."""
    for cls in OBJECT_CLASSES:
        if cls.name == name:
            return cls
    raise KeyError(name)


def partners_of(name: str) -> tuple[str, ...]:
    """Classes tied to ``name`` by a co-occurrence pair, in either direction."""
    out = [b for a, b in CO_OCCURRENCE_PAIRS if a == name]
    out += [a for a, b in CO_OCCURRENCE_PAIRS if b == name]
    return tuple(out)


# --------------------------------------------------------------------------- text
QUESTION_TEMPLATE = "Is there {article} {name} in the image?"
ANSWERS = ("yes", "no")
# The usual caption prompts (short caption; CHAIR's long ones); the POPE suffix is SHORT_ANSWER_PROMPT.
CAPTION_PROMPTS: tuple[str, ...] = (
    CAPTION_PROMPT,
    "Please describe this image in detail.",
    "Please help me describe the image in detail.",
)
CHAT_ROLE_MARKERS: tuple[str, ...] = ("USER:", "ASSISTANT:")
RELATION_PHRASES: tuple[str, ...] = ("next to", "above", "below")

# Same split as the Hugging Face ``Whitespace`` pre-tokenizer, so vocabulary() matches a
# WordLevel tokenizer built on it.
_WORD_RE = re.compile(r"\w+|[^\w\s]+")


def words_of(text: str) -> list[str]:
    """Split text into word and punctuation tokens the way a word-level tokenizer does."""
    return _WORD_RE.findall(text)


def article(word: str) -> str:
    """'a' or 'an' by spelling (good enough for the testbed's nouns)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def question_for(name: str) -> str:
    """The POPE question for one class name."""
    return QUESTION_TEMPLATE.format(article=article(name), name=name)


def vocabulary(lowercase: bool = False) -> tuple[str, ...]:
    """Every token used in captions, questions, answers and chat prompts, sorted.

    Build a word-level tokenizer from it; pass ``lowercase=True`` when that tokenizer
    lowercases its input.
    """
    texts = [question_for(n) for n in CLASS_NAMES]
    texts += [f"{article(n)} {n}" for n in CLASS_NAMES]
    texts += [*ANSWERS, SHORT_ANSWER_PROMPT, *CAPTION_PROMPTS, *CHAT_ROLE_MARKERS, *RELATION_PHRASES]
    texts += ["and with , ."]  # caption glue, see compose_caption()
    tokens = {tok for text in texts for tok in words_of(text)}
    if lowercase:
        tokens = {tok.lower() for tok in tokens}
    return tuple(sorted(tokens))


# --------------------------------------------------------------------------- geometry
def _unit_polygon(shape: str) -> tuple[tuple[float, float], ...]:
    """Outline of a shape in the unit square (y down); circles are 32-gons."""
    if shape in ("circle", "ring"):
        return tuple(
            (0.5 + 0.5 * math.cos(2 * math.pi * k / 32), 0.5 + 0.5 * math.sin(2 * math.pi * k / 32))
            for k in range(32)
        )
    if shape == "square":
        return ((0.08, 0.08), (0.92, 0.08), (0.92, 0.92), (0.08, 0.92))
    if shape == "triangle":
        return ((0.5, 0.0), (1.0, 1.0), (0.0, 1.0))
    if shape == "diamond":
        return ((0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5))
    if shape == "cross":
        a, b = 0.32, 0.68
        return (
            (a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b), (0, a), (a, a)
        )
    if shape == "star":
        pts = []
        for k in range(10):
            r = 0.5 if k % 2 == 0 else 0.22
            ang = -math.pi / 2 + math.pi * k / 5
            pts.append((0.5 + r * math.cos(ang), 0.53 + r * math.sin(ang)))
        return tuple(pts)
    if shape == "hourglass":
        return ((0.0, 0.0), (1.0, 0.0), (0.56, 0.5), (1.0, 1.0), (0.0, 1.0), (0.44, 0.5))
    raise ValueError(f"unknown shape {shape!r}")


RING_HOLE = 0.5  # inner radius / outer radius of a ring


def _scale(points: Iterable[tuple[float, float]], bbox: Sequence[float], factor: float = 1.0):
    x, y, w, h = bbox
    return [((x + px * w) * factor, (y + py * h) * factor) for px, py in points]


def _polygon_area(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    s = sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))
    return abs(s) / 2.0


def _hole_polygon() -> tuple[tuple[float, float], ...]:
    outline = _unit_polygon("ring")
    return tuple((0.5 + (px - 0.5) * RING_HOLE, 0.5 + (py - 0.5) * RING_HOLE) for px, py in outline)


@dataclass(frozen=True)
class PlacedObject:
    """One object in a scene. ``bbox`` is COCO-style ``(x, y, w, h)`` in pixels."""

    name: str
    shape: str
    colour_rgb: tuple[int, int, int]
    bbox: tuple[int, int, int, int]
    from_prior: bool = False  # added because its co-occurrence partner was present

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        x, y, w, h = self.bbox
        return (x, y, x + w, y + h)

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.bbox
        return (x + w / 2.0, y + h / 2.0)

    def polygon(self) -> list[tuple[float, float]]:
        """Outer outline in pixel coordinates (what is drawn; used as COCO segmentation)."""
        return _scale(_unit_polygon(self.shape), self.bbox)

    def area(self) -> float:
        """Painted area in pixels (the ring's hole is subtracted)."""
        outer = _polygon_area(self.polygon())
        if self.shape == "ring":
            outer -= _polygon_area(_scale(_hole_polygon(), self.bbox))
        return outer

    def patch_indices(self, patch_size: int = 8, image_width: int = 96) -> tuple[int, ...]:
        """Row-major indices of the ViT patches the bbox touches (for attention analysis)."""
        cols = image_width // patch_size
        x0, y0, x1, y1 = self.xyxy
        rows_hit = range(y0 // patch_size, (y1 - 1) // patch_size + 1)
        cols_hit = range(x0 // patch_size, (x1 - 1) // patch_size + 1)
        return tuple(r * cols + c for r in rows_hit for c in cols_hit if 0 <= c < cols)


def relation(a: PlacedObject, b: PlacedObject) -> str | None:
    """Spatial phrase for "a <rel> b" that is true by construction, else ``None``.

    "next to": vertical extents overlap and the boxes are side by side;
    "above"/"below": horizontal extents overlap and one box is wholly over the other.
    """
    ax0, ay0, ax1, ay1 = a.xyxy
    bx0, by0, bx1, by1 = b.xyxy
    x_overlap = ax0 < bx1 and bx0 < ax1
    y_overlap = ay0 < by1 and by0 < ay1
    if y_overlap and not x_overlap:
        return "next to"
    if x_overlap and not y_overlap:
        return "above" if ay1 <= by0 else "below"
    return None


# --------------------------------------------------------------------------- captions
def _noun_phrase(obj: PlacedObject) -> str:
    return f"{article(obj.name)} {obj.name}"


def _join_and(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def compose_caption(ordered: Sequence[PlacedObject]) -> str:
    """COCO-like sentence naming every object once, in the given order.

    "a fork." / "a fork next to a knife." / "a cup above a plate with a ball and a box."
    The relation between the first two objects is stated only when ``relation`` holds.
    """
    if not ordered:
        raise ValueError("a scene needs at least one object")
    text = _noun_phrase(ordered[0])
    if len(ordered) >= 2:
        rel = relation(ordered[0], ordered[1]) or "and"
        text += f" {rel} {_noun_phrase(ordered[1])}"
    if len(ordered) >= 3:
        text += " with " + _join_and([_noun_phrase(o) for o in ordered[2:]])
    return text + "."


def _caption_orders(objects: Sequence[PlacedObject]) -> list[list[PlacedObject]]:
    """Reading orders for reference captions: left-right, right-left, top-down, bottom-up, big-first."""
    keys = (
        lambda o: (o.centre[0], o.centre[1]),
        lambda o: (-o.centre[0], o.centre[1]),
        lambda o: (o.centre[1], o.centre[0]),
        lambda o: (-o.centre[1], o.centre[0]),
        lambda o: (-o.bbox[2] * o.bbox[3], o.centre[0]),
    )
    return [sorted(objects, key=k) for k in keys]


def reference_captions(objects: Sequence[PlacedObject]) -> tuple[str, ...]:
    """Up to five distinct captions (COCO has five per image); the first is left-to-right."""
    out: list[str] = []
    for order in _caption_orders(objects):
        cap = compose_caption(order)
        if cap not in out:
            out.append(cap)
    return tuple(out)


# --------------------------------------------------------------------------- scenes
@dataclass(frozen=True)
class YesNoQuestion:
    name: str
    text: str
    answer: str  # "yes" or "no"


@dataclass(frozen=True)
class Scene:
    """One image with its exact object list and reference captions."""

    image: Image.Image = field(compare=False, repr=False)
    objects: tuple[PlacedObject, ...]
    caption: str
    captions: tuple[str, ...]
    seed: int
    index: int
    hard: bool = False

    @property
    def present(self) -> frozenset[str]:
        return frozenset(o.name for o in self.objects)

    @property
    def absent(self) -> tuple[str, ...]:
        return tuple(n for n in CLASS_NAMES if n not in self.present)

    def questions(self) -> tuple[YesNoQuestion, ...]:
        """One "Is there a X in the image?" per class, in class order, with its answer."""
        return tuple(
            YesNoQuestion(n, question_for(n), "yes" if n in self.present else "no") for n in CLASS_NAMES
        )


@dataclass(frozen=True)
class SceneOptions:
    """Knobs of the generator (docs/testbed.md); defaults follow an early probe, with visible partners.

    ``cooccurrence_prob=None`` turns the pair prior off (classes drawn independently), a
    control in which co-occurrence hallucination has nothing to learn from.
    ``hard_fraction`` of scenes use ``hard_size_range`` (objects of 1-2 patches).
    ``partner_scale`` < 1 shrinks prior-added partners (the probe used 0.5).
    ``head_weight``/``tail_weight`` are draw weights of pair heads and pair tails against 1
    for the rest: without them tails (also added by the prior) are in ~53 % of scenes and
    heads in ~20 %; the defaults flatten that to 33-43 % and make P(A|B) about 0.7.
    """

    image_size: int = 96
    min_objects: int = 1
    max_objects: int = 5
    size_range: tuple[int, int] = (16, 32)
    hard_fraction: float = 0.0
    hard_size_range: tuple[int, int] = (7, 14)
    cooccurrence_prob: float | None = 0.9
    head_weight: float = 2.5
    tail_weight: float = 0.4
    partner_scale: float = 1.0
    margin: int = 2
    placement_tries: int = 60
    background_rgb: tuple[int, int, int] = (241, 239, 232)
    background_jitter: int = 4
    noise_std: float = 4.0
    colour_jitter: int = 12
    supersample: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= len(OBJECT_CLASSES):
            raise ValueError("need 1 <= min_objects <= max_objects <= number of classes")
        for lo, hi in (self.size_range, self.hard_size_range):
            if not 2 <= lo <= hi <= self.image_size:
                raise ValueError("size ranges must satisfy 2 <= lo <= hi <= image_size")
        if self.cooccurrence_prob is not None and not 0.0 <= self.cooccurrence_prob <= 1.0:
            raise ValueError("cooccurrence_prob must be in [0, 1] or None")
        if not 0.0 <= self.hard_fraction <= 1.0 or not 0.0 < self.partner_scale <= 1.0:
            raise ValueError("hard_fraction must be in [0, 1] and partner_scale in (0, 1]")
        if self.head_weight <= 0 or self.tail_weight <= 0:
            raise ValueError("draw weights must be positive")
        if self.supersample < 1:
            raise ValueError("supersample must be >= 1")


def _scene_rng(seed: int, index: int) -> np.random.Generator:
    """Independent stream per (seed, index): scenes do not depend on batch size."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x5C3E]))


def _draw_weight(name: str, heads: dict, tails: dict, opts: SceneOptions) -> float:
    if name in heads:
        return opts.head_weight
    return opts.tail_weight if name in tails else 1.0


def _sample_classes(rng: np.random.Generator, opts: SceneOptions) -> list[tuple[str, bool]]:
    """Pick distinct classes as ``(name, from_prior)`` with P(B|A) exactly ``cooccurrence_prob``.

    When a head A is drawn a coin decides: with p its partner B is added next, otherwise B
    is banned. A drawn-alone B bans A, and A is never drawn into the last free slot, so the
    coin is never overruled by the object budget: P(B|A) = p in expectation. (So a
    one-object scene never shows a head class.)
    """
    target = int(rng.integers(opts.min_objects, opts.max_objects + 1))
    coupled = opts.cooccurrence_prob is not None
    heads = {a: b for a, b in CO_OCCURRENCE_PAIRS} if coupled else {}
    tails = {b: a for a, b in CO_OCCURRENCE_PAIRS} if coupled else {}
    chosen: list[tuple[str, bool]] = []
    banned: set[str] = set()
    while len(chosen) < target:
        used = {n for n, _ in chosen} | banned
        free = target - len(chosen)
        pool = [n for n in CLASS_NAMES if n not in used and (free >= 2 or n not in heads)]
        if not pool:
            break  # only reachable with max_objects > 5
        weights = np.array([_draw_weight(n, heads, tails, opts) for n in pool])
        name = pool[int(rng.choice(len(pool), p=weights / weights.sum()))]
        chosen.append((name, False))
        if name in heads:
            assert opts.cooccurrence_prob is not None  # heads is empty without the pair prior
            if rng.random() < opts.cooccurrence_prob:
                chosen.append((heads[name], True))
            else:
                banned.add(heads[name])
        elif name in tails:
            banned.add(tails[name])
    return chosen


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw + margin and bx < ax + aw + margin and ay < by + bh + margin and by < ay + ah + margin


def _place(sizes: Sequence[int], rng: np.random.Generator, opts: SceneOptions, min_size: int):
    """Rejection-sample non-overlapping square boxes; shrink, and only then allow overlap."""
    placed: list[tuple[int, int, int, int]] = []
    for size in sizes:
        box = None
        while box is None:
            for _ in range(opts.placement_tries):
                x = int(rng.integers(0, opts.image_size - size + 1))
                y = int(rng.integers(0, opts.image_size - size + 1))
                cand = (x, y, size, size)
                if not any(_overlaps(cand, p, opts.margin) for p in placed):
                    box = cand
                    break
            if box is None:
                if size > min_size:
                    size = max(min_size, int(size * 0.85))
                else:
                    box = cand  # crowded scene: accept the last candidate
        placed.append(box)
    return placed


def _jitter_colour(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple[int, int, int]:
    if amount <= 0:
        return rgb
    delta = rng.integers(-amount, amount + 1, size=3)
    r, g, b = (int(np.clip(c + d, 0, 255)) for c, d in zip(rgb, delta))
    return r, g, b


def _render(objects: Sequence[PlacedObject], rng: np.random.Generator, opts: SceneOptions) -> Image.Image:
    """Draw supersampled polygons, box-filter down, then add light Gaussian noise."""
    s, size = opts.supersample, opts.image_size
    tint = rng.integers(-opts.background_jitter, opts.background_jitter + 1, size=3)
    bg = tuple(int(np.clip(c + t, 0, 255)) for c, t in zip(opts.background_rgb, tint))
    canvas = Image.new("RGB", (size * s, size * s), bg)
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        draw.polygon(_scale(_unit_polygon(obj.shape), obj.bbox, s), fill=obj.colour_rgb)
        if obj.shape == "ring":
            draw.polygon(_scale(_hole_polygon(), obj.bbox, s), fill=bg)
    if s > 1:
        canvas = canvas.reduce(s)
    pixels = np.asarray(canvas, dtype=np.float32)
    if opts.noise_std > 0:
        pixels = pixels + rng.normal(0.0, opts.noise_std, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def generate_scene(index: int, seed: int, options: SceneOptions | None = None) -> Scene:
    """Scene number ``index`` of the stream defined by ``seed`` (pure function)."""
    opts = options or SceneOptions()
    rng = _scene_rng(seed, index)
    hard = bool(rng.random() < opts.hard_fraction)
    lo, hi = opts.hard_size_range if hard else opts.size_range
    picks = _sample_classes(rng, opts)
    sizes = []
    for _, from_prior in picks:
        side = int(rng.integers(lo, hi + 1))
        sizes.append(max(2, round(side * opts.partner_scale)) if from_prior else side)
    boxes = _place(sizes, rng, opts, min_size=min(lo, min(sizes)))
    objects = tuple(
        PlacedObject(
            name=name,
            shape=get_class(name).shape,
            colour_rgb=_jitter_colour(get_class(name).colour_rgb, rng, opts.colour_jitter),
            bbox=box,
            from_prior=from_prior,
        )
        for (name, from_prior), box in zip(picks, boxes)
    )
    image = _render(objects, rng, opts)
    captions = reference_captions(objects)
    return Scene(
        image=image, objects=objects, caption=captions[0], captions=captions,
        seed=seed, index=index, hard=hard,
    )


def generate_scenes(n: int, seed: int, **options) -> list[Scene]:
    """``n`` scenes (indices 0..n-1) for ``seed``; ``options`` are ``SceneOptions`` fields.

    Use different seeds for train, tune and test so the splits never share a scene.
    """
    known = {f.name for f in fields(SceneOptions)}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown scene options: {sorted(unknown)}")
    opts = SceneOptions(**options)
    return [generate_scene(i, seed, opts) for i in range(n)]
