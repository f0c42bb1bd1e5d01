"""Tiny random checkpoints of the newer caption families, built from the real transformers classes.

Same pattern as ``tiny_families.py``: the family's real config, model, image-processor and
processor classes, a word-level tokenizer made offline, ``save_pretrained`` into a folder
that loads back through ``AutoModelForImageTextToText`` / ``AutoProcessor`` like a user's
checkpoint. 18 decoder layers; random weights (plumbing, not quality).

    python -c "from scr_core.testbed.tiny_modern import build; build('llava_siglip', 'tiny-joycaption')"
"""

from __future__ import annotations

from pathlib import Path

from .tiny import LLAVA_CHAT_TEMPLATE, WORDS, build_word_tokenizer
from .tiny_families import _finish, _text_kwargs, _tokenizer


def _llama_text(tokenizer, hidden_size: int = 32, num_layers: int = 18) -> dict:
    return dict(_text_kwargs(tokenizer, hidden_size, num_layers, 4, 2), model_type="llama")


def build_tiny_llava_siglip(out_dir: str | Path, *, seed: int = 0, tower: str = "siglip", strategy: str = "full",
                            image_size: int = 112, patch_size: int = 14) -> Path:
    """A LLaVA with a SigLIP tower (JoyCaption-style: no CLS, ``vision_feature_select_strategy="full"``).

    112 px / 14 px -> an 8x8 grid (27x27 for the real 384 px SigLIP-so400m). ``tower="clip"``
    with ``strategy="full"`` keeps CLIP's CLS token in front of the grid.
    """
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, SiglipImageProcessor, SiglipVisionConfig)

    out = Path(out_dir)
    tokenizer = build_word_tokenizer(WORDS)
    vision_kwargs = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         image_size=image_size, patch_size=patch_size)
    if tower == "siglip":
        vision = SiglipVisionConfig(**vision_kwargs)
        image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
        extra = 0
    else:
        vision = CLIPVisionConfig(projection_dim=32, **vision_kwargs)
        image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                             crop_size={"height": image_size, "width": image_size})
        extra = 1
    config = LlavaConfig(vision_config=vision, text_config=_llama_text(tokenizer),
                         image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                         vision_feature_select_strategy=strategy, projector_hidden_act="gelu")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    _finish(model, tokenizer, out)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                               vision_feature_select_strategy=strategy, num_additional_image_tokens=extra,
                               chat_template=LLAVA_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    return out




def pinpoints(tile: int) -> list[list[int]]:
    """(height, width) canvases of 1x2, 2x1 and 2x2 tiles (the real models: up to 6x6 tiles of 336/384 px)."""
    return [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile]]


def build_tiny_llava_next(out_dir: str | Path, *, seed: int = 0, tile: int = 64, patch_size: int = 8) -> Path:
    """Random ``LlavaNextForConditionalGeneration`` (CLIP tower, "default" strategy, Llama decoder).

    A 64 px tile of 8 px patches is an 8x8 grid (24x24 for the real 336 px CLIP-L/14).
    """
    import torch
    from transformers import (CLIPVisionConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessor, LlavaNextProcessor)

    out = Path(out_dir)
    tokenizer = build_word_tokenizer(WORDS)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=tile, patch_size=patch_size, projection_dim=32)
    config = LlavaNextConfig(vision_config=vision, text_config=_llama_text(tokenizer),
                             image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                             vision_feature_select_strategy="default", image_grid_pinpoints=pinpoints(tile))
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    _finish(model, tokenizer, out)
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile},
                                              image_grid_pinpoints=pinpoints(tile))
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=LLAVA_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    return out


