"""What a host hands the engine for one pass, derived from a packed matrix: the register values and
activation words. Shared by the simulator testbenches and (later) the host's sim/kv260 backends."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ternfpga.rtl.params import EngineParams
from ternfpga.sim.numerics.pf import PF


@dataclass
class Pass:
    base: int  # byte address of the packed section
    port_stride: int  # bytes between port regions
    n_rows: int
    k_chunks: int
    n_groups: int
    w_scale: tuple[int, int]  # (m, e)
    x_scale: list[tuple[int, int]]  # per vector
    act_words: list[tuple[int, int, int]]  # (b, chunk, packed int8 word)


def plan_pass(p: EngineParams, n: int, k: int, base: int, x8: np.ndarray, w_scale: PF, x_scale: PF) -> Pass:
    """Register values for ``Y = W . X`` with W [n, k] packed by ``p.layout`` at ``base``; x8 [batch, k]."""
    p.check_matrix(n, k)
    x8 = np.asarray(x8)
    if x8.ndim != 2 or not 1 <= x8.shape[0] <= p.batch or x8.shape[1] != k:
        raise ValueError(f"x8 must be [1..{p.batch}, {k}], not {list(x8.shape)}")
    if np.asarray(x_scale.m).size != x8.shape[0]:
        raise ValueError("x_scale needs one scale per activation vector")
    lay = p.layout
    rows_pad, cols_pad = lay.padded(n, k)
    tpl = p.trits_per_lane
    xp = np.zeros((p.batch, cols_pad), np.int64)
    xp[: x8.shape[0], :k] = x8
    words = []
    for b in range(p.batch):
        for c in range(cols_pad // tpl):
            chunk = xp[b, c * tpl:(c + 1) * tpl] & 0xFF
            words.append((b, c, int(sum(int(v) << (8 * i) for i, v in enumerate(chunk)))))
    wm, we = np.asarray(w_scale.m).reshape(-1), np.asarray(w_scale.e).reshape(-1)
    if wm.size != 1:
        raise ValueError("the engine takes one per-tensor weight scale")
    xm, xe = np.asarray(x_scale.m).reshape(-1), np.asarray(x_scale.e).reshape(-1)
    return Pass(base=base, port_stride=lay.port_region_bytes(n, k), n_rows=n, k_chunks=cols_pad // tpl,
                n_groups=rows_pad // (p.lanes * p.ports), w_scale=(int(wm[0]), int(we[0])),
                x_scale=[(int(a), int(b)) for a, b in zip(xm, xe)], act_words=words)
