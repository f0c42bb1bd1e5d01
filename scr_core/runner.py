"""``VLMRunner``: what a runner of the two passes offers, so callers (the ComfyUI nodes' ``VLM_MODEL``, the
caption-folder loop, benchmarks) take either the PyTorch ``SCRPipeline`` or the onnxruntime ``OnnxVLM``.

One vocabulary for ``scr`` (``scr_arg`` checks it once for both runners):

* ``RUNNER_DEFAULT`` — the runner's own settings: ``SCRConfig()`` for the pipeline, the settings baked
  into the export for ``OnnxVLM``;
* an ``SCRConfig`` — diagnose with its K, then redistribute (an export checks that λ, the layers,
  the query and the border rule are the ones it was made with, and says which differ);
* a ``RedistributionPlan`` or one per prompt — from an earlier ``diagnose`` (or ``from_dict``);
* ``None`` — the vanilla model.

torch-free: the ONNX runtime imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

from .config import SCRConfig
from .errors import ConfigError, GenerationInterrupted, InputError
from .plan import RedistributionPlan
from .results import Diagnosis, GenerationResult, Timings


class _RunnerDefault:
    """The ``scr`` / ``config`` default: each runner fills in its own settings."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "RUNNER_DEFAULT"

    def __reduce__(self):
        return (_RunnerDefault, ())


RUNNER_DEFAULT = _RunnerDefault()

#: What ``scr`` takes (the vocabulary above); ``ConfigArg``: what ``diagnose``'s ``config`` takes.
ScrArg: TypeAlias = SCRConfig | RedistributionPlan | Sequence[RedistributionPlan] | _RunnerDefault | None
ConfigArg: TypeAlias = SCRConfig | _RunnerDefault
Progress: TypeAlias = Callable[[int, int], None]


def scr_arg(scr: ScrArg, default: SCRConfig) -> SCRConfig | list[RedistributionPlan] | None:
    """``scr`` as an ``SCRConfig`` (``default`` for ``RUNNER_DEFAULT``), a list of plans, or ``None``;
    anything else is one ``ConfigError`` naming the vocabulary."""
    if scr is RUNNER_DEFAULT:
        return default
    if scr is None or isinstance(scr, SCRConfig):
        return scr
    if isinstance(scr, RedistributionPlan):
        return [scr]
    if isinstance(scr, Sequence) and not isinstance(scr, (str, bytes)) and scr \
            and all(isinstance(p, RedistributionPlan) for p in scr):
        return list(scr)
    raise ConfigError(f"scr must be an SCRConfig, a RedistributionPlan, a list of them (one per prompt) or None "
                      f"(got {type(scr).__name__}: {scr!r:.60})")


def config_arg(config: ConfigArg, default: SCRConfig) -> SCRConfig:
    """``diagnose``'s ``config``: an ``SCRConfig`` (``default`` for ``RUNNER_DEFAULT``), else one ``ConfigError``."""
    if config is RUNNER_DEFAULT:
        return default
    if not isinstance(config, SCRConfig):
        raise ConfigError(f"config must be an SCRConfig (got {type(config).__name__}: {config!r:.60})")
    return config


@runtime_checkable
class VLMRunner(Protocol):
    """A VLM with the two SCR passes. ``SCRPipeline`` and ``export.runtime.OnnxVLM`` satisfy it; the
    ComfyUI type ``VLM_MODEL`` carries one (tests/test_runner_contract.py runs the same calls on both).

    ``images``: an image, a list (one per prompt), a list of lists, or what ``prepare`` returned
    (then no prompt). A video clip (``scr_core.Clip``, a video file's path, a T x H x W x C array) may stand
    wherever an image does (``SCRPipeline``; ``OnnxVLM`` refuses clips: video is not exported). Results
    are ``scr_core``'s types on both runners.
    """

    @property
    def depth(self) -> int:
        """Decoder layers."""

    def resolve(self, cfg: SCRConfig) -> SCRConfig:
        """``cfg`` with its layer ranges filled in for this model (an export: checked against it)."""

    def prepare(self, images, prompt: str | Sequence[str] | None = None) -> Any:
        """Processor and vision tower once; feeds ``diagnose`` and ``generate``."""

    def check_image(self, image, what: str = "image") -> None:
        """One ``InputError`` line when the processor would make too much of ``image`` (``processor_size``)."""

    def diagnose(self, images, prompt: str | Sequence[str] | None = None,
                 config: ConfigArg = RUNNER_DEFAULT) -> list[Diagnosis]:
        """The diagnostic pass alone: maps, entropy and the plan per prompt."""

    def caption(self, images, prompt: str | Sequence[str] | None = None, scr: ScrArg = RUNNER_DEFAULT,
                max_new_tokens: int = 64, **kwargs) -> list[GenerationResult]:
        """Greedy captions."""

    def answer(self, images, question: str | Sequence[str] | None = None, scr: ScrArg = RUNNER_DEFAULT,
               max_new_tokens: int = 8, short_answer: bool = True, **kwargs) -> list[GenerationResult]:
        """Short answers (the family's short-answer instruction appended when ``short_answer``)."""

    def answer_prompt(self, question: str) -> str:
        """``question`` as ``answer`` sends it."""

    def generate(self, images, prompt: str | Sequence[str] | None = None, scr: ScrArg = RUNNER_DEFAULT,
                 max_new_tokens: int = 64, *, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None, **kwargs) -> list[GenerationResult]:
        """Greedy generation: ``progress(step, max_new_tokens)`` per token, ``should_stop()`` checked per token
        (``GenerationInterrupted`` with the partial results)."""

    def to(self, device: str) -> VLMRunner:
        """The runner on ``device`` (``"cpu"``, ``"cuda"``); returns itself. Prepared batches are prepared again."""

    def release(self) -> None:
        """Free the weights; the runner cannot be used afterwards (``ReleasedError``)."""


