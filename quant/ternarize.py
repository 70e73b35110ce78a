"""Float weights -> the integer forms the fabric consumes.

* ternary linears (BitNet b1.58 absmean): ``s = mean|W|`` per tensor or per output row,
  ``T = clamp(round(W / s), -1, 1)``, scale stored as a pf;
* int8 rows (embedding, exact head): per-row pf ``S_r = pf(max|row| / 127)``, ``q = round(row / S_r)``
  divided by the pf's *value*, so ``S_r * q`` is what the device reconstructs;
* norm weights: int16 with one pf per tensor; biases: int32 fixed point with 16 fraction bits.

Float math runs in torch (fast, multi-threaded); results come back as numpy arrays for packing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..sim.numerics import pf
from ..sim.numerics.pf import PF
from .errors import TernError

SCALE_MODES = ("tensor", "channel")
INT8_MAX = 127
INT16_MAX = 32767
BIAS_FRAC = 16


def abs_sum(w: torch.Tensor) -> float:
    """sum|W| accumulated in float64 (numpy's pairwise sum: 3-4x faster than torch's float64 reduction)."""
    return float(np.abs(w.float().numpy()).sum(dtype=np.float64))


def checked_abs_sum(name: str, w: torch.Tensor) -> float:
    """sum|W|, raising when ``w`` holds NaN or Inf. A float64 sum of float32 values cannot overflow,
    so it is finite exactly when every element is: one pass serves both the check and the absmean."""
    total = abs_sum(w)
    if not math.isfinite(total):
        raise TernError(f"tensor '{name}' contains NaN or Inf values",
                        "the checkpoint is corrupt or from a diverged run; use a healthy checkpoint")
    return total


def check_finite(name: str, w: torch.Tensor) -> None:
    checked_abs_sum(name, w)


@dataclass
class TernStats:
    """Reconstruction error of a ternarized matrix, accumulated over row chunks."""

    err_sq: float = 0.0  # ||W - S*T||_F^2 with S the stored pf value
    norm_sq: float = 0.0  # ||W||_F^2
    zeros: int = 0
    count: int = 0

    def add(self, w: torch.Tensor, t: torch.Tensor, s_val: torch.Tensor) -> None:
        # float32 norms: plenty for a statistic, and ~10x faster than float64 reductions
        self.err_sq += float(torch.linalg.vector_norm(w - s_val * t)) ** 2
        self.norm_sq += float(torch.linalg.vector_norm(w)) ** 2
        self.zeros += t.numel() - int(torch.count_nonzero(t))
        self.count += t.numel()

    @property
    def rel_err(self) -> float:
        return (self.err_sq / self.norm_sq) ** 0.5 if self.norm_sq > 0 else 0.0

    @property
    def zero_frac(self) -> float:
        return self.zeros / self.count if self.count else 0.0

    def to_dict(self) -> dict:
        return {"rel_err": self.rel_err, "zero_frac": self.zero_frac}


def absmean_scale(w: torch.Tensor, mode: str, total: float | None = None) -> np.ndarray:
    """float64 absmean: shape [1] per tensor, [rows] per channel. ``total`` is sum|W| if known."""
    if mode == "tensor":
        return np.array([(abs_sum(w) if total is None else total) / max(w.numel(), 1)])
    if mode == "channel":
        return np.abs(w.float().numpy()).mean(axis=1, dtype=np.float64)
    raise TernError(f"unknown scale mode {mode!r}", f"use one of {', '.join(SCALE_MODES)}")


def ternary_rows(w: torch.Tensor, s: np.ndarray, stats: TernStats | None = None) -> np.ndarray:
    """``clamp(round(W / s), -1, 1)`` as int8 numpy, ``s`` float64 of shape [1] or [rows].

    The division runs in float32 against ``float32(s)`` (documented so tests can reproduce it bit for
    bit); rows with ``s == 0`` are all zero and become trit 0."""
    s32 = torch.from_numpy(np.asarray(s, dtype=np.float32))
    if s32.numel() > 1:
        s32 = s32[:, None]
    safe = torch.where(s32 > 0, s32, torch.ones_like(s32))
    t = torch.round(w / safe).clamp_(-1, 1)
    if stats is not None:
        s_val = torch.from_numpy(pf.from_float(s).to_float().astype(np.float32))
        stats.add(w, t, s_val[:, None] if s_val.numel() > 1 else s_val)
    return t.to(torch.int8).numpy()


@dataclass
class Ternary:
    trits: np.ndarray  # int8 [out, in]
    scale: PF  # [1] or [out]
    stats: TernStats


def ternarize(w: torch.Tensor, mode: str = "tensor", name: str = "weight") -> Ternary:
    """Ternarize one whole matrix (``name`` is for the NaN/Inf error)."""
    s = absmean_scale(w, mode, checked_abs_sum(name, w))
    stats = TernStats()
    trits = ternary_rows(w, s, stats)
    return Ternary(trits, pf.from_float(s), stats)


def int8_rows(w: torch.Tensor) -> tuple[np.ndarray, PF]:
    """Per-row symmetric int8: ``S_r = pf(max|row| / 127)``, ``q = clamp(round(row / S_r), +-127)``."""
    amax = w.abs().amax(dim=1).to(torch.float64) if w.numel() else torch.zeros(w.shape[0], dtype=torch.float64)
    s = pf.from_float(amax.numpy() / INT8_MAX)
    sv = torch.from_numpy(s.to_float())
    safe = torch.where(sv > 0, sv, torch.ones_like(sv))
    # float64: the pf value may have a tiny exponent, and q must use exactly that value
    q = torch.round(w.to(torch.float64) / safe[:, None]).clamp_(-INT8_MAX, INT8_MAX)
    return q.to(torch.int8).numpy(), s


def int16_norm(g: torch.Tensor) -> tuple[np.ndarray, PF]:
    """Norm gains: int16 with one pf scale [1], ``S = pf(max|g| / 32767)``."""
    amax = float(g.abs().max()) if g.numel() else 0.0
    s = pf.from_float(np.array([amax / INT16_MAX]))
    sv = float(s.to_float()[0])
    if sv == 0.0:
        return np.zeros(g.shape, dtype=np.int16), s
    q = torch.round(g.to(torch.float64) / sv).clamp_(-INT16_MAX, INT16_MAX)
    return q.to(torch.int16).numpy(), s


def int32_bias(b: torch.Tensor) -> np.ndarray:
    """Biases in fixed point with 16 fraction bits, saturated to int32."""
    q = torch.round(b.to(torch.float64) * (1 << BIAS_FRAC)).clamp_(-(1 << 31), (1 << 31) - 1)
    return q.to(torch.int32).numpy()
