"""The ternary matvec + requantization the engine computes (docs/numerics.md "Linear layers").

``Y[b, r] = sat32(round(sum_c W[r, c] * X[b, c] * m * 2**(e + 16)))`` with ``(m, e) = S_w[r] * S_x[b]``.
"""
from __future__ import annotations

import numpy as np

from ..numerics import pf
from ..numerics.fixed import requant
from ..numerics.pf import PF


def ternary_acc(w: np.ndarray, x8: np.ndarray) -> np.ndarray:
    """Integer sums [B, N] of ternary ``w`` [N, K] (int8 or float32) with int8 ``x8`` [B, K].
    float32 BLAS is exact: every partial sum is an integer below 127 * K < 2**24."""
    wf = w if w.dtype == np.float32 else w.astype(np.float32)
    return (np.asarray(x8).astype(np.float32) @ wf.T).astype(np.int64)


def requant_rows(acc: np.ndarray, w_scale: PF, x_scale: PF) -> np.ndarray:
    """FX outputs [B, N] of sums [B, N]: scale ``S_w[r] * S_x[b]``; ``w_scale`` [1] or [N], ``x_scale`` [B]."""
    s = pf.mul(PF(np.asarray(w_scale.m)[None, :], np.asarray(w_scale.e)[None, :]),
               PF(np.asarray(x_scale.m)[:, None], np.asarray(x_scale.e)[:, None]))
    return requant(acc, s)


def matvec(w: np.ndarray, x8: np.ndarray, w_scale: PF, x_scale: PF) -> np.ndarray:
    """FX outputs [B, N]. ``w_scale`` has shape [1] (per tensor) or [N]; ``x_scale`` shape [B]."""
    return requant_rows(ternary_acc(w, x8), w_scale, x_scale)
