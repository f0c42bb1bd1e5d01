"""LLaVA-1.5's evaluation prompts, in one torch-free place (pipeline, eval suites and testbed share them)."""

CAPTION_PROMPT = "Provide a one-sentence caption for the provided image."
# Appended to yes/no and short-answer questions (POPE, MME, ...), after one space.
SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."
#: Characters a prompt may hold (an instruction or a question; a long one is a few hundred). Checked before
#: the chat template sees it, so a long paste is refused as such, not as a template fault.
MAX_PROMPT_CHARS = 100_000


def check_prompt(prompt) -> str:
    """``prompt`` if it is usable text; one rule for the API, the CLI and the nodes (torch-free)."""
    from .errors import InputError

    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("the prompt is empty; pass a question or an instruction")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"the prompt is {len(prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,} "
                         "characters, so shorten it")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the prompt is not valid UTF-8 text (undecodable bytes); pass it as UTF-8") from None
    return prompt


def chat_messages(prompt: str, media) -> list[dict]:
    """The chat a prompt becomes, for every family's template and both runtimes: the images first, then the
    text (SCR's query rows are the text after the image). ``media``: a number of images, or the kinds in
    order (``"image"``, ``"video"``) for prompts with clips."""
    kinds = ["image"] * media if isinstance(media, int) else list(media)
    content = [{"type": kind} for kind in kinds] + [{"type": "text", "text": prompt}]
    return [{"role": "user", "content": content}]


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


# -- caption presets -------------------------------------------------------------------------
#: What each caption preset asks the model; the one table the CLI, the nodes and the README use.
#: ``None``: the instruction the user typed.
CAPTION_PRESETS: dict[str, str | None] = {
    "descriptive": CAPTION_PROMPT,
    "short": "Describe the image in a few words.",
    "detailed": "Describe the image in detail: every object, its colour, its position and what it is doing.",
    "tags": "List what is in the image as comma-separated tags (objects, colours, setting), most important first.",
    "training": "Write a caption for training an image model: the subject, its appearance, the setting, the "
                "composition and the style, in plain words, without opinions or guesses.",
    "custom": None,
}

#: Appended after one space to any preset's instruction (custom included); "any" adds nothing.
CAPTION_LENGTHS: dict[str, str] = {
    "any": "",
    "short": "Use at most 15 words.",
    "medium": "Use about 30 to 50 words.",
    "long": "Use about 80 to 120 words.",
}


def instruction_for(preset: str = "descriptive", length: str = "any", custom_text: str | None = None) -> str:
    """The instruction a caption preset sends: the table's text (``custom``: ``custom_text`` as typed),
    plus the length phrase. A preset other than custom ignores ``custom_text``."""
    from .errors import InputError

    for name, value, table in (("preset", preset, CAPTION_PRESETS), ("length", length, CAPTION_LENGTHS)):
        if not isinstance(value, str) or value not in table:
            raise InputError(f"{name} must be one of {', '.join(table)} (got {value!r})")
    text = CAPTION_PRESETS[preset]
    if text is None:
        if custom_text is None:
            raise InputError("preset custom needs an instruction of your own; give one or pick another preset")
        text = check_prompt(custom_text)
    suffix = CAPTION_LENGTHS[length]
    return f"{text.rstrip()} {suffix}" if suffix else text
