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
from PIL import Image, ImageDraw
from tqdm import tqdm

from ..prompts import CAPTION_PROMPT, SHORT_ANSWER_PROMPT
from .scenes import CLASS_NAMES, RING_HOLE, SceneOptions, generate_scene, vocabulary
from .tiny import make_llava, save_llava


@dataclass(frozen=True)
class TrainConfig:
    """Model size, data and optimisation of the testbed run (the values are the recipe)."""

    seed: int = 0
    steps: int = 1400  # 27-31 min on 2 CPU cores
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 60
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    questions_per_scene: int = 6
    caption_prob: float = 0.25
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
    # auxiliary loss: each visual token must point the way of the word embedding of every
    # class its patch shows (cosine, BCE). It teaches the vision side to see every object in
    # the words the decoder already uses, so the decoder only has to learn where to look
    # (a first recipe without it stayed near chance, see docs/testbed.md). 0 turns it off.
    patch_loss_weight: float = 1.0
    patch_cover: float = 0.15  # a patch "shows" a class when it covers this share of the patch
    log_every: int = 25
    threads: int = 2
    scene_options: dict = field(default_factory=dict)

    def scenes(self) -> SceneOptions:
        return SceneOptions(image_size=self.image_size, hard_fraction=self.hard_fraction,
                            partner_scale=self.partner_scale, **self.scene_options)


def conversation(scene, rng: np.random.Generator, cfg: TrainConfig) -> list[dict]:
    """A chat about ``scene``: a lone caption turn (probability ``caption_prob``) or yes/no turns.

    Captions get chats of their own because mixing them with questions failed both ways: a
    caption before the questions lets the answers be copied from text instead of read from
    the image, and a caption always last never follows the image, so the model answered
    "yes"/"no" to a caption prompt. Yes/no turns are balanced between present and absent
    classes (half each, as far as the scene allows).
    """
    if rng.random() < cfg.caption_prob:
        turns = [(CAPTION_PROMPT, scene.caption)]
    else:
        questions = list(scene.questions())
        yes = [q for q in questions if q.answer == "yes"]
        no = [q for q in questions if q.answer == "no"]
        rng.shuffle(yes)
        rng.shuffle(no)
        half = cfg.questions_per_scene // 2
        picked = yes[:half] + no[: cfg.questions_per_scene - min(half, len(yes))]
        turns = [(f"{q.text} {SHORT_ANSWER_PROMPT}", q.answer) for q in picked]
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


def patch_classes(scene, patch_size: int, cover: float) -> np.ndarray:
    """``(patches, classes)`` 0/1 targets: which classes each ViT patch visibly shows.

    Rendered from the scene's exact polygons in draw order (later objects on top, ring holes
    cut out), so occlusion is respected.
    """
    size = scene.image.size[0]
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for obj in scene.objects:
        draw.polygon(obj.polygon(), fill=CLASS_NAMES.index(obj.name) + 1)
        if obj.shape == "ring":
            x, y, w, h = obj.bbox
            draw.ellipse((x + w * (1 - RING_HOLE) / 2, y + h * (1 - RING_HOLE) / 2,
                          x + w * (1 + RING_HOLE) / 2, y + h * (1 + RING_HOLE) / 2), fill=0)
    labels = np.asarray(mask)
    grid = size // patch_size
    tiles = labels[: grid * patch_size, : grid * patch_size].reshape(grid, patch_size, grid, patch_size)
    patches = tiles.transpose(0, 2, 1, 3).reshape(grid * grid, patch_size * patch_size)
    share = np.stack([(patches == c + 1).mean(axis=1) for c in range(len(CLASS_NAMES))], axis=1)
    return (share >= cover).astype(np.float32)


