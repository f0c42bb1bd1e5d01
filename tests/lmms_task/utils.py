"""The hooks of the scr_yesno task: the image, the prompt as the runner asks it, and accuracy
with the POPE rule (the answer's first word, as RUCAIBox/POPE reads it)."""

from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc):
    return doc["prompt"]


def process_results(doc, results):
    from scr_core.eval.parsing import parse_yes_no

    return {"accuracy": float(parse_yes_no(results[0], "pope") == doc["answer"])}
