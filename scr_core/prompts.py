"""LLaVA-1.5's evaluation prompts, in one torch-free place (pipeline, eval suites and testbed share them)."""

CAPTION_PROMPT = "Provide a one-sentence caption for the provided image."
# Appended to yes/no and short-answer questions (POPE, MME, ...), after one space.
SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."
