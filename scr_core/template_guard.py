"""Chat templates rendered in a separate process, bounded in time and memory (torch-free).

A chat template is Jinja code shipped with the checkpoint (or an exported folder's ``scr_config.json``),
so a posted ComfyUI workflow can bring one. transformers renders it in Jinja's sandbox (no file or
attribute access), but one built-in operation it asks for (``3 ** n``, ``'a' * n``, sorting millions)
runs in C holding the GIL: no check in this process can stop it, and the server's HTTP thread freezes.

So every render goes to a long-lived worker process (``template_worker.py``: transformers'
``render_jinja_template``, no torch), started on first use and reused. The guarantee, whatever the
template does:

* time: the answer comes within ``TEMPLATE_SECONDS`` (2 s; ``SCR_TEMPLATE_SECONDS``) of the request, or
  the worker is killed and the render refused in one line; waiting releases the GIL and polls the host's
  interrupt (``set_interrupt_check``: ComfyUI's), which kills the worker too;
* memory: the worker may use ``TEMPLATE_MEMORY_MB`` (256 MB; ``SCR_TEMPLATE_MEMORY_MB``) beyond what it
  holds at start (about 60 MB). Linux: the kernel's ``RLIMIT_AS``. Windows and macOS: this process reads
  the worker's resident memory every 50 ms (psutil, which ComfyUI installs) and kills it over the budget
  (without psutil there, time is the only bound);
* size: a template over ``MAX_TEMPLATE_CHARS`` is not sent, a text over ``MAX_RENDERED_CHARS`` not returned.

A refused template costs one line (its own messages stripped of control codes) and a fresh worker; the
next render works. This process only resolves which template and variables ``apply_chat_template`` would
use; it never parses the template.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .env import env_number
from .errors import DependencyError, GenerationInterrupted, ModelLoadError, SCRError

#: Seconds a chat template may take to render one prompt (real ones take milliseconds); the server's owner
#: may set ``SCR_TEMPLATE_SECONDS``.
TEMPLATE_SECONDS = 2.0
#: Megabytes the renderer may use beyond what it holds at start (real renders need kilobytes);
#: ``SCR_TEMPLATE_MEMORY_MB``.
TEMPLATE_MEMORY_MB = 256
#: Characters a rendered prompt may hold (before the processor expands the image tokens).
MAX_RENDERED_CHARS = 1_000_000
#: Characters a chat template may hold (real ones: a few thousand).
MAX_TEMPLATE_CHARS = 1_000_000
#: Seconds the worker may take to start (importing transformers' template module), interrupt polled.
START_SECONDS = 120.0
#: Seconds between the checks of the deadline, the interrupt and (where the kernel does not cap it) memory.
POLL_SECONDS = 0.05
#: Characters of a template's own error message kept in the line shown.
MESSAGE_CHARS = 300

WORKER = Path(__file__).with_name("template_worker.py")


_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])")


class ChatTemplateError(ModelLoadError):
    """The model's chat template could not render a prompt (too slow, too big, broken or hostile)."""


def clean_message(text: str, limit: int = MESSAGE_CHARS) -> str:
    """A template's message as one plain line: terminal escapes and control characters removed, spaces
    collapsed, shortened to ``limit`` characters (it is the template author's text, shown to a user)."""
    text = _ESCAPES.sub("", str(text))
    text = "".join(" " if c.isspace() else c for c in text if c.isspace() or unicodedata.category(c)[0] != "C")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _refused(why: str) -> ChatTemplateError:
    return ChatTemplateError(f"the model's chat template {why}; refusing it (broken or hostile template)")


def _transformers_home() -> list[str]:
    """The folder this process imports transformers from (the worker appends it to its path: an install
    that only this process's path reaches is still found), without importing it."""
    try:
        spec = importlib.util.find_spec("transformers")
    except (ImportError, ValueError):
        return []
    return [str(Path(spec.origin).parent.parent)] if spec is not None and spec.origin else []


