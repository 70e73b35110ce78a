"""Constant tables of the fixed-point datapath: RoPE cos/sin, exp2 for softmax, sigmoid for SiLU.

Each table is computed offline in float64 and rounded once; the integers are the contract (the RoPE
table travels in the model image, the others are ROMs in the fabric and the same function builds them).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

ROPE_FRAC = 14  # cos/sin in Q1.14 (int16)
EXP2_FRAC_BITS = 10  # softmax: fractional part of the log2-domain difference, 10 bits -> 1024 entries
EXP2_OUT_FRAC = 15  # exp2 table values in Q0.15 (2**15 == 1.0)
SIG_LO = -16  # sigmoid table covers [-16, 16)
SIG_STEP_LOG2 = 5  # grid step 1/32
SIG_OUT_FRAC = 16  # sigmoid values in Q0.16


def rope_tables(theta: float, head_dim: int, max_ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """int16 [max_ctx, head_dim/2] tables: round(cos(p * theta**(-2i/head_dim)) * 2**14), same for sin."""
    half = head_dim // 2
    inv = theta ** (-np.arange(half, dtype=np.float64) * 2.0 / head_dim)
    ang = np.arange(max_ctx, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.floor(np.cos(ang) * (1 << ROPE_FRAC) + 0.5).astype(np.int16)
    sin = np.floor(np.sin(ang) * (1 << ROPE_FRAC) + 0.5).astype(np.int16)
    return cos, sin


@lru_cache(maxsize=None)
def exp2_table() -> np.ndarray:
    """int64 [1024]: round(2**15 * 2**(-f/1024)) for f = 0..1023 (values in (2**14, 2**15])."""
    n = 1 << EXP2_FRAC_BITS
    return np.array([math.floor((1 << EXP2_OUT_FRAC) * 2.0 ** (-f / n) + 0.5) for f in range(n)], dtype=np.int64)


@lru_cache(maxsize=None)
def sigmoid_table() -> np.ndarray:
    """int64 [1025]: round(sigmoid(-16 + k/32) * 2**16) for k = 0..1024 (the last entry is x = +16)."""
    n = (2 * -SIG_LO) << SIG_STEP_LOG2
    out = []
    for k in range(n + 1):
        x = SIG_LO + k / (1 << SIG_STEP_LOG2)
        out.append(math.floor((1 << SIG_OUT_FRAC) / (1.0 + math.exp(-x)) + 0.5))
    return np.array(out, dtype=np.int64)
