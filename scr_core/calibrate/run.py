"""``calibrate``: does SCR help this model on these questions, at which setting, and how sure is that?

Vanilla runs once and every grid setting once on every question. Each batch is prepared once
(processor and vision tower) and diagnosed once: the diagnostic map depends only on the
diagnostic layers and the query, which the whole grid shares, so each setting only re-selects
its K sources from the same maps (``plan_from_maps``) and generates with its own λ and hooks.

A setting is picked on the tuning split (most corrections minus new errors against vanilla) and
recommended only when, on the held-out split (other images), it still makes more corrections than
new errors and its exact McNemar p, Holm-corrected over the whole grid, is below ``alpha``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import hashlib
import json
import warnings
from pathlib import Path
from typing import cast

import numpy as np
from tqdm import tqdm

from ..config import SCRConfig
from ..diagnosis import plan_from_maps
from ..errors import ConfigError, DataError
from ..eval.pope import mcnemar_exact, pope_metrics
from ..runs import check_run, check_sizes, model_numerics
from ..shards import append_durably, read_records
from ..yes_no import NO, YES, parse_many
from .grid import Setting, build_grid, default_hook_grid, removal_grid, DEFAULT_KS, DEFAULT_LAMS
from .questions import Question, split_holdout
from .stats import bootstrap_mean_ci, holm

SPLITS = ("tune", "heldout")
MAX_NEW_TOKENS = 10  # eval's yes/no protocol


@dataclass(frozen=True)
class Scores:
    """A method's metrics on one split, in percent; paired fields are against vanilla (None for vanilla)."""

    n: int
    hr: float
    accuracy: float
    f1: float | None  # None: no "yes" answer or no "yes" label (precision or recall undefined)
    yes_ratio: float
    changed: int | None = None
    corrections: int | None = None
    new_errors: int | None = None
    p: float | None = None
    p_holm: float | None = None
    hr_change: float | None = None
    hr_change_ci: tuple[float, float] | None = None
    accuracy_change: float | None = None

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        if self.hr_change_ci is not None:
            out["hr_change_ci"] = list(self.hr_change_ci)
        return out


@dataclass(frozen=True)
class SettingResult:
    setting: Setting
    scores: dict[str, Scores]  # split -> scores

    @property
    def tune_net(self) -> int:
        s = self.scores["tune"]
        assert s.corrections is not None and s.new_errors is not None  # a setting's scores are paired
        return s.corrections - s.new_errors


@dataclass
class Calibration:
    """Everything ``calibrate`` measured; ``markdown()`` and ``plot()`` in ``calibrate.report``."""

    vanilla: dict[str, Scores]
    results: list[SettingResult]
    picked: Setting | None  # best on the tuning split (None: no setting gained there)
    recommended: Setting | None  # picked and significant on the held-out split
    verdict: str
    meta: dict = field(default_factory=dict)
    answers: dict = field(default_factory=dict)  # ids, labels, split and raw texts per method, in question order
    removals: list[SettingResult] = field(default_factory=list)  # the removal ablation: scored, never picked

    def result(self, setting: Setting) -> SettingResult:
        return next(r for r in self.results if r.setting == setting)

    @staticmethod
    def _rows(results: list[SettingResult]) -> list[dict]:
        return [{**r.setting.to_dict(), "label": r.setting.label, **{k: v.to_dict() for k, v in r.scores.items()}}
                for r in results]

    def to_dict(self) -> dict:
        return {"meta": self.meta, "verdict": self.verdict,
                "picked": self.picked.to_dict() if self.picked else None,
                "recommended": self.recommended.to_dict() if self.recommended else None,
                "vanilla": {k: v.to_dict() for k, v in self.vanilla.items()},
                "settings": self._rows(self.results),
                **({"removals": self._rows(self.removals)} if self.removals else {})}


