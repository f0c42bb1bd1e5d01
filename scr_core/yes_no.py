"""Yes/no answer parsing: a model's free text as ``"yes"``, ``"no"`` or ``"unknown"``, by named rule.

Why here, in the core: ``GenerationResult.yes_no``, the benchmarks (``scr_core.eval.parsing``
re-exports this module) and ``calibrate`` read answers the same way. Each reference script parses
answers its own way and the parser alone changes the scores (docs/benchmarks.md names each
benchmark's default rule), so every rule used by a reference script is available by name and
every score records which one it used.
Each rule maps free text to ``"yes"``, ``"no"`` or ``"unknown"``; scorers count ``"unknown"``
as a wrong answer.

What each rule returns on the usual edge cases:

============================  =======  =============  ==========  =======  ==========  =======  ===========  ===========
answer                        pope     pope_casefold  first_word  strict   vlmevalkit  mme      mme_lenient  amber_exact
============================  =======  =============  ==========  =======  ==========  =======  ===========  ===========
``"Yes"``                     yes      yes            yes         yes      yes         yes      yes          yes
``"Yes."``                    yes      yes            yes         unknown  yes         yes      yes          unknown
``"yes"``                     yes      yes            yes         yes      yes         yes      yes          unknown
``"No"``                      no       no             no          no       no          no       no           no
``"No, there is not."``       no       no             no          unknown  no          no       no           unknown
``"NO"``                      yes      no             no          no       no          no       no           unknown
``"Not sure"``                yes      no             unknown     unknown  unknown     no       no           unknown
``"There is no dog."``        no       no             unknown     unknown  no          unknown  unknown      unknown
``""`` (empty)                yes      yes            unknown     unknown  unknown     unknown  unknown      unknown
``"asdf qwerty"`` (garbage)   yes      yes            unknown     unknown  unknown     unknown  unknown      unknown
``"Yes and no"``              no       no             yes         unknown  unknown     yes      yes          unknown
``"Y"``                       yes      yes            unknown     unknown  unknown     unknown  yes          unknown
``"n."``                      yes      yes            unknown     unknown  unknown     unknown  no           unknown
``"  yes"``                   yes      yes            yes         yes      yes         unknown  yes          unknown
``"...yes"``                  yes      yes            yes         unknown  yes         unknown  yes          unknown
============================  =======  =============  ==========  =======  ==========  =======  ===========  ===========

Rules:

* ``pope`` - POPE's official ``evaluate.py`` (LLaVA's ``eval_pope.py`` is identical), kept
  byte-for-byte in behaviour: keep the text before the first ".", drop commas, split on single
  spaces; if a word is exactly ``"No"``, ``"not"`` or ``"no"`` the answer is no, otherwise yes.
  It never returns unknown, is case-sensitive (``"NO"`` and ``"Not sure"`` are yes) and only
  splits on spaces (``"No\\nthere is"`` is yes). Use it to compare with published POPE numbers.
* ``pope_casefold`` - the same idea made robust: lower-case, first sentence ends at ``.!?`` or a
  newline, words are runs of letters; ``no``/``not`` anywhere in that sentence means no, else yes.
* ``first_word`` - the first word (letters only, any case) if it is yes or no, else unknown.
* ``strict`` - lower-cased, stripped text must be exactly ``yes`` or ``no`` (lmms-eval's exact match).
* ``vlmevalkit`` - VLMEvalKit's ``YOrN_Extraction``: lower-case, punctuation to spaces, split;
  yes without no means yes, no without yes means no, anything else unknown. (Punctuation
  handling approximates VLMEvalKit's ``process_punctuation``; they differ only on words with
  inner apostrophes, which are never yes/no.)
* ``mme`` - MME's own ``eval_tool/calculation.py`` (``parse_pred_ans``), the default for MME:
  lower-case (nothing stripped); exactly yes/no, else "yes" within the first 4 characters, else
  "no" within the first 4 characters, else unknown (MME's "other", scored wrong). So ``"Y"``,
  ``"n."``, ``"  yes"`` and ``"...yes"`` are unknown, while ``"nope"`` and ``"not ..."`` are no.
* ``mme_lenient`` - the MME rule used by lmms-eval ("from Otter eval"), a superset of ``mme``:
  the same after stripping whitespace and deleting ".", plus single letters y/n.
* ``amber_exact`` - AMBER's ``inference.py`` compares the raw response with ``"Yes"``/``"No"`` by
  string equality (the answers its instruction asks for); this rule is that comparison and the
  default for AMBER. ``first_word`` is the lenient alternative.
"""

