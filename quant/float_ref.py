"""Float reference forward pass, written directly in torch (no transformers import).

Two modes:

* ``"float"``: the plain decoder, numerically the same as HF transformers' eager implementation
  (RMSNorm in float32, HF's rotate_half RoPE, GQA with a causal mask, q/k/v biases for Qwen2, BitNet
  sub-norms). The tests hold it to HF's logits.
* ``"fakequant"``: the same graph with the integer golden model's quantization points applied in float
  (ternary weights with an absmean scale, int8 absmax activations per token, int8 Q/K/V, int8 embedding
  and head rows). Everything between those points stays float, so the gap between this mode and the
  golden model isolates fixed-point arithmetic error, and the gap to ``"float"`` isolates quantization.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .checkpoint import Checkpoint, layer_tensor_names
from .config import ModelConfig
from ..sim.numerics import pf
from .errors import TernError
from .ternarize import absmean_scale, int8_rows, ternary_rows

ACT_MAX = 127  # int8 activations are symmetric in [-127, 127]
_LINEARS = ("q", "k", "v", "o", "gate", "up", "down")


# -- quantizers (float simulations of the integer ones) ------------------------------------------
def ternarize(w: torch.Tensor, scale: str = "tensor") -> tuple[torch.Tensor, torch.Tensor]:
    """Absmean ternarization exactly as the image stores it (``quant.ternarize``): trits
    ``clamp(round(W/s), -1, 1)`` and the *stored* pf value of ``s`` (per tensor, or per output row for
    ``"channel"``), shaped to broadcast against W. A zero scale gives all-zero trits."""
    s = absmean_scale(w, scale)
    trits = torch.from_numpy(ternary_rows(w, s))
    s_val = torch.from_numpy(pf.from_float(s).to_float()).to(torch.float32)
    return trits, s_val.reshape(-1, 1)


def fake_ternary(w: torch.Tensor, scale: str = "tensor") -> torch.Tensor:
    """``trits * s``: the float weight the ternary hardware effectively multiplies by."""
    trits, s = ternarize(w, scale)
    return trits.to(w.dtype) * s.to(w.dtype)


def fake_int8_rows(w: torch.Tensor) -> torch.Tensor:
    """Rows as the image stores them (int8 codes times their per-row pf scale): embedding, int8 head."""
    q, s = int8_rows(w)
    return torch.from_numpy(q).to(torch.float64).mul_(torch.from_numpy(s.to_float())[:, None]).to(torch.float32)


def fake_int8(x: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 absmax fake-quantization over the last dim (one scale per row):
    ``round(x * 127 / max|x|) * max|x| / 127``; an all-zero row stays zero."""
    m = x.abs().amax(dim=-1, keepdim=True)
    safe = torch.where(m > 0, m, torch.ones_like(m))
    q = torch.round(x * ACT_MAX / safe) * safe / ACT_MAX
    return torch.where(m > 0, q, torch.zeros_like(q))


# -- model -----------------------------------------------------------------------------------------
@dataclass
class FloatOutput:
    logits: torch.Tensor  # [T, vocab]
    residuals: list[torch.Tensor]  # [layers + 1] x [T, hidden]: after the embedding, then after each layer


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """HF's RMSNorm: normalize in float32, cast back, then apply the gain."""
    x32 = x.to(torch.float32)
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return w * y.to(x.dtype)


