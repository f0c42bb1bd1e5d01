"""Train the testbed VLM: a real LLaVA (CLIP tower + projector + Llama decoder) on synthetic scenes.

Each training sequence is a LLaVA-1.5 chat about one scene: a caption turn and/or yes/no
question turns, with the loss on the assistant tokens only. Scenes are drawn fresh for every
step from a seeded stream (no epoch, no overfitting to a fixed set). Deterministic for a
given seed and thread count.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .scenes import SHORT_ANSWER_PROMPT, SceneOptions, generate_scene, vocabulary
from .tiny import make_llava

CAPTION_PROMPT = "Provide a one-sentence caption for the provided image."


@dataclass(frozen=True)
class TrainConfig:
    """Model size, data and optimisation of the testbed run (the values are the recipe)."""

    seed: int = 0
    steps: int = 2400
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 60
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    questions_per_scene: int = 4
    caption_prob: float = 0.5
    caption_last: int = 0  # 1: caption turn last (no answer copyable from earlier text); 0: shuffled
    # scenes: objects of 2-4 patches, a quarter of scenes with 1-2 patch objects, pair prior 0.9
    hard_fraction: float = 0.25
    partner_scale: float = 0.7
    # model: 96 px / 8 px patches -> 12x12 grid; decoder 8 layers x 128
    image_size: int = 96
    patch_size: int = 8
    num_layers: int = 8
    hidden_size: int = 128
    intermediate_size: int = 384
    num_heads: int = 4
    num_kv_heads: int = 2
    vision_layers: int = 2
    vision_hidden_size: int = 96
    log_every: int = 25
    threads: int = 2
    scene_options: dict = field(default_factory=dict)

    def scenes(self) -> SceneOptions:
        return SceneOptions(image_size=self.image_size, hard_fraction=self.hard_fraction,
                            partner_scale=self.partner_scale, **self.scene_options)


def conversation(scene, rng: np.random.Generator, cfg: TrainConfig) -> list[dict]:
    """A chat about ``scene``: balanced yes/no turns and (optionally) a caption turn.

    The bundled checkpoint was trained with all turns shuffled (``caption_last=0``); with
    ``caption_last=1`` the caption comes last so no answer can be copied from earlier text
    (tried once: it did not train better in the same budget, see the README).
    """
    questions = list(scene.questions())
    yes = [q for q in questions if q.answer == "yes"]
    no = [q for q in questions if q.answer == "no"]
    rng.shuffle(yes)
    rng.shuffle(no)
    half = cfg.questions_per_scene // 2
    picked = yes[:half] + no[: cfg.questions_per_scene - min(half, len(yes))]
    turns = [(f"{q.text} {SHORT_ANSWER_PROMPT}", q.answer) for q in picked]
    if cfg.caption_last:
        turns = [turns[k] for k in rng.permutation(len(turns))]
        if rng.random() < cfg.caption_prob:
            turns.append((CAPTION_PROMPT, scene.caption))
    else:
        if rng.random() < cfg.caption_prob:
            turns.append((CAPTION_PROMPT, scene.caption))
        turns = [turns[k] for k in rng.permutation(len(turns))]
    messages = []
    for i, (prompt, answer) in enumerate(turns):
        content = ([{"type": "image"}] if i == 0 else []) + [{"type": "text", "text": prompt}]
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def assistant_labels(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """Labels = the tokens after each "ASSISTANT :" up to and including "</s>"; -100 elsewhere."""
    assistant = tokenizer.convert_tokens_to_ids("ASSISTANT")
    colon = tokenizer.convert_tokens_to_ids(":")
    eos = tokenizer.eos_token_id
    labels = torch.full_like(input_ids, -100)
    for b, row in enumerate(input_ids.tolist()):
        inside = False
        for t in range(1, len(row)):
            if row[t - 1] == colon and t >= 2 and row[t - 2] == assistant:
                inside = True
            if inside:
                labels[b, t] = row[t]
                if row[t] == eos:
                    inside = False
    return labels


def make_batch(step: int, cfg: TrainConfig, processor) -> dict:
    rng = np.random.default_rng([cfg.seed, step, 1])
    options = cfg.scenes()
    scenes = [generate_scene(step * cfg.batch_size + i, cfg.seed, options) for i in range(cfg.batch_size)]
    texts = [processor.apply_chat_template(conversation(s, rng, cfg)) for s in scenes]
    batch = dict(processor(images=[s.image for s in scenes], text=texts, return_tensors="pt", padding=True))
    batch["labels"] = assistant_labels(batch["input_ids"], processor.tokenizer)
    batch["labels"][batch["attention_mask"] == 0] = -100
    return batch


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(cfg: TrainConfig, out_dir: Path, command: str = "") -> Path:
    """Train, then save the checkpoint, the processor and ``training_log.jsonl`` into ``out_dir``."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, processor = make_llava(
        words=vocabulary(), seed=cfg.seed, image_size=cfg.image_size, patch_size=cfg.patch_size,
        num_layers=cfg.num_layers, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads, vision_layers=cfg.vision_layers,
        vision_hidden_size=cfg.vision_hidden_size, vision_feature_layer=-1, initializer_range=0.02,
    )
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "training_log.jsonl"
    start, ema = time.time(), None
    with open(log_path, "w") as log, tqdm(range(cfg.steps), desc="train", unit="step") as bar:
        log.write(json.dumps({"event": "start", "command": command, "config": asdict(cfg),
                              "parameters": sum(p.numel() for p in model.parameters()),
                              "torch": torch.__version__, "python": platform.python_version()}) + "\n")
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            loss = model(**make_batch(step, cfg, processor)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            bar.set_postfix(loss=f"{ema:.3f}")
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                log.write(json.dumps({"step": step, "loss": round(loss.item(), 5), "loss_ema": round(ema, 5),
                                      "lr": lr_at(step, cfg), "elapsed_s": round(time.time() - start, 1)}) + "\n")
                log.flush()
    model.eval()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