def answer_grid(pipe, questions: Sequence[Question], settings: Sequence[Setting], base: SCRConfig,
                batch_size: int = 8, progress: bool = False, cache: Path | None = None) -> dict[str, list[str]]:
    """Raw answers of vanilla (key "vanilla") and of each setting (key ``setting.label``), in question order.

    cache: a JSON-lines file that gains every finished batch (fsynced); batches already in it are
    not run again (a crash costs at most one batch). The caller makes sure it belongs to this run.
    """
    texts: dict[str, list[str]] = {"vanilla": [], **{s.label: [] for s in settings}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _answer(pipe, questions, settings, base, batch_size, progress, texts, cache)
    clamped = [w for w in caught if "sources fit" in str(w.message)]
    for w in caught:
        if w not in clamped:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if clamped:  # one line, not one per prompt and setting
        warnings.warn(f"fewer than K sources fit {len(clamped)} times (over grids, prompts and settings; "
                      f"e.g. {clamped[0].message})", stacklevel=2)
    return texts


def _answer(pipe, questions, settings, base, batch_size, progress, texts, cache) -> None:
    configs = [(s.label, pipe.resolve(s.config(base)), s.remove) for s in settings]
    diag_config = base.with_(selection="attention")
    done = read_records(cache, "start", ("start", "texts"), _START_OVER) if cache else {}
    width = len(texts)
    with tqdm(total=len(questions) * width, disable=not progress, desc="calibrate") as bar:
        for start in range(0, len(questions), batch_size):
            chunk = questions[start:start + batch_size]
            found = done.get(start, {}).get("texts")
            if not (isinstance(found, dict) and set(found) == set(texts)
                    and all(isinstance(v, list) and len(v) == len(chunk) for v in found.values())):
                found = _answer_batch(pipe, chunk, configs, diag_config, bar)
                if cache:
                    append_durably(cache, json.dumps({"start": start, "texts": found}) + "\n")
            else:
                bar.update(len(chunk) * width)
            for key, value in found.items():
                texts[key] += value


def _answer_batch(pipe, chunk, configs, diag_config, bar) -> dict[str, list[str]]:
    """Vanilla and every setting on one batch: one vision pass, one diagnosis."""
    batch = pipe.prepare([[q.image] for q in chunk], [q.prompt for q in chunk])
    out = {"vanilla": [r.text for r in pipe.generate(batch, scr=None, max_new_tokens=MAX_NEW_TOKENS)]}
    bar.update(len(chunk))
    diagnoses = pipe.diagnose(batch, config=diag_config)  # once for the whole grid
    for label, cfg, remove in configs:
        plans = [plan_from_maps(d.maps, cfg, pipe.adapter.source_budgets(d.grids, d.maps, cfg)) for d in diagnoses]
        out[label] = [r.text for r in pipe.generate(batch, scr=plans, max_new_tokens=MAX_NEW_TOKENS,
                                                    remove_sources=remove)]
        bar.update(len(chunk))
    return out


_START_OVER = "delete that line (its batch is answered again) or the file (to start over)"


def question_fingerprint(questions: Sequence[Question]) -> str:
    """A short hash of the questions (ids, images, prompts, labels): a cache belongs to one question set."""
    digest = hashlib.blake2b(digest_size=12)
    for q in questions:
        digest.update(json.dumps([q.id, str(q.image), q.prompt, q.label]).encode())
    return digest.hexdigest()


def _metrics(labels: list[str], preds: list[str]) -> dict:
    m = pope_metrics(labels, preds)
    if m.false_positive_rate is None:
        raise DataError("a calibration split holds no question whose answer is \"no\", so its hallucination rate "
                        "is undefined; use more questions, or another --holdout or --seed")
    assert m.accuracy is not None and m.yes_ratio is not None  # defined on any non-empty split
    return {"n": m.n, "hr": 100 * m.false_positive_rate, "accuracy": 100 * m.accuracy,
            "f1": None if m.f1 is None else 100 * m.f1, "yes_ratio": 100 * m.yes_ratio}


def score_split(labels: list[str], vanilla: list[str], preds: list[str], rng: np.random.Generator,
                n_resamples: int) -> Scores:
    """One setting against vanilla on one split (parsed answers), Holm p left for the caller."""
    mine, base = _metrics(labels, preds), _metrics(labels, vanilla)
    paired = mcnemar_exact(labels, vanilla, preds)
    negatives = [i for i, label in enumerate(labels) if label == NO]
    diffs = [float(preds[i] == YES) - float(vanilla[i] == YES) for i in negatives]
    low, high = bootstrap_mean_ci(diffs, rng, n_resamples)
    return Scores(**mine, changed=paired.changed, corrections=paired.corrections, new_errors=paired.new_errors,
                  p=paired.p_value, hr_change=mine["hr"] - base["hr"], hr_change_ci=(100 * low, 100 * high),
                  accuracy_change=mine["accuracy"] - base["accuracy"])


def score_family(parsed: dict[str, list[str]], labels: list[str], settings: Sequence[Setting],
                 tune: Sequence[int], heldout: Sequence[int], seed: int, n_resamples: int,
                 stream: tuple[int, ...] = ()) -> list[SettingResult]:
    """Each setting against vanilla on both splits, Holm-corrected over ``settings`` per split
    (``stream``: keeps one family's bootstrap draws apart from another's)."""
    per_setting: dict[Setting, dict[str, Scores]] = {s: {} for s in settings}
    for split_no, (split, idx) in enumerate(zip(SPLITS, (tune, heldout))):
        split_labels = [labels[i] for i in idx]
        base = [parsed["vanilla"][i] for i in idx]
        raw = []
        for number, s in enumerate(settings):
            rng = np.random.default_rng([seed, split_no, number, *stream])  # independent of grid order elsewhere
            raw.append(score_split(split_labels, base, [parsed[s.label][i] for i in idx], rng, n_resamples))
        for s, scores, p_holm in zip(settings, raw, holm([cast(float, r.p) for r in raw])):
            per_setting[s][split] = Scores(**{**scores.__dict__, "p_holm": p_holm})
    return [SettingResult(s, per_setting[s]) for s in settings]


def evaluate(questions: Sequence[Question], texts: dict[str, list[str]], settings: Sequence[Setting],
             tune: Sequence[int], heldout: Sequence[int], *, alpha: float = 0.05, seed: int = 0,
             n_resamples: int = 2000, rule: str = "pope") -> tuple[dict, list[SettingResult], Setting | None,
                                                                  Setting | None]:
    """Scores per split, Holm over the grid per split, the tuning pick and the held-out verdict."""
    parsed = {key: parse_many(value, rule) for key, value in texts.items()}
    labels = [q.label for q in questions]
    vanilla = {split: Scores(**_metrics([labels[i] for i in idx], [parsed["vanilla"][i] for i in idx]))
               for split, idx in zip(SPLITS, (tune, heldout))}
    results = score_family(parsed, labels, settings, tune, heldout, seed, n_resamples)
    best = max(results, key=lambda r: (r.tune_net, -r.scores["tune"].hr), default=None)
    picked = best.setting if best is not None and best.tune_net > 0 else None
    recommended = None
    if picked is not None:
        assert best is not None
        held = best.scores["heldout"]
        assert held.corrections is not None and held.new_errors is not None and held.p_holm is not None
        if held.corrections > held.new_errors and held.p_holm < alpha:
            recommended = picked
    return vanilla, results, picked, recommended


def calibrate(pipe, questions: Sequence[Question], *, lams: Sequence[float] = DEFAULT_LAMS,
              ks: Sequence[int] = DEFAULT_KS, hook_layers: Sequence[Sequence[int]] | None = None,
              base: SCRConfig = SCRConfig(), holdout: float = 0.5, seed: int = 0,  # noqa: B008 (frozen)
              alpha: float = 0.05,
              batch_size: int = 8, n_resamples: int = 2000, rule: str = "pope",
              progress: bool = False, work_dir: str | Path | None = None, removal: bool = False) -> Calibration:
    """Run vanilla and the λ × K × hook-layer grid on ``questions`` and judge it (module docstring).

    hook_layers: the hook ranges to try (None: the paper's 0-7, 0-11, 0-15, scaled to shallow
    decoders). base: the shared settings (diagnostic layers, query, border). holdout: the share
    of images held out. seed: fixes the split and the bootstrap. work_dir: makes the run resumable
    (``answers.partial.jsonl`` gains each finished batch; ``run.json`` records what the answers
    depend on, and a resume with anything else is refused). A ComfyUI node calls this with its
    loaded pipeline; ``python -m scr_core calibrate`` is a thin wrapper.
    removal: also run the removal ablation at each K and hook range (the same plans, sources zeroed):
    scored against vanilla with its own Holm correction, never picked.
    """
    from .report import verdict

    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1 (got {alpha!r})")
    check_sizes(None, batch_size)
    depth = pipe.depth
    settings = build_grid(lams, ks, hook_layers if hook_layers is not None else default_hook_grid(depth), depth)
    removals = removal_grid(settings) if removal else []
    base = pipe.resolve(base.with_(selection="attention"))  # fills and checks the diagnostic layers
    assert base.diag_layers is not None
    tune, heldout = split_holdout(questions, holdout, seed)
    cache = None
    if work_dir is not None:
        record = {"questions": question_fingerprint(questions),
                  "model": str(getattr(getattr(pipe.model, "config", None), "_name_or_path", "")),
                  **model_numerics(pipe), "batch_size": batch_size,
                  "base": {k: v for k, v in base.__dict__.items() if not k.startswith("_")},
                  "settings": [s.label for s in settings + removals]}
        check_run(Path(work_dir), json.loads(json.dumps(record)))
        cache = Path(work_dir) / "answers.partial.jsonl"
    texts = answer_grid(pipe, questions, settings + removals, base, batch_size=batch_size, progress=progress,
                        cache=cache)
    vanilla, results, picked, recommended = evaluate(questions, texts, settings, tune, heldout, alpha=alpha,
                                                     seed=seed, n_resamples=n_resamples, rule=rule)
    removed = score_family({k: parse_many(v, rule) for k, v in texts.items()}, [q.label for q in questions],
                           removals, tune, heldout, seed, n_resamples, stream=(1,))
    meta = {"questions": len(questions), "tune_questions": len(tune), "heldout_questions": len(heldout),
            "tune_images": len({str(questions[i].image) for i in tune}),
            "heldout_images": len({str(questions[i].image) for i in heldout}),
            "holdout": holdout, "seed": seed, "alpha": alpha, "bootstrap_resamples": n_resamples, "rule": rule,
            "diag_layers": list(base.diag_layers), "query": base.query, "exclude_border": base.exclude_border,
            "depth": depth}
    held = set(heldout)
    answers = {"ids": [q.id for q in questions], "labels": [q.label for q in questions],
               "split": ["heldout" if i in held else "tune" for i in range(len(questions))], **texts}
    result = Calibration(vanilla, results, picked, recommended, "", meta, answers, removed)
    result.verdict = verdict(result)
    return result