def rope_tables(cfg: ModelConfig, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [T, head_dim] exactly as HF builds them (inv_freq in float32, frequencies duplicated)."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).to(torch.float32) / d))
    freqs = positions[:, None].to(torch.float32) * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [T, heads, head_dim]; pairs feature i with i + head_dim/2 (HF's rotate_half convention)."""
    return x * cos[:, None, :] + _rotate_half(x) * sin[:, None, :]


def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "silu":
        return F.silu(x)
    if name == "relu2":
        return torch.square(F.relu(x))
    raise TernError(f"unsupported activation {name!r}", "supported: silu, relu2")


class FloatModel:
    """The decoder of ``ckpt`` in float (``mode="float"``) or with fake quantization (``"fakequant"``).

    All weights are loaded (as float32, then cast to ``dtype``) at construction; ternary/int8
    fake-quantized copies replace them up front in fakequant mode, so :meth:`forward` only runs math.
    """

    def __init__(self, ckpt: Checkpoint, mode: str = "float", scale: str = "tensor",
                 dtype: torch.dtype = torch.float32):
        if mode not in ("float", "fakequant"):
            raise TernError(f"unknown mode {mode!r}", "use 'float' or 'fakequant'")
        if scale not in ("tensor", "channel"):
            raise TernError(f"unknown weight scale {scale!r}", "use 'tensor' or 'channel'")
        self.cfg = cfg = ckpt.config
        self.mode, self.scale, self.dtype = mode, scale, dtype
        fq = mode == "fakequant"

        def load(name: str) -> torch.Tensor:
            return ckpt.tensor(name)  # float32

        embed = load("model.embed_tokens.weight")
        head = embed if cfg.tied else load("lm_head.weight")
        # Both the lookup table and the head matrix are stored as int8 rows with a per-row scale.
        self.embed = (fake_int8_rows(embed) if fq else embed).to(dtype)
        self.head = (fake_int8_rows(head) if fq else head).to(dtype)
        self.final_norm = load("model.norm.weight").to(dtype)
        self.layers: list[dict[str, torch.Tensor]] = []
        for i in range(cfg.layers):
            layer: dict[str, torch.Tensor] = {}
            for short, hf in layer_tensor_names(cfg, i).items():
                t = load(hf)
                if fq and short in _LINEARS:
                    t = fake_ternary(t, scale)
                layer[short] = t.to(dtype)
            self.layers.append(layer)

    @classmethod
    def from_dir(cls, path, **kwargs) -> "FloatModel":
        return cls(Checkpoint.open(path), **kwargs)

    # Activation quantization points are identities in float mode.
    def _qa(self, x: torch.Tensor) -> torch.Tensor:
        return fake_int8(x) if self.mode == "fakequant" else x

    @staticmethod
    def _linear(xq: torch.Tensor, layer: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        """``xq`` is the already (fake-)quantized input; q/k/v and gate/up share one."""
        y = xq @ layer[name].T
        bias = layer.get(name + "_bias")
        return y if bias is None else y + bias

    @torch.no_grad()
    def forward(self, ids: Sequence[int]) -> FloatOutput:
        cfg = self.cfg
        ids_t = torch.as_tensor(list(ids), dtype=torch.long)
        if ids_t.ndim != 1 or ids_t.numel() == 0:
            raise TernError("forward needs a non-empty 1-D sequence of token ids", "pass a list of ints")
        if int(ids_t.min()) < 0 or int(ids_t.max()) >= cfg.vocab:
            raise TernError(f"token id out of range [0, {cfg.vocab})", "use ids from the model's tokenizer")
        T = ids_t.numel()
        cos, sin = rope_tables(cfg, torch.arange(T), self.dtype)
        causal = torch.ones(T, T, dtype=torch.bool).tril()

        x = self.embed[ids_t]
        residuals = [x.clone()]
        for layer in self.layers:
            x = x + self._attention(rms_norm(x, layer["attn_norm"], cfg.eps), layer, cos, sin, causal)
            x = x + self._mlp(rms_norm(x, layer["mlp_norm"], cfg.eps), layer)
            residuals.append(x.clone())
        h = rms_norm(x, self.final_norm, cfg.eps)
        logits = self._qa(h) @ self.head.T
        return FloatOutput(logits=logits, residuals=residuals)

    __call__ = forward

    def _attention(self, h: torch.Tensor, layer: dict[str, torch.Tensor], cos: torch.Tensor, sin: torch.Tensor,
                   causal: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        T = h.shape[0]
        h = self._qa(h)
        q = self._linear(h, layer, "q").view(T, cfg.heads, cfg.head_dim)
        k = self._linear(h, layer, "k").view(T, cfg.kv_heads, cfg.head_dim)
        v = self._linear(h, layer, "v").view(T, cfg.kv_heads, cfg.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # int8 Q per (token, head); the KV cache is int8 per (token, kv head): fake_int8 works on the
        # last dim (head_dim), so each [T, heads, head_dim] row gets its own scale.
        q, k, v = self._qa(q), self._qa(k), self._qa(v)
        # GQA: query head j reads KV head j // group (HF's repeat_kv order).
        k = k.repeat_interleave(cfg.group, dim=1)
        v = v.repeat_interleave(cfg.group, dim=1)
        scores = torch.einsum("thd,shd->hts", q, k) * cfg.head_dim ** -0.5
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.einsum("hts,shd->thd", probs, v).reshape(T, cfg.q_dim)
        if cfg.sub_norms:
            out = rms_norm(out, layer["attn_sub_norm"], cfg.eps)
        return self._linear(self._qa(out), layer, "o")

    def _mlp(self, h: torch.Tensor, layer: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.cfg
        h = self._qa(h)
        a = _act(cfg.act, self._linear(h, layer, "gate")) * self._linear(h, layer, "up")
        if cfg.sub_norms:
            a = rms_norm(a, layer["mlp_sub_norm"], cfg.eps)
        return self._linear(self._qa(a), layer, "down")
