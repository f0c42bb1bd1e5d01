"""Decoding baselines run by the same runner as SCR, as transformers logits processors.

* **VCD** — Visual Contrastive Decoding (Leng et al., CVPR 2024, arXiv 2311.16922):
  logits = (1+α)·l(v) − α·l(v′) over the tokens whose probability under the clean image is at
  least β·max (adaptive plausibility), v′ = the image after ``noise_step`` steps of forward
  diffusion noise. Defaults are the paper's: α = 1, β = 0.1, noise_step = 500 (of 1000).
  The clean and the noised prompt run as one batch of 2B through ``generate`` (so caches,
  positions and M-RoPE are handled by the model); the processor writes the contrasted scores
  into both halves so both branches follow the same tokens.
* **DoLa** — Decoding by Contrasting Layers (Chuang et al., ICLR 2024, arXiv 2309.03883):
  log p_final − log p_premature over the tokens with p_final ≥ 0.1·max (relative top), where
  the premature layer is, per sample and step, the candidate with the largest Jensen-Shannon
  divergence from the final distribution. Candidates = "low" bucket as transformers 4.x chose
  them: even layers of the first half (0, 2, …, L/2−2; layer i = the input of decoder layer i,
  0 = embeddings); premature logits = lm_head(final_norm(h_i)) as in the authors' code. DoLa's
  recommended repetition penalty 1.2 is applied by the runner for free-form text.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor


def diffusion_noise(pixels: torch.Tensor, noise_step: int = 500, seed: int = 0) -> torch.Tensor:
    """VCD's ``add_diffusion_noise``: q(x_t | x_0) of a 1000-step sigmoid beta schedule."""
    steps = 1000
    betas = torch.sigmoid(torch.linspace(-6, 6, steps, dtype=torch.float64)) * (0.5e-2 - 1e-5) + 1e-5
    alpha_bar = torch.cumprod(1 - betas, dim=0)[noise_step]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(pixels.shape, generator=generator, dtype=torch.float32).to(pixels.device, pixels.dtype)
    return (math.sqrt(alpha_bar) * pixels + math.sqrt(1 - alpha_bar) * noise).to(pixels.dtype)


def double_batch_with_noised_images(inputs: dict, noise_step: int = 500, seed: int = 0,
                                    pixel_key: str = "pixel_values") -> dict:
    """Processor outputs for B prompts -> 2B: the originals, then the same prompts with noised pixels
    (``pixel_key``: the input the family's vision tower reads, ``Adapter.pixel_key``)."""
    doubled = {}
    for key, value in inputs.items():
        if not torch.is_tensor(value):
            doubled[key] = value
        elif key == pixel_key:
            doubled[key] = torch.cat([value, diffusion_noise(value, noise_step, seed)])
        else:
            doubled[key] = torch.cat([value, value])
    return doubled


class VisualContrastiveProcessor(LogitsProcessor):
    """Combine clean (first half of the batch) and noised (second half) next-token scores."""

    def __init__(self, alpha: float = 1.0, beta: float = 0.1) -> None:
        self.alpha, self.beta = alpha, beta

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        clean, noised = scores.float().chunk(2)
        contrasted = (1 + self.alpha) * clean - self.alpha * noised
        cutoff = math.log(self.beta) + clean.max(dim=-1, keepdim=True).values
        contrasted = contrasted.masked_fill(clean < cutoff, float("-inf"))
        return torch.cat([contrasted, contrasted]).to(scores.dtype)


def dola_candidate_layers(depth: int) -> tuple[int, ...]:
    """transformers 4.x ``dola_layers="low"`` (untied embeddings): even layers below depth/2, below 20 past 40
    layers."""
    return tuple(range(0, depth // 2 if depth <= 40 else 20, 2))


class LayerContrastProcessor(LogitsProcessor):
    """DoLa scores from last-position states captured by ``capture_layer_inputs``."""

    def __init__(self, captured: dict[int, torch.Tensor], final_norm, lm_head, relative_top: float = 0.1) -> None:
        self.captured, self.final_norm, self.lm_head = captured, final_norm, lm_head
        self.relative_top = relative_top

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        layers = sorted(self.captured)
        with torch.no_grad():
            premature = torch.stack([self.lm_head(self.final_norm(self.captured[i])).float() for i in layers])
        final_log = F.log_softmax(scores.float(), dim=-1)  # (B, V)
        pre_log = F.log_softmax(premature, dim=-1)  # (L, B, V)
        mid = 0.5 * (final_log.exp()[None] + pre_log.exp())
        js = 0.5 * (F.kl_div(final_log[None].expand_as(pre_log), mid, reduction="none").mean(-1)
                    + F.kl_div(pre_log, mid, reduction="none").mean(-1))  # (L, B)
        chosen = js.argmax(dim=0)  # per sample
        base = pre_log[chosen, torch.arange(scores.shape[0])]
        threshold = final_log.max(dim=-1, keepdim=True).values + math.log(self.relative_top)
        keep = final_log >= threshold
        return torch.where(keep, final_log - base, torch.full_like(final_log, float("-inf"))).to(scores.dtype)


@contextmanager
def capture_layer_inputs(layers, indices):
    """Record the last-position input of ``layers[i]`` for each ``i`` at every forward."""
    captured: dict[int, torch.Tensor] = {}

    def make(i):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            captured[i] = hidden[:, -1, :].detach()

        return hook

    handles = [layers[i].register_forward_pre_hook(make(i), with_kwargs=True) for i in indices]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def generate_vcd(pipe, images, prompts, *, alpha: float = 1.0, beta: float = 0.1, noise_step: int = 500,
                 seed: int = 0, max_new_tokens: int = 64, **generate_kwargs):
    """VCD generation with the paper's defaults (greedy over the contrasted scores)."""
    from transformers import LogitsProcessorList

    return pipe.generate(
        images, prompts, scr=None, max_new_tokens=max_new_tokens,
        transform_inputs=lambda inputs: double_batch_with_noised_images(inputs, noise_step, seed,
                                                                        pipe.adapter.pixel_key),
        logits_processor=LogitsProcessorList([VisualContrastiveProcessor(alpha, beta)]), **generate_kwargs,
    )


def generate_dola(pipe, images, prompts, *, repetition_penalty: float = 1.2, relative_top: float = 0.1,
                  max_new_tokens: int = 64, **generate_kwargs):
    """DoLa generation ("low" candidate layers); the repetition penalty acts on the contrasted scores."""
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    layers = pipe.adapter.decoder_layers()
    with capture_layer_inputs(layers, dola_candidate_layers(len(layers))) as captured:
        processors: list = [LayerContrastProcessor(captured, pipe.adapter.final_norm(),
                                             pipe.model.get_output_embeddings(), relative_top)]
        if repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
        return pipe.generate(images, prompts, scr=None, max_new_tokens=max_new_tokens,
                             logits_processor=LogitsProcessorList(processors), **generate_kwargs)
