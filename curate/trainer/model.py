"""The decoder of the paper (section 4.1) in one readable file.

RMSNorm, rotary position embeddings (rotate-half, as Llama), grouped-query attention,
a SwiGLU MLP, no biases and no dropout. Module and parameter names are Hugging Face
Llama's (`model.layers.0.self_attn.q_proj.weight`, ...), so a checkpoint's state dict is
a Llama checkpoint without renaming, and diagnostics can read it directly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from curate.trainer.config import TrainConfig


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).type_as(x)


def rotary_tables(head_dim: int, seq_length: int, base: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every position and frequency, each (seq_length, head_dim), in fp32."""
    inverse_frequencies = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    angles = torch.outer(torch.arange(seq_length, dtype=torch.int64).float(), inverse_frequencies)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each head's halves: x * cos + rotate_half(x) * sin, with x (batch, heads, seq, dim)."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (x * cos + rotated * sin).type_as(x)


class Attention(nn.Module):
    def __init__(self, config: TrainConfig):
        super().__init__()
        self.heads = config.num_attention_heads
        self.groups = config.num_query_groups
        self.head_dim = config.head_dim
        hidden = config.hidden_size
        self.q_proj = nn.Linear(hidden, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, self.groups * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, self.groups * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.groups, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.groups, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.groups != self.heads)
        return self.o_proj(y.transpose(1, 2).reshape(batch, seq, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, config: TrainConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.ffn_hidden_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.ffn_hidden_size, bias=False)
        self.down_proj = nn.Linear(config.ffn_hidden_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: TrainConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.norm_epsilon)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """Embedding, blocks and final norm: Llama's `model.*` parameters."""

    def __init__(self, config: TrainConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.norm_epsilon)


class GPT(nn.Module):
    """Token ids (batch, seq) to logits (batch, seq, vocab)."""

    def __init__(self, config: TrainConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("config.vocab_size must be resolved before building the model")
        self.config = config
        self.model = Decoder(config)
        self.lm_head = (
            nn.Linear(config.hidden_size, config.vocab_size, bias=False)
            if config.untie_embeddings_and_output_weights
            else None
        )
        cos, sin = rotary_tables(config.head_dim, config.seq_length, config.rotary_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        initialize(self, config)

    def output_weight(self) -> torch.Tensor:
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]
        x = self.model.embed_tokens(input_ids)
        for block in self.model.layers:
            x = block(x, cos, sin)
        return F.linear(self.model.norm(x), self.output_weight())


def initialize(model: GPT, config: TrainConfig) -> None:
    """Initialise every matrix as `config.init` says (see trainer/config.py); norms start at one."""
    output_std = config.init_method_std / math.sqrt(2.0 * config.num_layers)
    for name, parameter in model.named_parameters():
        if parameter.dim() < 2:
            continue
        if config.init == "xavier-uniform":
            nn.init.xavier_uniform_(parameter)
        elif name.endswith(("o_proj.weight", "down_proj.weight")):
            nn.init.normal_(parameter, mean=0.0, std=output_std)
        else:
            nn.init.normal_(parameter, mean=0.0, std=config.init_method_std)


def parameter_count(config: TrainConfig) -> int:
    """Closed-form parameter count: what `sum(p.numel())` must equal."""
    hidden, ffn, kv = config.hidden_size, config.ffn_hidden_size, config.num_query_groups * config.head_dim
    attention = 2 * hidden * config.num_attention_heads * config.head_dim + 2 * hidden * kv
    per_layer = attention + 3 * hidden * ffn + 2 * hidden
    embeddings = config.vocab_size * hidden * (2 if config.untie_embeddings_and_output_weights else 1)
    return config.num_layers * per_layer + embeddings + hidden


def megatron_flops_per_sample(config: TrainConfig) -> float:
    """Training FLOPs of one sequence (forward and backward), Megatron-LM's convention.

    12 = 3 (forward, weight-gradient, data-gradient GEMMs) x 2 (paired GEMMs) x 2 (multiply-add);
    attention scores are counted over the full, not the causal, sequence, as Megatron does.
    """
    hidden, seq = config.hidden_size, config.seq_length
    query_ratio = config.num_attention_heads * config.head_dim / hidden
    attention = (1 + config.num_query_groups / config.num_attention_heads + seq / hidden) * query_ratio
    mlp = config.ffn_hidden_size / hidden * 1.5
    logits = config.vocab_size / (2 * config.num_layers * hidden)
    return 12 * seq * config.num_layers * hidden * hidden * (attention + mlp + logits)
