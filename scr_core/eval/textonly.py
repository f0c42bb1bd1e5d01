"""Greedy answers to benchmark questions asked without an image (HallusionBench's 178).

Why: HallusionBench's official aAcc/qAcc count the visual-supplement questions asked without
their figure, so a run that skips them cannot be compared with the leaderboard. SCR redistributes
attention over image tokens; with no image there is nothing to redistribute, so every method
answers these questions the same way: the model's own greedy decoding of the prompt in its chat
template (the adapter's ``format_prompt`` with zero images).
"""

from __future__ import annotations

from collections.abc import Sequence

from scr_core.errors import ConfigError


def generate_text_only(pipe, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy answers of ``pipe``'s model to ``prompts`` without images (left-padded batch)."""
    import torch

    adapter, model = getattr(pipe, "adapter", None), getattr(pipe, "model", None)
    if adapter is None or model is None:
        raise ConfigError("this pipeline cannot answer questions without an image (that needs a loaded "
                          "PyTorch SCRPipeline); score the visual questions only (--scope visual)")
    processor = adapter.processor
    texts = [adapter.format_prompt(p, 0) for p in prompts]
    inputs = processor(text=texts, return_tensors="pt", padding=True, padding_side="left")
    inputs = {k: v.to(model.device) for k, v in inputs.items() if torch.is_tensor(v)}
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return [t.strip() for t in processor.batch_decode(new_tokens, skip_special_tokens=True)]