from __future__ import annotations

import re
from collections.abc import Callable

YES = "yes"
NO = "no"
UNKNOWN = "unknown"
LABELS = (YES, NO, UNKNOWN)

_LETTER_WORDS = re.compile(r"[a-z]+")
_SENTENCE_END = re.compile(r"[.!?\n]")
_PUNCT = re.compile(r"[^\w\s]")


def _pope(text: str) -> str:
    # Official POPE evaluate.py, including its quirks (see module docstring).
    if text.find(".") != -1:
        text = text.split(".")[0]
    text = text.replace(",", "")
    words = text.split(" ")
    if "No" in words or "not" in words or "no" in words:
        return NO
    return YES


def _pope_casefold(text: str) -> str:
    first = _SENTENCE_END.split(text.lower(), maxsplit=1)[0]
    words = set(_LETTER_WORDS.findall(first))
    return NO if words & {"no", "not"} else YES


def _first_word(text: str) -> str:
    words = _LETTER_WORDS.findall(text.lower())
    if words and words[0] in (YES, NO):
        return words[0]
    return UNKNOWN


def _strict(text: str) -> str:
    s = text.strip().lower()
    return s if s in (YES, NO) else UNKNOWN


def _vlmevalkit(text: str) -> str:
    words = _PUNCT.sub(" ", text.lower()).split()
    has_yes, has_no = YES in words, NO in words
    if has_yes and not has_no:
        return YES
    if has_no and not has_yes:
        return NO
    return UNKNOWN


def _mme(text: str) -> str:
    # MME calculation.py parse_pred_ans on the lower-cased answer, nothing stripped.
    s = text.lower()
    if s in (YES, NO):
        return s
    return _mme_prefix(s)


def _mme_prefix(s: str) -> str:
    prefix = s[:4]
    if YES in prefix:
        return YES
    if NO in prefix:
        return NO
    return UNKNOWN


def _mme_lenient(text: str) -> str:
    s = text.lower().strip().replace(".", "")
    if s in (YES, NO):
        return s
    if len(s) == 1:
        return {"y": YES, "n": NO}.get(s, UNKNOWN)
    return _mme_prefix(s)


def _amber_exact(text: str) -> str:
    return {"Yes": YES, "No": NO}.get(text, UNKNOWN)


RULES: dict[str, Callable[[str], str]] = {
    "pope": _pope,
    "pope_casefold": _pope_casefold,
    "first_word": _first_word,
    "strict": _strict,
    "vlmevalkit": _vlmevalkit,
    "mme": _mme,
    "mme_lenient": _mme_lenient,
    "amber_exact": _amber_exact,
}


def available_rules() -> tuple[str, ...]:
    """Names accepted by ``parse_yes_no(rule=...)``."""
    return tuple(RULES)


def get_rule(rule: str) -> Callable[[str], str]:
    """The parsing function for a rule name; ``ValueError`` listing the valid names otherwise."""
    try:
        return RULES[rule]
    except KeyError:
        raise ValueError(f"unknown yes/no parsing rule {rule!r}; choose one of {', '.join(RULES)}") from None


def parse_yes_no(text: str | None, rule: str = "pope") -> str:
    """``"yes"``, ``"no"`` or ``"unknown"`` for one model answer under the named rule.

    ``None`` is treated as the empty string (a model that produced nothing).
    """
    fn = get_rule(rule)
    return fn("" if text is None else str(text))


def parse_many(texts, rule: str = "pope") -> list[str]:
    """``parse_yes_no`` over an iterable of answers."""
    fn = get_rule(rule)
    return [fn("" if t is None else str(t)) for t in texts]
