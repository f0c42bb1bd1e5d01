"""Random models of real shapes, built in memory from the real transformers classes.

Why random: cost depends on the shape (visual tokens, depth, width), not on the weights, so a
random model with LLaVA-1.5's shape (CLIP 336 px / 14 px patches = 24x24 visual tokens, 32
decoder layers) times what a real one would, on any machine, without a download. Built in
memory (``make_llava`` / ``make_qwen2_vl``, what the testbed's checkpoint builders wrap) on the
target device, so a 7B-shaped model appears on a GPU in seconds instead of via 28 GB on disk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Shape:
    """A random model's shape and the size of the benchmark image.

    family: "llava" (CLIP tower) or "qwen2_vl" (dynamic grid); how many visual tokens an image
    becomes is the family adapter's rule, read from the built model (``Context.load``), not restated here.
    """

    name: str
    family: str = "llava"
    layers: int = 32
    width: int = 256
    heads: int = 4
    kv_heads: int = 4
    intermediate: int | None = None
    vision_layers: int = 12
    vision_width: int = 256
    image_size: int = 336
    patch: int = 14
    image: tuple[int, int] = (336, 336)  # (width, height) of the benchmark images
    max_positions: int = 4096
    vocab: int | None = None  # output-layer size; None: the testbed's word list (~100 words)

    def with_(self, **changes) -> "Shape":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)  # its grid is what the family's adapter finds (the run's model.visual_tokens)


# The reference measurement: CLIP 12x256 at 336 px, 32 decoder layers of width 256. The
# vocabulary is scaled with the width (2,048 words) so that the output layer keeps the small share
# of a decode step it has in LLaVA-1.5-7B (~2 %): DoLa runs it once per candidate layer per token,
# so a 32k vocabulary on a width-256 model would overstate DoLa's cost and a 100-word one hide it.
LLAVA_15_CPU = Shape("llava-1.5-shape (width 256)", vocab=2048)
# LLaVA-1.5-7B's decoder (Llama-2-7B, 32,064-token vocabulary) and CLIP-L's depth and width, for a GPU in fp16.
LLAVA_15_7B = Shape("llava-1.5-7b-shape", width=4096, heads=32, kv_heads=32, intermediate=11008,
                    vision_layers=24, vision_width=1024, vocab=32064)
# Small enough for CI on 2 cores: 8x8 visual tokens, 8 layers of width 32.
TINY = Shape("tiny", layers=8, width=32, heads=4, kv_heads=2, vision_layers=2, vision_width=32,
             image_size=112, image=(112, 112), max_positions=1024)


def growth_shapes(base: Shape, quick: bool) -> list[tuple[str, str, Shape]]:
    """(axis, label, shape) points of the growth section around ``base``.

    Visual tokens: 24x24, 32x32 and a Qwen2-VL dynamic grid (37x27 from a 1036x756 image);
    depth: 16, 32, 48 layers. Quick mode scales both down (8x8, 12x12, 5x7; 4, 8, 12 layers).
    """
    if quick:
        qwen = base.with_(name="qwen2-vl 5x7", family="qwen2_vl", patch=8, image=(112, 80))
        return [("visual_tokens", "8x8", base), ("visual_tokens", "12x12", base.with_(name="12x12", image_size=168)),
                ("visual_tokens", "qwen2-vl 5x7", qwen),
                ("depth", "4 layers", base.with_(name="4 layers", layers=4)), ("depth", "8 layers", base),
                ("depth", "12 layers", base.with_(name="12 layers", layers=12))]
    qwen = base.with_(name="qwen2-vl 27x37", family="qwen2_vl", patch=14, image=(1036, 756))
    return [("visual_tokens", "24x24", base), ("visual_tokens", "32x32", base.with_(name="32x32", image_size=448)),
            ("visual_tokens", "qwen2-vl 27x37", qwen),
            ("depth", "16 layers", base.with_(name="16 layers", layers=16)), ("depth", "32 layers", base),
            ("depth", "48 layers", base.with_(name="48 layers", layers=48))]


def build(shape: Shape, device: str, dtype, seed: int = 0):
    """An ``SCRPipeline`` around a freshly initialised model of ``shape`` on ``device`` in ``dtype``."""
    import torch

    from scr_core import SCRPipeline

    with torch.device(device):
        if shape.family == "llava":
            from scr_core.testbed.tiny import WORDS, make_llava

            model, processor = make_llava(
                words=(*WORDS, *_fillers(shape.vocab, len(WORDS))), seed=seed, image_size=shape.image_size,
                patch_size=shape.patch, num_layers=shape.layers,
                hidden_size=shape.width, intermediate_size=shape.intermediate, num_heads=shape.heads,
                num_kv_heads=shape.kv_heads, vision_layers=shape.vision_layers, vision_hidden_size=shape.vision_width,
                max_position_embeddings=shape.max_positions)
            with torch.no_grad():  # as build_tiny_llava: logits that depend on the input
                model.lm_head.weight.normal_(0.0, 1.0)
        elif shape.family == "qwen2_vl":
            from scr_core.testbed.tiny_families import make_qwen2_vl

            pixels = shape.image[0] * shape.image[1]
            model, processor = make_qwen2_vl(
                seed=seed, num_layers=shape.layers, hidden_size=shape.width, intermediate_size=shape.intermediate,
                num_heads=shape.heads, num_kv_heads=shape.kv_heads, patch_size=shape.patch,
                min_pixels=min(pixels, 32 * 32), max_pixels=pixels, extra_words=_fillers(shape.vocab, 100))
        else:
            raise ValueError(f"unknown family {shape.family!r}")
    model.to(device=device, dtype=dtype)
    return SCRPipeline(model, processor)


def _fillers(vocab: int | None, present: int) -> tuple[str, ...]:
    """Made-up words that bring a vocabulary of about ``present`` words up to ``vocab``."""
    return tuple(f"w{i}" for i in range(max(0, (vocab or 0) - present)))
