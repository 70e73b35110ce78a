"""Fixed-point vector operations of the fabric, bit-exact (docs/numerics.md).

All inputs and outputs are int64 numpy arrays holding the integer codes; the last axis is the
feature axis. Every function here is what one fabric unit computes.
"""
from __future__ import annotations

import numpy as np

from . import pf
from .pf import PF
from .spec import (ACT_MAX, FX_FRAC, FX_MAX, FX_MIN, INV127, NORM_MAG_BITS, QUANT_MAG_BITS,
                   QUANT_RECIP_FRAC, ROPE_FRAC, SIG_STEP_SHIFT)
from .tables import SIG_LO, sigmoid_table


def sat32(x: np.ndarray) -> np.ndarray:
    """Saturate to the int32 range (the residual and every FX value)."""
    return np.clip(x, FX_MIN, FX_MAX)


def requant(acc: np.ndarray, scale: PF) -> np.ndarray:
    """Matvec sums -> FX: ``sat32(round(acc * m * 2**(e + 16)))``; scale broadcasts against acc."""
    return sat32(pf.apply(acc, scale, FX_FRAC))


def quantize_absmax(z: np.ndarray, scale: PF) -> tuple[np.ndarray, PF]:
    """Per-vector absmax quantization to int8 ``[-127, 127]``.

    ``z`` [..., n] integers (|z| < 2**47) with value ``z * scale`` (scale broadcast over [...]).
    1. M = max|z|; u = bitlen(M) - 16; zz = z * 2**-u rounded (exact left shift when u < 0), so
       M' = max|zz| lies in [2**15, 2**16].
    2. R = round(127 * 2**24 / M') (one integer division per vector).
    3. q = clamp(round(zz * R * 2**-24), -127, 127).
    4. scale_q = scale * M' * (1/127) * 2**u (pf products, INV127 = 33026 * 2**-22).
    A zero vector gives q = 0 and scale 0.
    """
    z = np.asarray(z, dtype=np.int64)
    mag = np.abs(z).max(axis=-1)
    u = pf.bitlen(mag) - QUANT_MAG_BITS
    zz = pf.shift_round(z, u[..., None])
    mp = np.abs(zz).max(axis=-1)
    zero = mp == 0
    mp_safe = np.where(zero, 1, mp)
    recip = ((np.int64(ACT_MAX) << (QUANT_RECIP_FRAC + 1)) // mp_safe + 1) >> 1
    q = np.clip(pf.rshift_round(zz * recip[..., None], QUANT_RECIP_FRAC), -ACT_MAX, ACT_MAX)
    s = pf.shl(pf.mul(pf.mul(scale, pf.from_int(mp)), INV127), u)
    s = PF(np.where(zero, 0, s.m), np.where(zero, 0, s.e))
    return q.astype(np.int8), s


def rms_rsqrt(h: np.ndarray, eps: PF) -> tuple[np.ndarray, np.ndarray, PF]:
    """RMSNorm statistics of FX vectors ``h`` [..., n].

    t = max(0, bitlen(max|h|) - 23); hs = h * 2**-t rounded (|hs| <= 2**23); ss = sum(hs**2) < 2**61;
    ms = ss * (1/n) as pf, rescaled by 2**(2t - 32) to real units; r = rsqrt(ms + eps).
    Returns (hs, t, r) with ``h ~= hs * 2**t`` and ``r ~= 1/rms(h)``.
    """
    h = np.asarray(h, dtype=np.int64)
    n = h.shape[-1]
    t = np.maximum(pf.bitlen(np.abs(h).max(axis=-1)) - NORM_MAG_BITS, 0)
    hs = pf.rshift_round(h, t[..., None])
    ss = (hs * hs).sum(axis=-1)
    inv_n = pf.recip(pf.from_int(np.int64(n)))
    ms = pf.shl(pf.mul(pf.from_int(ss), inv_n), 2 * t - 2 * FX_FRAC)
    r = pf.rsqrt(pf.add(ms, eps))
    return hs, t, r


def norm_quant(h: np.ndarray, weight: np.ndarray, weight_scale: PF, eps: PF) -> tuple[np.ndarray, PF]:
    """RMSNorm with weight, then absmax int8: the input stage of every quantized linear.

    z = hs * g (|z| <= 2**38), value scale = g_scale * r * 2**(t - 16); then :func:`quantize_absmax`.
    The 1/rms factor only enters the scale: absmax quantization is scale-invariant.
    """
    hs, t, r = rms_rsqrt(h, eps)
    z = hs * np.asarray(weight, dtype=np.int64)
    scale = pf.shl(pf.mul(weight_scale, r), t - FX_FRAC)
    return quantize_absmax(z, scale)


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate FX vectors [..., heads, head_dim] (pairs i, i + d/2) by Q1.14 tables [..., d/2]."""
    x = np.asarray(x, dtype=np.int64)
    half = x.shape[-1] // 2
    c = np.asarray(cos, dtype=np.int64)[..., None, :]
    s = np.asarray(sin, dtype=np.int64)[..., None, :]
    x1, x2 = x[..., :half], x[..., half:]
    y1 = pf.rshift_round(x1 * c - x2 * s, ROPE_FRAC)
    y2 = pf.rshift_round(x2 * c + x1 * s, ROPE_FRAC)
    return sat32(np.concatenate([y1, y2], axis=-1))


def sigmoid_fx(x: np.ndarray) -> np.ndarray:
    """sigmoid of FX values as Q0.16: table on [-16, 16) at step 1/32, linear interpolation,
    0 below -16 and 65536 at or above +16."""
    x = np.asarray(x, dtype=np.int64)
    table = sigmoid_table()
    lo = SIG_LO << FX_FRAC
    off = np.clip(x - lo, 0, (-2 * SIG_LO << FX_FRAC) - 1)
    k = off >> SIG_STEP_SHIFT
    fr = off & ((1 << SIG_STEP_SHIFT) - 1)
    y = table[k] + pf.rshift_round((table[k + 1] - table[k]) * fr, SIG_STEP_SHIFT)
    y = np.where(x < lo, 0, y)
    return np.where(x >= -lo, 1 << 16, y)


def gated_act(gate: np.ndarray, up: np.ndarray, act: str) -> np.ndarray:
    """act(gate) * up on FX vectors: SiLU = gate * sigmoid(gate); ReLU² = max(gate, 0)**2."""
    gate = np.asarray(gate, dtype=np.int64)
    up = np.asarray(up, dtype=np.int64)
    if act == "silu":
        a = pf.rshift_round(gate * sigmoid_fx(gate), 16)
    elif act == "relu2":
        r = np.maximum(gate, 0)
        a = sat32(pf.rshift_round(r * r, FX_FRAC))
    else:
        raise ValueError(f"unknown activation {act!r}")
    return sat32(pf.rshift_round(a * up, FX_FRAC))