class TokenWatch:
    """Per-token progress and the caller's stop check, one for both runners (the pipeline hands it to
    transformers as a ``StoppingCriteria``, the ONNX decoder calls it in its loop)."""

    def __init__(self, total: int, progress: Progress | None, should_stop: Callable[[], bool] | None) -> None:
        self.total, self.progress, self.should_stop = total, progress, should_stop
        self.step, self.stopped = 0, False

    def start(self) -> None:
        """``GenerationInterrupted`` (no results) when the caller asked to stop before the first token."""
        if self.should_stop is not None and self.should_stop():
            raise GenerationInterrupted("stopped before generation started", [])

    def tick(self) -> bool:
        """After each new token: report it; whether generation stops here."""
        self.step += 1
        if self.progress is not None:
            self.progress(self.step, self.total)
        if self.should_stop is not None and self.should_stop():
            self.stopped = True
        return self.stopped


class RunnerBase:
    """What both runners share word for word: ``caption`` and ``answer`` on top of their ``generate``, and
    ``generate``'s last step (``_results``).

    Subclasses set ``prepared_type`` (what their ``prepare`` returns) and ``short_answer_suffix``, and
    define ``generate``.
    """

    prepared_type: type = type(None)
    short_answer_suffix: str = ""
    image_processor = None  # the runner's image processor (``processor_size`` reads its resize settings)

    def check_image(self, image, what: str = "image") -> None:
        """One ``InputError`` line when ``image`` is too wide, or the processor would resize it to too many
        pixels (``processor_size``): checked before the processor runs."""
        from .processor_size import check_processable

        check_processable(self.image_processor, image.size, what)

    def check_images(self, per_prompt) -> None:
        """``check_image`` for every image of every prompt (what ``prepare`` runs first)."""
        for group in per_prompt:
            for image in group:
                self.check_image(image)

    def generate(self, images, prompt: str | Sequence[str] | None = None, scr: ScrArg = RUNNER_DEFAULT,
                 max_new_tokens: int = 64, **kwargs) -> list[GenerationResult]:
        raise NotImplementedError(f"{type(self).__name__} defines no generate()")

    def answer_prompt(self, question: str) -> str:
        """``question`` with the family's short-answer instruction appended (what ``answer`` sends)."""
        return question.rstrip() + " " + self.short_answer_suffix if question.strip() else question

    def caption(self, images, prompt: str | Sequence[str] | None = None, scr: ScrArg = RUNNER_DEFAULT,
                max_new_tokens: int = 64, **kwargs) -> list[GenerationResult]:
        """Greedy captions; ``scr=None`` for the vanilla model. Keywords as for ``generate``."""
        return self.generate(images, prompt, scr=scr, max_new_tokens=max_new_tokens, **kwargs)

    def answer(self, images, question: str | Sequence[str] | None = None, scr: ScrArg = RUNNER_DEFAULT,
               max_new_tokens: int = 8, short_answer: bool = True, **kwargs) -> list[GenerationResult]:
        """Yes/no or short answers (the family's short-answer instruction appended when ``short_answer``).

        With a prepared batch the prompts are used as prepared: build them with ``answer_prompt``.
        """
        if isinstance(images, self.prepared_type):
            return self.generate(images, question, scr=scr, max_new_tokens=max_new_tokens, **kwargs)
        if question is None:
            raise InputError("answer() needs a question")
        questions = [question] if isinstance(question, str) else list(question)
        if short_answer:
            questions = [self.answer_prompt(q) if isinstance(q, str) else q for q in questions]
        return self.generate(images, questions if len(questions) > 1 else questions[0], scr=scr,
                             max_new_tokens=max_new_tokens, **kwargs)

    def _results(self, new_tokens, texts: Sequence[str], plans, diagnoses: Sequence[Diagnosis | None],
                 vision_ms: float, diagnostic_ms: float, steps: Sequence[float],
                 watch: TokenWatch) -> list[GenerationResult]:
        """One ``GenerationResult`` per prompt (``len(diagnoses)``; ``new_tokens[B, n]`` and ``texts`` may hold
        more rows) sharing one ``Timings`` (``steps``: milliseconds per forward, the prefill first); then
        ``GenerationInterrupted`` carrying them if the watch stopped generation, else the final progress call."""
        decode = steps[1:]
        timings = Timings(vision_ms=vision_ms, diagnostic_ms=diagnostic_ms, prefill_ms=steps[0] if steps else 0.0,
                          decode_ms_per_token=sum(decode) / len(decode) if decode else 0.0,
                          new_tokens=int(new_tokens.shape[1]))
        results = [GenerationResult(texts[i].strip(), tuple(int(t) for t in new_tokens[i].tolist()),
                                    plans[i] if plans else None, diagnoses[i], timings) for i in range(len(diagnoses))]
        if watch.stopped:
            raise GenerationInterrupted(f"stopped after {watch.step} of {watch.total} new tokens", results)
        if watch.progress is not None:
            watch.progress(watch.total, watch.total)
        return results
