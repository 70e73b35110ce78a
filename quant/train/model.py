"""A batched decoder for training: Qwen2, Llama and BitNet, float or fake-quantized.

The module tree mirrors Hugging Face's, so ``state_dict()`` keys are the checkpoint's tensor names
(quant/checkpoint.py ``layer_tensor_names``, plus ``model.embed_tokens.weight``, ``model.norm.weight`` and
``lm_head.weight`` when untied). The math is quant/float_ref.py's, op for op (the same RMSNorm, RoPE
tables, rotate_half, causal softmax in float32, GQA head order), with a leading batch dim. With
``quant=True`` the fake-quantization points sit exactly where ``FloatModel(mode="fakequant")`` puts them:
ternary weights on the seven linears, int8 per token at every linear's input (one quantized input shared
by q/k/v and by gate/up), int8 Q/K/V per (token, head) after RoPE, int8 rows for the embedding and the head,
int8 per token before the head. With ``quant=False`` it is the float model (teachers, float baselines).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..float_ref import _act, rms_norm, rope_tables
from .fakequant import fq_act, fq_int8_rows, fq_ternary

INIT_STD = 0.02


class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


@dataclass
class QuantSwitch:
    """Shared by the model and its linears: fake-quantize or not, and the weight scale granularity."""

    quant: bool = True
    scale: str = "tensor"  # "tensor" | "channel"


class Table(nn.Module):
    """A [vocab, hidden] matrix (embedding, untied head) under the HF name ``<module>.weight``."""

    def __init__(self, rows: int, cols: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(rows, cols))


class Linear(nn.Module):
    """A linear layer whose weight is ternarized on the fly when the model is quantized. Its input
    arrives already quantized (q/k/v and gate/up share one quantized input)."""

    def __init__(self, out_f: int, in_f: int, bias: bool, qs: QuantSwitch):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_f, in_f))
        self.bias = nn.Parameter(torch.zeros(out_f)) if bias else None
        self.qs = qs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = fq_ternary(self.weight, self.qs.scale) if self.qs.quant else self.weight
        return F.linear(x, w, self.bias)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, qs: QuantSwitch):
        super().__init__()
        self.q_proj = Linear(cfg.q_dim, cfg.hidden, cfg.qkv_bias, qs)
        self.k_proj = Linear(cfg.kv_dim, cfg.hidden, cfg.qkv_bias, qs)
        self.v_proj = Linear(cfg.kv_dim, cfg.hidden, cfg.qkv_bias, qs)
        self.o_proj = Linear(cfg.hidden, cfg.q_dim, False, qs)
        if cfg.sub_norms:
            self.attn_sub_norm = RMSNorm(cfg.q_dim, cfg.eps)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, qs: QuantSwitch):
        super().__init__()
        self.gate_proj = Linear(cfg.ffn, cfg.hidden, False, qs)
        self.up_proj = Linear(cfg.ffn, cfg.hidden, False, qs)
        self.down_proj = Linear(cfg.hidden, cfg.ffn, False, qs)
        if cfg.sub_norms:
            self.ffn_sub_norm = RMSNorm(cfg.ffn, cfg.eps)


class Layer(nn.Module):
    def __init__(self, cfg: ModelConfig, qs: QuantSwitch):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden, cfg.eps)
        self.self_attn = Attention(cfg, qs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden, cfg.eps)
        self.mlp = MLP(cfg, qs)


class Body(nn.Module):
    def __init__(self, cfg: ModelConfig, qs: QuantSwitch):
        super().__init__()
        self.embed_tokens = Table(cfg.vocab, cfg.hidden)
        self.layers = nn.ModuleList(Layer(cfg, qs) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.eps)


class Decoder(nn.Module):
    """``Decoder(cfg, quant=True, scale="tensor")``; ``forward(ids [B, T]) -> logits [B, T, vocab]``
    (float32). ``return_hidden=True`` also returns the residual stream before the final norm.

    In eval mode the forward is float_ref's op for op (FloatModel's logits exactly, on CPU in float32);
    in training mode attention runs torch's fused causal kernel (the same function up to float rounding,
    3-4x faster on CPU): see ``fused_attention``."""

    def __init__(self, cfg: ModelConfig, quant: bool = True, scale: str = "tensor"):
        super().__init__()
        if scale not in ("tensor", "channel"):
            raise ValueError(f"unknown scale mode {scale!r}")
        self.cfg = cfg
        # "train": torch's fused attention in training mode, float_ref's exact order in eval mode;
        # "always": fused in both (a teacher, which only needs speed); "never": exact in both
        self.fused_attention = "train"
        self.qs = QuantSwitch(quant, scale)
        self.model = Body(cfg, self.qs)
        if not cfg.tied:
            self.lm_head = Table(cfg.vocab, cfg.hidden)
        self._rope: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.reset_parameters()

    @property
    def quant(self) -> bool:
        return self.qs.quant

    @quant.setter
    def quant(self, on: bool) -> None:
        self.qs.quant = on

    @property
    def scale(self) -> str:
        return self.qs.scale

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None) -> None:
        """normal(0, 0.02) weights and embeddings, norms 1, biases 0."""
        g = None if seed is None else torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * INIT_STD)

    def _rope_for(self, T: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (T, device, dtype)
        if key not in self._rope:
            cos, sin = rope_tables(self.cfg, torch.arange(T), dtype)
            self._rope = {key: (cos.to(device), sin.to(device))}  # one length at a time
        return self._rope[key]

    def _qa(self, x: torch.Tensor) -> torch.Tensor:
        return fq_act(x) if self.quant else x

    def forward(self, ids: torch.Tensor, return_hidden: bool = False):
        cfg = self.cfg
        B, T = ids.shape
        embed = self.model.embed_tokens.weight
        table = fq_int8_rows(embed) if self.quant else embed
        if cfg.tied:
            head = table
        else:
            head = fq_int8_rows(self.lm_head.weight) if self.quant else self.lm_head.weight
        x = F.embedding(ids, table)
        cos, sin = self._rope_for(T, x.device, x.dtype)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        for layer in self.model.layers:
            x = x + self._attention(layer.self_attn, layer.input_layernorm(x), cos, sin, causal)
            x = x + self._mlp(layer.mlp, layer.post_attention_layernorm(x))
        h = self.model.norm(x)
        logits = F.linear(self._qa(h), head).float()
        return (logits, x) if return_hidden else logits

    def _attention(self, a: Attention, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   causal: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        B, T, _ = h.shape
        h = self._qa(h)
        q = a.q_proj(h).view(B, T, cfg.heads, cfg.head_dim)
        k = a.k_proj(h).view(B, T, cfg.kv_heads, cfg.head_dim)
        v = a.v_proj(h).view(B, T, cfg.kv_heads, cfg.head_dim)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        q, k, v = self._qa(q), self._qa(k), self._qa(v)  # per (token, head): the last dim is head_dim
        if self.fused_attention == "always" or (self.training and self.fused_attention == "train"):
            # torch's fused causal attention: the same function, 3-4x faster on CPU, float rounding differs
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 is_causal=True, enable_gqa=cfg.group > 1)
            out = out.transpose(1, 2).reshape(B, T, cfg.q_dim)
        else:  # float_ref's op order: eval mode computes FloatModel's numbers exactly
            k = k.repeat_interleave(cfg.group, dim=2)
            v = v.repeat_interleave(cfg.group, dim=2)
            scores = torch.einsum("bthd,bshd->bhts", q, k) * cfg.head_dim ** -0.5
            scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            out = torch.einsum("bhts,bshd->bthd", probs, v).reshape(B, T, cfg.q_dim)
        if cfg.sub_norms:
            out = a.attn_sub_norm(out)
        return a.o_proj(self._qa(out))

    def _mlp(self, m: MLP, h: torch.Tensor) -> torch.Tensor:
        h = self._qa(h)
        x = _act(self.cfg.act, m.gate_proj(h)) * m.up_proj(h)
        if self.cfg.sub_norms:
            x = m.ffn_sub_norm(x)
        return m.down_proj(self._qa(x))


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, T, heads, head_dim]; float_ref.apply_rope with a batch dim."""
    h = x.shape[-1] // 2
    rot = torch.cat((-x[..., h:], x[..., :h]), dim=-1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def count_parameters(cfg: ModelConfig) -> int:
    """Parameters of a model with ``cfg`` (the tied embedding counted once)."""
    from ..checkpoint import expected_shapes

    n = 0
    for shape in expected_shapes(cfg).values():
        k = 1
        for d in shape:
            k *= d
        n += k
    return n