def build_tiny_llava_onevision(out_dir: str | Path, *, seed: int = 0, tile: int = 64, patch_size: int = 8,
                               max_tiles: int = 2) -> Path:
    """Random ``LlavaOnevisionForConditionalGeneration`` (SigLIP tower, "full" strategy, Qwen2 decoder).

    A 64 px tile is an 8x8 grid (27x27 for the real 384 px SigLIP); ``anyres_max_2`` (the real
    models: ``anyres_max_9``) makes a 2x2-tile image's 16x16 high-res grid shrink to 11x11.
    """
    import torch
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor,
                              SiglipVisionConfig)

    out = Path(out_dir)
    tokenizer = build_word_tokenizer(WORDS, extra_special=("<image>", "<video>"))
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=tile, patch_size=patch_size)
    text = dict(_text_kwargs(tokenizer, 32, 18, 4, 2), model_type="qwen2", tie_word_embeddings=False)
    aspect = f"anyres_max_{max_tiles}"
    config = LlavaOnevisionConfig(vision_config=vision, text_config=text,
                                  image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                                  video_token_id=tokenizer.convert_tokens_to_ids("<video>"), vision_feature_layer=-1,
                                  vision_feature_select_strategy="full", image_grid_pinpoints=pinpoints(tile),
                                  vision_aspect_ratio=aspect, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    _finish(model, tokenizer, out)
    image_processor = LlavaOnevisionImageProcessor(size={"height": tile, "width": tile},
                                                   image_grid_pinpoints=pinpoints(tile))
    video_processor = LlavaOnevisionVideoProcessor(size={"height": tile, "width": tile})
    processor = LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        video_processor=video_processor, num_image_tokens=(tile // patch_size) ** 2,
                                        vision_feature_select_strategy="full", vision_aspect_ratio=aspect,
                                        chat_template=LLAVA_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    return out


GEMMA3_SPECIALS = ("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>")

# Gemma 3's format (system turn left out): each image is "<start_of_image>", which the processor
# expands to "\n\n<start_of_image>" + mm_tokens_per_image soft tokens + "<end_of_image>\n\n".
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' "
    "else message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def build_tiny_gemma3(out_dir: str | Path, *, seed: int = 0, image_size: int = 128, patch_size: int = 8,
                      tokens_per_image: int = 64) -> Path:
    """Random ``Gemma3ForConditionalGeneration`` (SigLIP tower, pooled soft tokens, Gemma 3 decoder).

    128 px of 8 px patches = 16x16 patches, average-pooled 2x2 to 64 soft tokens (8x8; the real
    models: 896 / 14 = 64x64 patches pooled 4x4 to 16x16 = 256). Words of the pan-and-scan
    sentence are in the vocabulary.
    """
    import torch
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor,
                              SiglipVisionConfig)

    out = Path(out_dir)
    words = tuple("Here here original crops to help you see better model".split())
    tokenizer = _tokenizer(GEMMA3_SPECIALS, extra_words=words, eos_token="<end_of_turn>",
                           boi_token="<start_of_image>", eoi_token="<end_of_image>", image_token="<image_soft_token>")
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in GEMMA3_SPECIALS}
    text = dict(_text_kwargs(tokenizer, 32, 18, 4, 2), head_dim=8, query_pre_attn_scalar=8, sliding_window=64)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=image_size, patch_size=patch_size)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=tokens_per_image,
                          boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                          image_token_index=ids["<image_soft_token>"])
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    _finish(model, tokenizer, out)
    image_processor = Gemma3ImageProcessor(size={"height": image_size, "width": image_size},
                                           pan_and_scan_min_crop_size=32, pan_and_scan_max_num_crops=4,
                                           pan_and_scan_min_ratio_to_activate=1.2)
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                image_seq_length=tokens_per_image, chat_template=GEMMA3_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    return out


def build_tiny_qwen3_vl(out_dir: str | Path, *, seed: int = 0, patch_size: int = 4, min_pixels: int = 32 * 32,
                        max_pixels: int = 128 * 128, moe: bool = False) -> Path:
    """Random ``Qwen3VLForConditionalGeneration`` with DeepStack (features of vision blocks 0 and 1 added
    after decoder layers 0 and 1).

    A merged token covers 2·patch_size = 8 px here (32 px for the real 16 px patches), so a
    64x64 image is an 8x8 grid.
    """
    import torch
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    if moe:  # Qwen3-VL-MoE (e.g. 30B-A3B): the same layout and DeepStack, sparse MLPs
        from transformers import Qwen3VLMoeConfig as Config
        from transformers import Qwen3VLMoeForConditionalGeneration as Model
    else:
        from transformers import Qwen3VLConfig as Config
        from transformers import Qwen3VLForConditionalGeneration as Model

    from .tiny_families import QWEN_CHAT_TEMPLATE, QWEN_SPECIALS

    out = Path(out_dir)
    tokenizer = _tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>")
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIALS}
    text = dict(_text_kwargs(tokenizer, 48, 18, 4, 2), head_dim=12,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 2, 2],
                                 "mrope_interleaved": True})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=patch_size,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=48, num_position_embeddings=64,
                  deepstack_visual_indexes=[0, 1])
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, tie_word_embeddings=False)
    config = Config(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Model(config).eval()
    _finish(model, tokenizer, out)
    sizes = dict(patch_size=patch_size, merge_size=2, temporal_patch_size=2)
    image_processor = Qwen2VLImageProcessor(**sizes, min_pixels=min_pixels, max_pixels=max_pixels)
    # a clip's pixel bounds are over all its frames (Qwen3-VL's video rule): room for 8 frames at the image's most
    video_processor = Qwen3VLVideoProcessor(**sizes, size={"shortest_edge": min_pixels, "longest_edge": 8 * max_pixels})
    processor = Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                                 chat_template=QWEN_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    return out


IDEFICS3_SPECIALS = ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>",
                     *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)))

