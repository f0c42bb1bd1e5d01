"""A short, curated list of hub checkpoints the families support, for loaders that offer them by name
(ComfyUI's Load VLM). Data only: what each one is and roughly what it needs, so a user can pick one that
fits their GPU (fp16 bytes; ``--quantize 4bit`` takes about a third)."""

from __future__ import annotations

from dataclasses import dataclass


def hub_folder(hub_id: str) -> str:
    """A hub model's folder name under ``models/LLM`` once downloaded (``owner--name``: a folder of its own,
    never merged into another)."""
    return hub_id.replace("/", "--")


@dataclass(frozen=True)
class KnownModel:
    hub_id: str
    note: str

    @property
    def folder(self) -> str:
        return hub_folder(self.hub_id)


KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel("llava-hf/llava-1.5-7b-hf", "LLaVA-1.5 7B, the paper's model (about 14 GB in fp16)"),
    KnownModel("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen2.5-VL 3B (about 7.5 GB in fp16)"),
    KnownModel("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen2.5-VL 7B (about 16 GB in fp16)"),
    KnownModel("OpenGVLab/InternVL3-2B-hf", "InternVL3 2B (about 4 GB in fp16)"),
    KnownModel("HuggingFaceTB/SmolVLM-Instruct", "SmolVLM 2B (about 4.5 GB in fp16)"),
    KnownModel("fancyfeast/llama-joycaption-beta-one-hf-llava",
               "JoyCaption Beta One, Llama-3.1-8B (about 16 GB in fp16; made for training captions)"),
)
