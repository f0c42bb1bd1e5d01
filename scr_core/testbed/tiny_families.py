"""Tiny random checkpoints of every supported family, built from the real transformers classes.

Like ``tiny.py`` (LLaVA): each builder writes a complete checkpoint folder with
``save_pretrained`` (model, tokenizer made offline with the ``tokenizers`` library, the
family's real image-processor and processor classes, a chat template in the family's
format), so loading it back goes through ``AutoModelForImageTextToText`` /
``AutoProcessor`` exactly as a user's local checkpoint does. The decoders have 18 layers
so the paper's diagnostic layers 8..16 exist. Random weights show that the plumbing works,
not that SCR helps.

    python -c "from scr_core.testbed.tiny_families import build; build('qwen2_vl', 'tiny-qwen2-vl')"
"""

from __future__ import annotations

from pathlib import Path

from .tiny import WORDS, build_word_tokenizer

CHAT_WORDS = ("user", "assistant", "system", "USER", "ASSISTANT", ":")

QWEN_SPECIALS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                 "<|video_pad|>")

# The Qwen2-VL / Qwen2.5-VL format (system prompt left out): each image is one
# <|vision_start|><|image_pad|><|vision_end|>, which the processor expands to the image's grid (a clip:
# <|video_pad|>, expanded to its slices, as in the real models' templates).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

INTERNVL_SPECIALS = ("<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>")

# InternVL2.5/3 (-hf) format: each image is "<IMG_CONTEXT>\n"; the processor expands it to
# <img><IMG_CONTEXT>*(tokens per tile * tiles)</img>.
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CHAMELEON_SPECIALS = ("<image>", "<racm3:break>", "<eoss>", "<reserved08706>")

# Chameleon's chat format (as in facebook/chameleon-7b): images first, then text; the processor
# expands each <image> to <racm3:break><image>*1024<eoss> and appends the separator token.
CHAMELEON_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}{{ item['text'] + ' ' }}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def _tokenizer(specials: tuple[str, ...], extra_words: tuple[str, ...] = (), **named):
    """Word-level tokenizer with the family's special tokens (``named``: attribute -> token)."""
    from transformers import PreTrainedTokenizerFast

    base = build_word_tokenizer((*WORDS, *CHAT_WORDS, *extra_words), extra_special=specials)
    kwargs = dict(unk_token="<unk>", pad_token="<pad>", bos_token="<s>", padding_side="left")
    kwargs.update({k: v for k, v in named.items() if k in ("eos_token", "sep_token")})
    extra = {k: v for k, v in named.items() if k not in kwargs}
    return PreTrainedTokenizerFast(tokenizer_object=base._tokenizer, extra_special_tokens=extra or None, **kwargs)


def _prime(model, tokenizer) -> None:
    import torch

    # Random init gives tiny logits; a larger lm_head makes greedy text depend on the input.
    with torch.no_grad():
        model.get_output_embeddings().weight.normal_(0.0, 1.0)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id


def _finish(model, tokenizer, out: Path) -> None:
    _prime(model, tokenizer)
    model.save_pretrained(out)


