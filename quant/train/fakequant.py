"""The quantizer's own rules (quant/ternarize.py, quant/float_ref.py) in differentiable torch.

Every quantization point is a straight-through estimator: the forward value is exactly what the image
holds (bit for bit on CPU in float32), the backward pass treats the quantizer as the identity, so the
optimizer updates latent float weights. :func:`ste` writes ``x + (q(x) - x).detach()`` as
``(x - x.detach()) + q(x).detach()``: the same gradient, and a forward value of exactly ``q(x)``
(``x - x.detach()`` is exactly zero), which keeps the trained model and ``FloatModel(mode="fakequant")``
on the same float32 numbers instead of within one rounding of each other.
"""
from __future__ import annotations

import torch

from ..float_ref import fake_int8

INT8_MAX = 127
PF_MANTISSA_BITS = 16


def ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward ``q``, backward identity into ``x``."""
    return (x - x.detach()) + q.detach()


def pf_round(x: torch.Tensor) -> torch.Tensor:
    """The value of ``pf.from_float(x)`` (sim/numerics/pf.py) computed in torch float64: the nearest
    16-bit mantissa with round half up, carried into the exponent on overflow; zero stays zero."""
    x = x.to(torch.float64)
    fr, ex = torch.frexp(x)  # x = fr * 2**ex, fr in [0.5, 1)
    m = torch.floor(fr * (1 << PF_MANTISSA_BITS) + 0.5)  # in [2**15, 2**16]; 2**16 carries, same value
    # value = (m / 2**16) * 2**ex. torch.ldexp multiplies by 2**e, which over- or underflows at the ends
    # of the float64 range even when the value does not: apply the exponent in two halves.
    e = ex.to(torch.float64)
    half = torch.floor(e / 2)
    return torch.ldexp(torch.ldexp(m / (1 << PF_MANTISSA_BITS), half), e - half)


def absmean(w: torch.Tensor, scale: str) -> torch.Tensor:
    """float64 mean|W| per tensor (shape [1, 1]) or per output row ([rows, 1])."""
    a = w.detach().to(torch.float64).abs()
    if scale == "tensor":
        return a.mean().reshape(1, 1)
    if scale == "channel":
        return a.mean(dim=1, keepdim=True)
    raise ValueError(f"unknown scale mode {scale!r}")


def ternary_weight(w: torch.Tensor, scale: str = "tensor") -> torch.Tensor:
    """``trits * s`` as the image stores it: trits ``clamp(round(W / float32(s)), -1, 1)`` (round half
    to even), ``s`` the absmean rounded to its pf value; a zero scale gives zero trits. float32 result."""
    w32 = w.detach().to(torch.float32)
    s = absmean(w32, scale)
    s32 = s.to(torch.float32)
    safe = torch.where(s32 > 0, s32, torch.ones_like(s32))
    trits = torch.round(w32 / safe).clamp_(-1, 1)
    return trits * pf_round(s).to(torch.float32)


def int8_rows_weight(w: torch.Tensor) -> torch.Tensor:
    """Rows as the image stores them (embedding, int8 head): ``S_r = pf(max|row| / 127)``,
    ``q = clamp(round(row / S_r), +-127)`` in float64, value ``q * S_r`` as float32."""
    w64 = w.detach().to(torch.float32).to(torch.float64)
    amax = w.detach().to(torch.float32).abs().amax(dim=1).to(torch.float64)
    sv = pf_round(amax / INT8_MAX)
    safe = torch.where(sv > 0, sv, torch.ones_like(sv))
    q = torch.round(w64 / safe[:, None]).clamp_(-INT8_MAX, INT8_MAX)
    return (q * sv[:, None]).to(torch.float32)


def int8_act(x: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 absmax per row of the last dim (float_ref.fake_int8), computed in float32."""
    return fake_int8(x.detach().to(torch.float32))


# -- the differentiable forms ------------------------------------------------------------------
def fq_ternary(w: torch.Tensor, scale: str) -> torch.Tensor:
    return ste(w, ternary_weight(w, scale).to(w.dtype))


def fq_int8_rows(w: torch.Tensor) -> torch.Tensor:
    return ste(w, int8_rows_weight(w).to(w.dtype))


def fq_act(x: torch.Tensor) -> torch.Tensor:
    """int8 per token (last dim). Under autocast the quantized value comes back in float32."""
    q = int8_act(x)
    return ste(x.to(q.dtype), q)