class TemplateWorker:
    """One renderer process and the rules around it: started lazily, one render at a time, killed and
    replaced after a timeout, an interrupt, a memory refusal or a crash."""

    def __init__(self, seconds: float | None = None, memory_mb: float | None = None,
                 max_chars: int = MAX_RENDERED_CHARS, kernel_limit: bool = True) -> None:
        """``seconds``, ``memory_mb``: ``None`` for ``SCR_TEMPLATE_SECONDS`` / ``SCR_TEMPLATE_MEMORY_MB`` or the
        defaults. ``kernel_limit=False``: memory watched from here even where the kernel could cap it (what
        Windows and macOS get; the tests check that path on Linux with it)."""
        self.seconds = seconds or env_number("SCR_TEMPLATE_SECONDS", TEMPLATE_SECONDS)
        self.memory_mb = memory_mb or env_number("SCR_TEMPLATE_MEMORY_MB", TEMPLATE_MEMORY_MB)
        self.max_chars, self.kernel_limit = max_chars, kernel_limit
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._answers: queue.Queue = queue.Queue()
        self._ready = False
        self._watch: Any = None  # psutil.Process while memory is watched from here
        self._rss_limit = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Launch the process (not waiting for it: its imports overlap the caller's work)."""
        if self._process is not None:
            return
        budget = int(self.memory_mb * 2 ** 20) if self.kernel_limit else 0
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "TRANSFORMERS_VERBOSITY": "error"}
        try:
            self._process = subprocess.Popen(
                [sys.executable, str(WORKER), str(budget), *_transformers_home()], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except OSError as err:
            raise SCRError(f"the chat-template renderer could not start ({sys.executable}): {err}") from None
        self._answers = queue.Queue()
        self._ready, self._watch = False, None
        threading.Thread(target=self._read, args=(self._process, self._answers), daemon=True,
                         name="scr-template-reader").start()

    @staticmethod
    def _read(process: subprocess.Popen, answers: queue.Queue) -> None:
        assert process.stdout is not None  # started with stdout=PIPE
        for line in process.stdout:
            answers.put(line)
        answers.put(None)  # the process ended

    def stop(self) -> None:
        """Kill the process (if any); the next render starts another."""
        process, self._process, self._ready, self._watch = self._process, None, False, None
        if process is None:
            return
        process.kill()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill is not refused
            pass
        for pipe in (process.stdin, process.stdout):
            if pipe is None:  # never (both are pipes): for the type checker
                continue
            try:
                pipe.close()
            except OSError:
                pass

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    # -- rendering ---------------------------------------------------------------------------------
    def render(self, template: str, messages: list, variables: dict, add_generation_prompt: bool = True,
               stop_check: Callable[[], object] | None = None) -> str:
        """The text of ``template`` for ``messages`` and ``variables`` (plain JSON data) as
        ``render_jinja_template`` gives it, or one ``SCRError`` line. ``stop_check`` is polled while waiting:
        a true answer (or an exception it raises) kills the worker and ends the render."""
        if len(template) > MAX_TEMPLATE_CHARS:
            raise ChatTemplateError(f"the model's chat template is {len(template):,} characters long (limit "
                                    f"{MAX_TEMPLATE_CHARS:,}); refusing it (real ones hold a few thousand)")
        request = json.dumps({"template": template, "messages": messages, "variables": variables,
                              "add_generation_prompt": add_generation_prompt, "max_chars": self.max_chars})
        with self._lock:
            try:
                answer = self._ask(request.encode("utf-8") + b"\n", stop_check)
            except BaseException:
                self.stop()
                raise
            if "text" in answer:
                return answer["text"]
            if answer["kind"] in ("timeout", "memory", "exited"):
                self.stop()  # its state is unknown (or it is gone): the next render starts another
            raise self._error(answer)

    def _ask(self, request: bytes, stop_check) -> dict:
        if self._process is not None and self._process.poll() is not None:
            self.stop()  # it died while idle
        if not self._ready:
            self.start()
            answer = self._wait(START_SECONDS, stop_check)
            if not answer.get("ready"):
                raise self._start_error(answer)
            self._ready = True
            if not answer.get("limited"):
                self._watch_memory()
        process = self._process
        assert process is not None and process.stdin is not None  # started above, with stdin=PIPE
        try:
            process.stdin.write(request)
            process.stdin.flush()
        except OSError:
            return {"kind": "exited", "code": process.poll()}
        return self._wait(self.seconds, stop_check)

    def _wait(self, seconds: float, stop_check) -> dict:
        """The worker's next answer, or ``{"kind": "timeout" | "memory" | "exited"}``; raises only when
        ``stop_check`` asks."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return {"kind": "timeout"}
            try:
                line = self._answers.get(timeout=min(POLL_SECONDS, left))  # releases the GIL
            except queue.Empty:
                if stop_check is not None and stop_check():
                    raise GenerationInterrupted("stopped while the chat template was rendering") from None
                if self._over_memory():
                    return {"kind": "memory"}
                continue
            if line is None:
                assert self._process is not None  # its reader ended: it was started
                try:
                    return {"kind": "exited", "code": self._process.wait(timeout=10)}
                except subprocess.TimeoutExpired:  # pragma: no cover - its output closed: it is exiting
                    return {"kind": "exited", "code": None}
            return json.loads(line)

    def _error(self, answer: dict) -> SCRError:
        """The one line for a refused render."""
        kind, message = answer.get("kind"), clean_message(answer.get("error", ""))
        if kind == "timeout":
            return _refused(f"took more than {self.seconds:g} s to render one prompt (real ones take milliseconds)")
        if kind == "memory":
            return _refused(f"needed more than {self.memory_mb:g} MB to render one prompt")
        if kind == "exited":
            return _refused(f"stopped its renderer (exit code {answer.get('code')})")
        if kind == "size":
            return _refused(f"rendered {int(message):,} characters for one prompt (limit {self.max_chars:,})")
        if kind == "recursion":
            return _refused("recursed too deeply")
        if kind == "raised":
            return ChatTemplateError(f"the model's chat template refused the prompt: {message}")
        if kind == "syntax":
            return ChatTemplateError(f"the model's chat template is not valid Jinja: {message}")
        return ChatTemplateError(f"the model's chat template failed: {message}")

    @staticmethod
    def _start_error(answer: dict) -> SCRError:
        kind, message = answer.get("kind"), clean_message(answer.get("error", ""))
        if kind == "timeout":
            return SCRError(f"the chat-template renderer did not start within {START_SECONDS:g} s")
        if kind == "start" and message.startswith(("ImportError", "ModuleNotFoundError")):
            return DependencyError(f"the chat-template renderer could not start: {message}")
        if kind == "start":
            return SCRError(f"the chat-template renderer could not start: {message}")
        return SCRError(f"the chat-template renderer exited at start (exit code {answer.get('code')}); run "
                        f"{sys.executable} {WORKER} 0 to see why")

    # -- memory where the kernel does not cap it ------------------------------------------------------
    def _watch_memory(self) -> None:
        """Remember the worker's start size, to poll it against the budget while a render runs (psutil;
        without it, time is the only bound there)."""
        try:
            import psutil
        except ImportError:
            return
        assert self._process is not None  # called right after it started
        try:
            self._watch = psutil.Process(self._process.pid)
            self._rss_limit = self._watch.memory_info().rss + int(self.memory_mb * 2 ** 20)
        except psutil.Error:
            self._watch = None

    def _over_memory(self) -> bool:
        if self._watch is None:
            return False
        try:
            return self._watch.memory_info().rss > self._rss_limit
        except Exception:  # it exited: the reader reports that
            return False


_shared: TemplateWorker | None = None
_shared_pid = 0
_shared_lock = threading.Lock()
_interrupt_check: Callable[[], object] | None = None


def shared_worker() -> TemplateWorker:
    """The process-wide renderer (a forked child gets its own: the parent's pipes are not its to use)."""
    global _shared, _shared_pid
    with _shared_lock:
        if _shared is None or _shared_pid != os.getpid():
            _shared, _shared_pid = TemplateWorker(), os.getpid()
        return _shared


def warm_up() -> None:
    """Start the shared renderer now, so its imports overlap model loading (nothing waits for it; a
    failure here is the first render's one line)."""
    try:
        shared_worker().start()
    except SCRError:
        pass


def set_interrupt_check(check: Callable[[], object] | None) -> None:
    """The host's interrupt, polled while any render waits (ComfyUI registers
    ``throw_exception_if_processing_interrupted``: its exception ends the render, and the worker)."""
    global _interrupt_check
    _interrupt_check = check


def template_inputs(owner, template: str | None = None) -> tuple[str, dict]:
    """(template text, template variables) that ``owner.apply_chat_template(..., chat_template=template)``
    renders with: ``owner`` a processor or a tokenizer; ``template`` a template's text, or ``None`` for
    the owner's own (its ``"default"`` when it has several; a processor without one falls back to its
    tokenizer's); the variables are the tokenizer's special tokens."""
    tokenizer = getattr(owner, "tokenizer", None) or owner
    if template is None:
        for source in (owner, tokenizer):
            template = getattr(source, "chat_template", None)
            if isinstance(template, dict):
                template = template.get("default")
            if template:
                break
    if not isinstance(template, str) or not template:
        raise ModelLoadError("the model has no chat template (chat_template.jinja or the processor's "
                             "chat_template); add the family's template to its folder")
    return template, _plain(dict(getattr(tokenizer, "special_tokens_map", {})))


def _plain(value):
    """``value`` as JSON data for the worker (a token object as its text)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def render_chat(owner, messages: list, template: str | None = None, add_generation_prompt: bool = True) -> str:
    """What ``owner.apply_chat_template(messages, chat_template=template, tokenize=False,
    add_generation_prompt=...)`` returns, rendered by the shared worker within the limits above."""
    text, variables = template_inputs(owner, template)
    return shared_worker().render(text, messages, variables, add_generation_prompt, _interrupt_check)


@atexit.register
def _stop_shared() -> None:
    if _shared is not None and _shared_pid == os.getpid():
        _shared.stop()
