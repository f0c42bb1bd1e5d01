"""LLaVA-1.5's evaluation prompts, in one torch-free place (pipeline, eval suites and testbed share them)."""

CAPTION_PROMPT = "Provide a one-sentence caption for the provided image."
# Appended to yes/no and short-answer questions (POPE, MME, ...), after one space.
SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."


def check_prompt(prompt) -> str:
    """``prompt`` if it is usable text; one rule for the API, the CLI and the nodes (torch-free)."""
    from .errors import InputError

    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("the prompt is empty; pass a question or an instruction")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the prompt is not valid UTF-8 text (undecodable bytes); pass it as UTF-8") from None
    return prompt


def pair_prompts(prompt, count: int, reserved=()) -> list[str]:
    """One checked prompt per image group: ``prompt`` for all (None: the caption instruction) or a
    list of ``count``. ``reserved``: the model's image tokens, which a typed prompt may not contain."""
    from .errors import InputError

    prompt = CAPTION_PROMPT if prompt is None else prompt
    prompts = [prompt] * count if isinstance(prompt, str) else list(prompt)
    if len(prompts) != count:
        raise InputError(f"got {len(prompts)} prompts for {count} images")
    for p in prompts:
        check_prompt(p)
        typed = sorted(t for t in reserved if t in p)
        if typed:
            raise InputError(f"the prompt contains the model's image token {typed[0]!r}; SCR inserts the image "
                             "itself, so remove it from the prompt")
    return prompts
