"""``python -m bench.quantized``: a model's bytes at fp32 / 8-bit / 4-bit, measured, and what that means at 7B.

Measured: the tiny LLaVA of ``tests/test_quantized.py`` (decoder 128 wide, MLP 256: bitsandbytes' CPU 4-bit
path needs multiples of 64), saved and loaded like a user's checkpoint, its bytes as ``/scr/models``
reports them (transformers' ``get_memory_footprint``). Estimated: LLaVA-1.5-7B from its parameter counts (built on the meta device, nothing
downloaded): the decoder's Linear weights at 1 byte (8-bit) or 0.5 byte + NF4's per-block scales (4-bit),
everything else (vision tower, projector, embeddings, LM head, norms) at fp16.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

NF4_BYTES_PER_WEIGHT = 0.5 + 0.127 / 8  # 4 bits + double-quantized absmax per 64 weights (about 0.127 bit)


def tiny_bytes() -> dict[str, int]:
    from scr_core.pipeline import SCRPipeline
    from scr_core.testbed.tiny import build_tiny_llava

    with tempfile.TemporaryDirectory() as folder:
        path = build_tiny_llava(Path(folder) / "wide-llava", hidden_size=128, intermediate_size=256,
                                vision_hidden_size=32)
        return {q or "fp32": int(SCRPipeline.from_pretrained(path, quantization=q).model.get_memory_footprint())
                for q in (None, "8bit", "4bit")}


def llava_7b_estimate() -> dict[str, float]:
    """GB at fp16 / 8-bit / 4-bit from LLaVA-1.5-7B's parameter counts."""
    import torch
    from accelerate import init_empty_weights
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(vision_config=CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                                        num_attention_heads=16, image_size=336, patch_size=14),
                         text_config=LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008,
                                                 num_hidden_layers=32, num_attention_heads=32))
    with init_empty_weights():
        model = LlavaForConditionalGeneration(config)
    decoder = model.model.language_model.layers
    linear = sum(m.weight.numel() for m in decoder.modules() if isinstance(m, torch.nn.Linear))
    total = sum(p.numel() for p in model.parameters())
    rest = total - linear
    return {"parameters": total / 1e9, "fp16": 2 * total / 1e9, "8bit": (linear + 2 * rest) / 1e9,
            "4bit": (NF4_BYTES_PER_WEIGHT * linear + 2 * rest) / 1e9}


def main() -> None:
    from scr_core.loading import bitsandbytes_missing

    missing = bitsandbytes_missing()
    if missing:
        raise SystemExit(f"bench.quantized: {missing}")
    tiny = tiny_bytes()
    print("| load | tiny LLaVA (measured) | share of fp32 |")
    print("|---|---:|---:|")
    for name, size in tiny.items():
        print(f"| {name} | {size:,} bytes | {size / tiny['fp32']:.2f} |")
    big = llava_7b_estimate()
    print(f"\nLLaVA-1.5-7B ({big['parameters']:.2f} B parameters), estimated from parameter counts: "
          f"fp16 {big['fp16']:.1f} GB, 8-bit {big['8bit']:.1f} GB, 4-bit {big['4bit']:.1f} GB (weights only)")


if __name__ == "__main__":
    main()