def _text_kwargs(tokenizer, hidden_size: int, num_layers: int, num_heads: int, num_kv_heads: int,
                 intermediate_size: int | None = None) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=2048,
        initializer_range=0.15,  # larger than the default so attention is far from uniform
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def build_tiny_qwen2_vl(out_dir: str | Path, **options) -> Path:
    """Write a random Qwen2-VL / Qwen2.5-VL checkpoint (options: see :func:`make_qwen2_vl`)."""
    out = Path(out_dir)
    model, processor = make_qwen2_vl(**options)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def make_qwen2_vl(*, seed: int = 0, version: str = "2", num_layers: int = 18, hidden_size: int = 48,
                  num_heads: int = 4, num_kv_heads: int = 2, patch_size: int = 8, min_pixels: int = 32 * 32,
                  max_pixels: int = 128 * 128, intermediate_size: int | None = None,
                  extra_words: tuple[str, ...] = ()):
    """Random ``Qwen2VLForConditionalGeneration`` (``version="2"``) or ``Qwen2_5_VLForConditionalGeneration``
    (``version="2.5"``) and its processor, in memory (benchmarks build large shapes on the GPU).

    A merged visual token covers ``2 * patch_size`` pixels square (16 px by default), so a
    112x128 image becomes a 7x8 grid; GQA (4 query heads, 2 KV heads) and M-RoPE as in the
    real models. ``extra_words`` enlarge the vocabulary (a benchmark's output layer of a real size).
    """
    import torch
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    if version == "2":
        from transformers import Qwen2VLConfig as Config
        from transformers import Qwen2VLForConditionalGeneration as Model
        from transformers import Qwen2VLProcessor as Processor
    elif version == "2.5":
        from transformers import Qwen2_5_VLConfig as Config
        from transformers import Qwen2_5_VLForConditionalGeneration as Model
        from transformers import Qwen2_5_VLProcessor as Processor
    else:
        raise ValueError(f"version must be '2' or '2.5', not {version!r}")

    tokenizer = _tokenizer(QWEN_SPECIALS, extra_words=tuple(extra_words), eos_token="<|im_end|>")
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIALS}
    head_dim = hidden_size // num_heads
    third = head_dim // 2 // 3
    mrope = [head_dim // 2 - 2 * third, third, third]  # temporal, height, width halves of the rotary dims
    text = dict(_text_kwargs(tokenizer, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size),
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope})
    vision = dict(depth=2, hidden_size=hidden_size, num_heads=2, patch_size=patch_size,
                  spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    if version == "2":
        vision.update(embed_dim=32, mlp_ratio=2)
    else:
        vision.update(hidden_size=32, intermediate_size=64, out_hidden_size=hidden_size,
                      window_size=4 * patch_size, fullatt_block_indexes=[1])
    config = Config(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Model(config).eval()
    _prime(model, tokenizer)
    image_processor = Qwen2VLImageProcessor(patch_size=patch_size, merge_size=2, temporal_patch_size=2,
                                            min_pixels=min_pixels, max_pixels=max_pixels)
    video_processor = Qwen2VLVideoProcessor(patch_size=patch_size, merge_size=2, temporal_patch_size=2,
                                            min_pixels=min_pixels, max_pixels=max_pixels)
    processor = Processor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                          chat_template=QWEN_CHAT_TEMPLATE)
    return model, processor


def build_tiny_qwen2_5_vl(out_dir: str | Path, **kwargs) -> Path:
    """Random ``Qwen2_5_VLForConditionalGeneration`` (see :func:`build_tiny_qwen2_vl`)."""
    return build_tiny_qwen2_vl(out_dir, version="2.5", **kwargs)


def build_tiny_internvl(out_dir: str | Path, *, seed: int = 0, num_layers: int = 18, hidden_size: int = 32,
                        num_heads: int = 4, num_kv_heads: int = 2, tile_size: int = 96, patch_size: int = 8) -> Path:
    """Random transformers-native ``InternVLForConditionalGeneration`` (Qwen2 decoder) with its processor.

    A tile of ``tile_size`` px has (tile_size / patch_size)² patches, pixel-shuffled by 0.5:
    a 6x6 grid per tile by default (16x16 for the real 448 px / 14 px models).
    """
    import torch
    from transformers import (GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, InternVLVideoProcessor)

    out = Path(out_dir)
    tokenizer = _tokenizer(INTERNVL_SPECIALS, eos_token="<|im_end|>", start_image_token="<img>",
                           end_image_token="</img>", context_image_token="<IMG_CONTEXT>", video_token="<video>")
    side = tile_size // patch_size // 2
    text = dict(_text_kwargs(tokenizer, hidden_size, num_layers, num_heads, num_kv_heads), model_type="qwen2",
                tie_word_embeddings=False)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  image_size=[tile_size, tile_size], patch_size=[patch_size, patch_size])
    config = InternVLConfig(text_config=text, vision_config=vision,
                            image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
                            image_seq_length=side * side, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    _finish(model, tokenizer, out)
    image_processor = GotOcr2ImageProcessor(size={"height": tile_size, "width": tile_size}, crop_to_patches=False,
                                            min_patches=1, max_patches=12)
    video_processor = InternVLVideoProcessor(size={"height": tile_size, "width": tile_size})
    processor = InternVLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                                  image_seq_length=side * side, chat_template=INTERNVL_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    return out


def build_tiny_chameleon(out_dir: str | Path, *, seed: int = 0, num_layers: int = 18, hidden_size: int = 32,
                         num_heads: int = 4, num_kv_heads: int = 4, resolution: int = 64, codebook: int = 32) -> Path:
    """Random ``ChameleonForConditionalGeneration`` (VQ image tokenizer + early-fusion decoder).

    The VQ encoder downsamples by 8 here (16 for the real 512 px model), so a 64 px image is an
    8x8 grid of codes (32x32 = 1024 for the real model); the codes are extra ``IMGIMG…`` tokens.
    """
    import torch
    from transformers import (ChameleonConfig, ChameleonForConditionalGeneration, ChameleonImageProcessor,
                              ChameleonProcessor)

    out = Path(out_dir)
    letters = "ABCDEFGHIJ"
    code_names = tuple("IMGIMG" + "".join(letters[int(d)] for d in str(i)) + "Z" for i in range(codebook))
    tokenizer = _tokenizer(CHAMELEON_SPECIALS, extra_words=code_names, eos_token="</s>", sep_token="<reserved08706>",
                           image_token="<image>", boi_token="<racm3:break>", eoi_token="<eoss>")
    multipliers = [1, 1, 2, 2]  # three downsamplings: 64 px -> 8x8 codes
    side = resolution // 2 ** (len(multipliers) - 1)
    vq = dict(embed_dim=32, num_embeddings=codebook, latent_channels=32, resolution=resolution, base_channels=32,
              channel_multiplier=multipliers, num_res_blocks=1, attn_resolutions=[])
    config = ChameleonConfig(**_text_kwargs(tokenizer, hidden_size, num_layers, num_heads, num_kv_heads),
                             vq_config=vq, vocabulary_map=dict(tokenizer.get_vocab()))
    torch.manual_seed(seed)
    model = ChameleonForConditionalGeneration(config).eval()
    _finish(model, tokenizer, out)
    image_processor = ChameleonImageProcessor(size={"shortest_edge": resolution},
                                              crop_size={"height": resolution, "width": resolution})
    processor = ChameleonProcessor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=side * side)
    # ChameleonProcessor.__init__ takes no chat_template, so from_pretrained drops the processor's
    # copy; the tokenizer's copy survives the round trip.
    processor.chat_template = CHAMELEON_CHAT_TEMPLATE
    tokenizer.chat_template = CHAMELEON_CHAT_TEMPLATE
    processor.save_pretrained(out)
    return out


BUILDERS = {
    "qwen2_vl": build_tiny_qwen2_vl,
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "internvl": build_tiny_internvl,
    "chameleon": build_tiny_chameleon,
}


def build(family: str, out_dir: str | Path, builders: dict | None = None, **kwargs) -> Path:
    """Write the tiny checkpoint of ``family`` (a key of ``builders``, default ``BUILDERS``) into ``out_dir``."""
    builders = BUILDERS if builders is None else builders
    try:
        builder = builders[family]
    except KeyError:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(builders)}") from None
    return builder(out_dir, **kwargs)
