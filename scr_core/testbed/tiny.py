"""Tiny random-weight checkpoints built from the real transformers classes.

Why: no weights can be downloaded here, yet every code path (processor, chat template,
``from_pretrained``) must run exactly as it does for a user's local checkpoint. These
builders write a complete checkpoint folder with ``save_pretrained``; loading it back goes
through ``AutoModelForImageTextToText`` / ``AutoProcessor`` like any hub model.
Random weights show that the plumbing works, not that SCR helps.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "a an the is are there in on of and with next to image picture photo caption describe "
    "provide one sentence for provided answer question using single word or phrase yes no "
    "red green blue yellow black white circle square triangle star cat dog cup plate fork "
    "knife left right top bottom small large . , ? !"
).split()

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'video' %}<video>\n{% elif item['type'] == 'text' %}{{ item['text'] }}"
    "{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: {% for item in message['content'] %}{{ item['text'] }}{% endfor %}</s>"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_word_tokenizer(words: tuple[str, ...] | list[str] = WORDS, extra_special: tuple[str, ...] = ("<image>",)):
    """A word-level fast tokenizer made offline with the ``tokenizers`` library."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>", *extra_special]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=list(extra_special),
        padding_side="left",
    )
    return tokenizer


def make_llava(
    *,
    words: tuple[str, ...] | list[str] = WORDS,
    seed: int = 0,
    image_size: int = 112,
    patch_size: int = 14,
    num_layers: int = 18,
    hidden_size: int = 32,
    intermediate_size: int | None = None,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    vision_layers: int = 2,
    vision_hidden_size: int | None = None,
    vision_feature_layer: int = -2,
    initializer_range: float = 0.15,
    max_position_embeddings: int = 1024,
    vocab_size: int | None = None,
    dtype=None,
):
    """A freshly initialised ``LlavaForConditionalGeneration`` and its ``LlavaProcessor``.

    The processor is real: a word-level tokenizer, a CLIP image processor and LLaVA-1.5's
    chat template ("USER: <image>\n... ASSISTANT:"). ``vocab_size`` larger than the tokenizer's pads the
    embedding and LM head to a real model's size; ``dtype`` builds the weights in that dtype directly
    (a multi-gigabyte fp16 model never exists in fp32).
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = build_word_tokenizer(words)
    vision_hidden = vision_hidden_size or hidden_size
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_hidden * 2,
        num_hidden_layers=vision_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=max(vocab_size or 0, len(tokenizer)),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    if dtype is None:
        model = LlavaForConditionalGeneration(config)
    else:
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return model, processor


def build_tiny_llava(out_dir: str | Path, *, seed: int = 0, **sizes) -> Path:
    """Write a random tiny LLaVA checkpoint (8x8 visual grid, 18 decoder layers by default).

    18 layers keep the scaled paper ranges distinct (diagnostic 4..9, hooks 0..6).
    """
    import torch

    model, processor = make_llava(seed=seed, **sizes)
    # Random init gives tiny logits; a larger lm_head makes greedy text depend on the input.
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 1.0)
        # EOS scores 0, so a random caption runs to max_new_tokens: transformers versions draw different
        # random weights from one seed, and a draw that ends every caption at once would test nothing.
        model.lm_head.weight[processor.tokenizer.eos_token_id] = 0.0
    return save_llava(model.eval(), processor, Path(out_dir))


def save_llava(model, processor, out: Path) -> Path:
    """``save_pretrained`` of both, with the weights under the names every supported transformers loads
    (``hub_names``)."""
    model.save_pretrained(out)
    processor.save_pretrained(out)
    hub_names(out / "model.safetensors")
    return out


def hub_names(weights_file: str | Path) -> None:
    """Rename a LLaVA's CLIP-tower weights in place to the hub's ``vision_tower.vision_model.*``.

    Why: transformers 5.24 saves the tower without ``vision_model.`` (its CLIPVisionModel is flat and
    maps the hub names on load), and 5.0 cannot read those; the hub names load in both. The tensors
    are unchanged (``python -c "from scr_core.testbed.tiny import hub_names;
    hub_names('scr_core/testbed/checkpoint/model.safetensors')"`` converted the bundled checkpoint).
    """
    from safetensors.torch import load_file, save_file

    weights = load_file(weights_file)
    renamed = {_hub_name(key): value for key, value in weights.items()}
    if list(renamed) != list(weights):
        save_file(renamed, weights_file, metadata={"format": "pt"})


def _hub_name(key: str) -> str:
    head, tower, rest = key.partition("vision_tower.")
    if not tower or head not in ("", "model.") or rest.startswith("vision_model."):
        return key
    return f"{head}vision_tower.vision_model.{rest}"
