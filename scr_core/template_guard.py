"""A time and size limit on rendering a checkpoint's chat template (torch-free).

A chat template is Jinja code shipped with the checkpoint. transformers renders it in Jinja's
sandbox (no file or attribute access, ranges capped), but nested loops can still run for hours and
hold a ComfyUI queue. Jinja compiles a template to Python code named ``<template>``; while one is
rendered, a trace function on this thread watches only those frames and stops the render at the
deadline. The rendered text is capped too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from .errors import ModelLoadError

#: Seconds a chat template may take to render one prompt (real ones take milliseconds).
TEMPLATE_SECONDS = 2.0
#: Characters a rendered prompt may hold (before the processor expands the image tokens).
MAX_PROMPT_CHARS = 1_000_000
_TEMPLATE_FILE = "<template>"


class TemplateTooSlow(ModelLoadError):
    """The chat template did not finish rendering within ``TEMPLATE_SECONDS``."""


def render_limited(render: Callable[[], object], seconds: float = TEMPLATE_SECONDS,
                   max_chars: int = MAX_PROMPT_CHARS) -> object:
    """``render()``, stopped with one ``ModelLoadError`` line when a template runs past ``seconds`` or
    its text exceeds ``max_chars``."""
    deadline = time.monotonic() + seconds
    message = (f"the model's chat template took more than {seconds:g} s to render one prompt; refusing it "
               "(a real template takes milliseconds: this one is broken or hostile)")

    def on_line(frame, event, arg):
        if time.monotonic() > deadline:
            raise TemplateTooSlow(message)
        return on_line

    def on_call(frame, event, arg):
        return on_line if frame.f_code.co_filename == _TEMPLATE_FILE else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        text = render()
    finally:
        sys.settrace(previous)
    if isinstance(text, str) and len(text) > max_chars:
        raise ModelLoadError(f"the model's chat template rendered {len(text):,} characters for one prompt (limit "
                             f"{max_chars:,}); refusing it (broken or hostile template)")
    return text
