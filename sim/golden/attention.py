"""Causal GQA attention over an int8 KV cache, bit-exact (docs/numerics.md "Attention").

Per (query token t, head h) against keys j <= pos(t):
  s_tj   = q8_t . k8_j                                  (int, |s| <= 127**2 * d)
  l_tj   = sat32(round(s_tj * (Sq_t * C * Sk_j) * 2**10))  log2-domain logit, C = log2(e)/sqrt(d)
  d_tj   = max_j l_tj - l_tj;  p_tj = EXP2[d & 1023] >> (d >> 10)      (p <= 2**15)
  w_tj   = round(p_tj * mv_j * 2**-15);  a_tj = round(w_tj * 2**-(E - ev_j)), E = max ev_j over
           keys with a non-zero V scale
  acc_t  = sum_j a_tj * v8_j                             (|acc| < 2**39 for ctx <= 2**16)
  o_t    = sat32(round(acc_t * recip(sum_j p_tj) * 2**(E + 15) * 2**16))   FX output
"""
from __future__ import annotations

import math

import numpy as np

from ..numerics import pf
from ..numerics.fixed import sat32
from ..numerics.pf import PF
from ..numerics.spec import FX_FRAC, LOG2E, LOGIT_FRAC
from ..numerics.tables import EXP2_FRAC_BITS, exp2_table


def logit_constant(head_dim: int) -> PF:
    """log2(e) / sqrt(head_dim) as a pf (a constant of the generated hardware)."""
    return pf.from_float(LOG2E / math.sqrt(head_dim))


def attend(q8: np.ndarray, q_scale: PF, k8: np.ndarray, k_scale: PF, v8: np.ndarray, v_scale: PF,
           q_pos: np.ndarray, trace: dict | None = None) -> np.ndarray:
    """q8 [T, H, d] int8 with scales [T, H]; k8/v8 [N, KVH, d] int8 with scales [N, KVH] (cache rows
    0..N-1 = positions); q_pos [T] positions of the queries. Returns FX [T, H, d]."""
    T, H, d = q8.shape
    N, KVH, _ = k8.shape
    G = H // KVH
    q = q8.astype(np.int64).reshape(T, KVH, G, d)
    k = k8.astype(np.int64)
    v = v8.astype(np.int64)
    # raw scores [KVH, G, T, N]
    s = np.einsum("tkgd,nkd->kgtn", q, k)
    qs = pf.mul(q_scale, logit_constant(d))  # [T, H]
    qs = PF(qs.m.reshape(T, KVH, G).transpose(1, 2, 0)[..., None], qs.e.reshape(T, KVH, G).transpose(1, 2, 0)[..., None])
    ks = PF(k_scale.m.T[:, None, None, :], k_scale.e.T[:, None, None, :])  # [KVH, 1, 1, N]
    logits = sat32(pf.apply(s, pf.mul(qs, ks), LOGIT_FRAC))
    valid = np.arange(N)[None, :] <= np.asarray(q_pos)[:, None]  # [T, N] causal
    masked = np.where(valid, logits, np.iinfo(np.int64).min)
    m = masked.max(axis=-1, keepdims=True)
    diff = np.where(valid, m - logits, 0)
    frac_mask = (1 << EXP2_FRAC_BITS) - 1
    p = exp2_table()[diff & frac_mask] >> np.minimum(diff >> EXP2_FRAC_BITS, 62)
    p = np.where(valid, p, 0)  # [KVH, G, T, N]
    psum = p.sum(axis=-1)  # [KVH, G, T]

    vm = v_scale.m.T[:, None, None, :]  # [KVH, 1, 1, N]
    ve = v_scale.e.T[:, None, None, :]
    live = (vm != 0) & valid
    big_e = np.where(live, ve, np.iinfo(np.int64).min).max(axis=-1, keepdims=True)  # [KVH, G, T, 1]
    any_live = live.any(axis=-1, keepdims=True)
    big_e = np.where(any_live, big_e, 0)
    w = pf.rshift_round(p * vm, 15)
    a = np.where(live, pf.rshift_round(w, np.maximum(big_e - ve, 0)), 0)
    acc = np.einsum("kgtn,nkd->kgtd", a, v)  # [KVH, G, T, d]
    scale = pf.shl(pf.recip(pf.from_int(np.maximum(psum, 1))), big_e[..., 0] + 15)
    out = sat32(pf.apply(acc, PF(scale.m[..., None], scale.e[..., None]), FX_FRAC))
    out = np.where(any_live, out, 0)
    if trace is not None:
        trace["logits"] = logits
        trace["probs"] = p
    return out.transpose(2, 0, 1, 3).reshape(T, H, d)
