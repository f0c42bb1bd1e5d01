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
