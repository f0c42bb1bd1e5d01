"""A tiny VLM with its own attention code: softmax(q·kᵀ) written out here, never through
transformers' ``AttentionInterface``, so SCR's attention capture sees no call. Pixels are cut
into patches, projected and written over the ``<image>`` placeholders (LLaVA-style, no CLS).
No KV cache: every generation step re-runs the whole sequence."""

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_tiny_remote import TinyRemoteConfig


class SelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x, bias, probs_out=None):
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        probs = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5 + bias, dim=-1)
        if probs_out is not None:
            probs_out.append(probs)
        return self.out((probs @ v).transpose(1, 2).reshape(b, s, d))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size)
        self.attn = SelfAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size)
        self.mlp = nn.Sequential(nn.Linear(config.hidden_size, 2 * config.hidden_size), nn.GELU(),
                                 nn.Linear(2 * config.hidden_size, config.hidden_size))

    def forward(self, x, bias, probs_out=None):
        x = x + self.attn(self.norm1(x), bias, probs_out)
        return x + self.mlp(self.norm2(x))


class Decoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config  # as remote decoders (QWenModel, InternLM2Model) carry theirs
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.patches = nn.Linear(3 * config.patch_size ** 2, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size)


class TinyRemoteVLM(PreTrainedModel, GenerationMixin):
    config_class = TinyRemoteConfig
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        self.model = Decoder(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, output_attentions=False, **kwargs):
        x = self.model.embed(input_ids)
        if pixel_values is not None:
            p = self.config.patch_size
            patches = pixel_values.unfold(2, p, p).unfold(3, p, p)  # (n, 3, h, w, p, p)
            patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * p * p)
            mask = input_ids == self.config.image_token_id
            x = x.masked_scatter(mask[..., None], self.model.patches(patches.to(x.dtype)).to(x.dtype))
        s = input_ids.shape[1]
        allowed = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()[None, None]
        if attention_mask is not None:
            allowed = allowed & attention_mask[:, None, None, :].bool()
        bias = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(~allowed, -1e9)
        probs = [] if output_attentions else None
        for layer in self.model.layers:
            x = layer(x, bias, probs)
        logits = self.lm_head(self.model.norm(x))
        return CausalLMOutputWithPast(logits=logits, attentions=tuple(probs) if probs is not None else None)
