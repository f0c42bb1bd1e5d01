"""The chat-template renderer's own process (started and watched by ``template_guard``; not imported).

Why a process: a template is untrusted Jinja code, and one built-in operation it asks for (``3 ** n``,
``'a' * n``, a sort of millions) runs in C, holding the GIL, beyond the reach of any check in the
caller's process; ComfyUI's HTTP thread would freeze with it. Here the parent can kill it at the
deadline, and the kernel caps its memory (Linux: ``RLIMIT_AS``, set after the imports to what the
process maps plus the budget in ``argv[1]``; 0: no cap, the parent watches instead).

It renders with transformers' own ``render_jinja_template`` (the sandboxed environment, the
``raise_exception``/``tojson``/``strftime_now`` helpers), so its text equals
``apply_chat_template(..., tokenize=False)``. It imports nothing of ``scr_core`` and never torch.

Protocol, one JSON object per line: first ``{"ready": true, "limited": bool}`` (or ``{"error", "kind":
"start"}``), then for each request ``{"template", "messages", "variables", "add_generation_prompt",
"max_chars"}`` one answer ``{"text"}`` or ``{"error", "kind"}``. After a ``"memory"`` answer it exits.
"""

import os
import sys

# Run as a script, its folder (scr_core/) comes first on sys.path: its modules must not shadow anything.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import json  # noqa: E402

#: Characters of an error message sent back (the parent shortens it again for its one line).
MESSAGE_CHARS = 2000


def _send(channel, answer: dict) -> None:
    channel.write(json.dumps(answer).encode("ascii") + b"\n")
    channel.flush()


def _limit_memory(budget: int) -> bool:
    """Cap the address space at what the process maps now plus ``budget`` bytes; False where the
    kernel cannot say what is mapped (no ``/proc``: the parent watches the memory instead)."""
    try:
        import resource

        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (mapped + budget, mapped + budget))
    except (ImportError, OSError, ValueError):
        return False
    return True


def _render(render, jinja2, request: dict) -> dict:
    try:
        rendered = render(conversations=[request["messages"]], chat_template=request["template"],
                          add_generation_prompt=request["add_generation_prompt"], **request["variables"])[0][0]
    except MemoryError:
        return {"kind": "memory", "error": "out of memory"}
    except RecursionError:
        return {"kind": "recursion", "error": "recursion too deep"}
    except jinja2.TemplateSyntaxError as err:
        return {"kind": "syntax", "error": f"{err.message} (line {err.lineno})"[:MESSAGE_CHARS]}
    except jinja2.TemplateError as err:  # raise_exception raises the base class itself
        kind = "raised" if type(err) is jinja2.TemplateError else "failed"
        text = str(err) if kind == "raised" else f"{type(err).__name__}: {err}"
        return {"kind": kind, "error": text[:MESSAGE_CHARS]}
    except Exception as err:  # the template's own bug (a TypeError, a ZeroDivisionError, ...)
        return {"kind": "failed", "error": f"{type(err).__name__}: {err}"[:MESSAGE_CHARS]}
    if not isinstance(rendered, str):
        return {"kind": "failed", "error": f"the render gave {type(rendered).__name__}, not text"}
    if len(rendered) > request["max_chars"]:
        return {"kind": "size", "error": str(len(rendered))}
    return {"text": rendered}


def main() -> int:
    budget = int(sys.argv[1])
    for extra in sys.argv[2:]:  # where the parent found transformers (appended: shadows nothing)
        if extra not in sys.path:
            sys.path.append(extra)
    channel = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers on the channel
    # transformers 5.0's template module imports torch when it is installed (for type hints only): hide it,
    # so the renderer stays small (about 60 MB) and its memory budget is the template's
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import jinja2
        from transformers.utils.chat_template_utils import render_jinja_template
    except Exception as err:
        _send(channel, {"kind": "start", "error": f"{type(err).__name__}: {err}"[:MESSAGE_CHARS]})
        return 1
    _send(channel, {"ready": True, "limited": budget > 0 and _limit_memory(budget)})
    for line in sys.stdin.buffer:
        try:
            answer = _render(render_jinja_template, jinja2, json.loads(line))
        except MemoryError:
            answer = {"kind": "memory", "error": "out of memory"}
        _send(channel, answer)
        if answer.get("kind") == "memory":
            return 0  # its heap is suspect: the parent starts a fresh one
    return 0


if __name__ == "__main__":
    sys.exit(main())
