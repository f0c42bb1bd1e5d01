"""Line up a runner's answers with the samples they belong to.

Why: runners naturally produce either a list in sample order or a dict keyed by question id;
both are accepted everywhere, and a missing or extra answer is an error rather than a silently
shorter evaluation.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence


def align_answers(keys: Sequence[Sequence[Hashable]], answers, what: str = "answers") -> list:
    """One answer per sample, in sample order.

    ``keys[i]`` lists the keys sample ``i`` may be found under in a mapping, most specific first
    (e.g. ``((split, question_id), question_id)``). ``answers`` is either a sequence of the same
    length as ``keys`` or a mapping. Raises ``ValueError`` naming the first sample without an
    answer, or on a length mismatch.
    """
    if isinstance(answers, Mapping):
        out = []
        for sample_keys in keys:
            for key in sample_keys:
                if key in answers:
                    out.append(answers[key])
                    break
            else:
                raise ValueError(f"no entry in {what} for sample {sample_keys[0]!r}")
        return out
    if isinstance(answers, (str, bytes)) or not isinstance(answers, Sequence):
        raise TypeError(
            f"{what} must be a list in sample order or a dict keyed by sample id, got {type(answers).__name__}"
        )
    if len(answers) != len(keys):
        raise ValueError(f"{len(answers)} {what} for {len(keys)} samples")
    return list(answers)