# Idefics3's format: "User:<image>prompt<end_of_utterance>\nAssistant:"; the processor expands <image>.
IDEFICS3_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>"
    "{% elif item['type'] == 'text' %} {{ item['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def build_tiny_idefics3(out_dir: str | Path, *, seed: int = 0, tile: int = 64, patch_size: int = 4,
                        longest_edge: int = 128, smolvlm: bool = False) -> Path:
    """Random ``Idefics3ForConditionalGeneration`` (SigLIP-style tower, pixel shuffle by 2, Llama decoder).

    A 64 px tile of 4 px patches is 16x16 patches, shuffled to an 8x8 grid (Idefics3-8B: 364 px,
    14 px patches: 26x26 -> 13x13); images are resized to at most 128 px and cut into 64 px tiles.
    """
    import torch

    if smolvlm:  # same layout; SmolVLMProcessor needs the num2words package
        from transformers import SmolVLMConfig as Config
        from transformers import SmolVLMForConditionalGeneration as Model
        from transformers import SmolVLMImageProcessor as ImageProcessor
        from transformers import SmolVLMProcessor as Processor
    else:
        from transformers import Idefics3Config as Config
        from transformers import Idefics3ForConditionalGeneration as Model
        from transformers import Idefics3ImageProcessor as ImageProcessor
        from transformers import Idefics3Processor as Processor

    out = Path(out_dir)
    tokenizer = _tokenizer(IDEFICS3_SPECIALS, extra_words=("User", "Assistant"), eos_token="<end_of_utterance>")
    text = dict(_text_kwargs(tokenizer, 32, 18, 4, 2), model_type="llama")
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=tile, patch_size=patch_size)
    config = Config(text_config=text, vision_config=vision, scale_factor=2,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Model(config).eval()
    _finish(model, tokenizer, out)
    image_processor = ImageProcessor(size={"longest_edge": longest_edge}, max_image_size={"longest_edge": tile},
                                             do_image_splitting=True)
    side = tile // patch_size // 2
    kwargs = dict(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=side * side,
                  chat_template=IDEFICS3_CHAT_TEMPLATE)
    if smolvlm:
        from transformers import SmolVLMVideoProcessor

        kwargs["video_processor"] = SmolVLMVideoProcessor()
    processor = Processor(**kwargs)
    processor.save_pretrained(out)
    return out


def build_tiny_remote_code(out_dir: str | Path, *, seed: int = 0, image_size: int = 112, patch_size: int = 14) -> Path:
    """A checkpoint that ships its own modeling code (``remote_code/``; loaded with
    ``trust_remote_code=True`` from the folder, nothing from the hub) and whose attention does not
    go through transformers' registry. The processor is a real ``LlavaProcessor`` (64 ``<image>``
    tokens, an 8x8 grid of 14 px patches); the layout goes to SCR through the generic adapter.
    """
    import shutil

    import torch
    from transformers import CLIPImageProcessor, LlavaProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(__file__).with_name("remote_code")
    for name in ("configuration_tiny_remote.py", "modeling_tiny_remote.py"):
        shutil.copy(source / name, out / name)
    import importlib.util
    import sys

    package = "scr_tiny_remote_build"
    for name in ("configuration_tiny_remote", "modeling_tiny_remote"):  # the files as one throwaway package
        spec = importlib.util.spec_from_file_location(f"{package}.{name}", source / f"{name}.py")
        assert spec is not None and spec.loader is not None  # a .py file
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(package, type(sys)(package)).__path__ = [str(source)]
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    config_cls = sys.modules[f"{package}.configuration_tiny_remote"].TinyRemoteConfig
    model_cls = sys.modules[f"{package}.modeling_tiny_remote"].TinyRemoteVLM
    tokenizer = build_word_tokenizer(WORDS)
    config = config_cls(vocab_size=len(tokenizer), image_size=image_size, patch_size=patch_size,
                        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id, initializer_range=0.15)
    config.auto_map = {"AutoConfig": "configuration_tiny_remote.TinyRemoteConfig",
                       "AutoModelForImageTextToText": "modeling_tiny_remote.TinyRemoteVLM"}
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    _finish(model, tokenizer, out)
    model.generation_config.use_cache = False  # the model keeps no KV cache
    model.generation_config.save_pretrained(out)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                               vision_feature_select_strategy="full", num_additional_image_tokens=0,
                               chat_template=LLAVA_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    for name in ("configuration_tiny_remote.py", "modeling_tiny_remote.py"):  # save_pretrained may not copy them
        shutil.copy(source / name, out / name)
    return out


BUILDERS = {
    "llava_siglip": build_tiny_llava_siglip,
    "llava_next": build_tiny_llava_next,
    "llava_onevision": build_tiny_llava_onevision,
    "gemma3": build_tiny_gemma3,
    "qwen3_vl": build_tiny_qwen3_vl,
    # seed 1: with seed 0 the random MoE's greedy text ends (EOS) after one token, too short for the CLI test
    "qwen3_vl_moe": lambda out_dir, **kwargs: build_tiny_qwen3_vl(out_dir, **{"moe": True, "seed": 1, **kwargs}),
    "idefics3": build_tiny_idefics3,
    "remote_code": build_tiny_remote_code,
    "smolvlm": lambda out_dir, **kwargs: build_tiny_idefics3(out_dir, smolvlm=True, **kwargs),
}


def build(family: str, out_dir: str | Path, **kwargs) -> Path:
    """Write the tiny checkpoint of ``family`` (a key of ``BUILDERS``) into ``out_dir``."""
    from .tiny_families import build as build_from

    return build_from(family, out_dir, BUILDERS, **kwargs)