def make_batch(step: int, cfg: TrainConfig, processor) -> dict:
    rng = np.random.default_rng([cfg.seed, step, 1])
    options = cfg.scenes()
    scenes = [generate_scene(step * cfg.batch_size + i, cfg.seed, options) for i in range(cfg.batch_size)]
    texts = [processor.apply_chat_template(conversation(s, rng, cfg)) for s in scenes]
    batch = dict(processor(images=[s.image for s in scenes], text=texts, return_tensors="pt", padding=True))
    batch["labels"] = assistant_labels(batch["input_ids"], processor.tokenizer)
    batch["labels"][batch["attention_mask"] == 0] = -100
    if cfg.patch_loss_weight > 0:
        batch["patch_targets"] = torch.from_numpy(
            np.stack([patch_classes(s, cfg.patch_size, cfg.patch_cover) for s in scenes]))
    return batch


def yes_no_accuracy(logits: torch.Tensor, labels: torch.Tensor, yes_id: int, no_id: int) -> float:
    """Share of teacher-forced yes/no answers whose yes-vs-no logit is right (a grounding gauge)."""
    targets = labels[:, 1:]
    pred = logits[:, :-1]
    where = (targets == yes_id) | (targets == no_id)
    if not where.any():
        return float("nan")
    said_yes = pred[..., yes_id] > pred[..., no_id]
    return (said_yes[where] == (targets[where] == yes_id)).float().mean().item()


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
    class_ids = torch.tensor(processor.tokenizer.convert_tokens_to_ids(list(CLASS_NAMES)))
    probe_scale = torch.nn.Parameter(torch.tensor(10.0))  # the patch loss's only extra weights; not saved
    probe_bias = torch.nn.Parameter(torch.full((len(CLASS_NAMES),), -2.0))
    visual_tokens: list[torch.Tensor] = []
    capture = model.model.multi_modal_projector.register_forward_hook(
        lambda _m, _i, out: visual_tokens.append(out))
    params = list(model.parameters()) + ([probe_scale, probe_bias] if cfg.patch_loss_weight > 0 else [])
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    yes_id, no_id = processor.tokenizer.convert_tokens_to_ids(["yes", "no"])
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "training_log.jsonl"
    start = time.time()
    ema: float | None = None
    acc_ema: float | None = None
    with open(log_path, "w") as log, tqdm(range(cfg.steps), desc="train", unit="step") as bar:
        log.write(json.dumps({"event": "start", "command": command, "config": asdict(cfg),
                              "parameters": sum(p.numel() for p in model.parameters()),
                              "torch": torch.__version__, "python": platform.python_version()}) + "\n")
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            batch = make_batch(step, cfg, processor)
            patch_targets = batch.pop("patch_targets", None)
            visual_tokens.clear()
            out = model(**batch)
            loss = lm_loss = out.loss
            patch_loss = None
            if patch_targets is not None:
                tokens = torch.nn.functional.normalize(
                    visual_tokens[0].reshape(patch_targets.shape[0], -1, cfg.hidden_size), dim=-1)
                words = torch.nn.functional.normalize(model.get_input_embeddings().weight[class_ids], dim=-1)
                patch_logits = probe_scale * tokens @ words.T + probe_bias
                patch_loss = torch.nn.functional.binary_cross_entropy_with_logits(patch_logits, patch_targets)
                loss = lm_loss + cfg.patch_loss_weight * patch_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            acc = yes_no_accuracy(out.logits.detach(), batch["labels"], yes_id, no_id)
            ema = lm_loss.item() if ema is None else 0.98 * ema + 0.02 * lm_loss.item()
            if not math.isnan(acc):
                acc_ema = acc if acc_ema is None else 0.95 * acc_ema + 0.05 * acc
            # no yes/no question seen yet: no accuracy to show (formatting None raised a TypeError)
            bar.set_postfix(loss=f"{ema:.3f}", yes_no="–" if acc_ema is None else f"{acc_ema:.2f}")
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                record = {"step": step, "loss": round(lm_loss.item(), 5), "loss_ema": round(ema, 5),
                          "yes_no_acc_ema": None if acc_ema is None else round(acc_ema, 4), "lr": lr_at(step, cfg),
                          "elapsed_s": round(time.time() - start, 1)}
                if patch_loss is not None:
                    record["patch_loss"] = round(patch_loss.item(), 5)
                log.write(json.dumps(record) + "\n")
                log.flush()
    capture.remove()
    model.eval()
    return save_llava(model, processor, out_dir)
