"""Where each activation lives in the vector memory (VMEM): one allocation, used by the generator (to
size the VMEM from the maxima) and by the host's program compiler (to place a model's vectors).

The VMEM holds one 32-bit word per element and token: word ``a`` of token lane ``t`` (``t < B``). FX
values, int8 values (sign-extended) and pf scales (``m | e << 16``) each take one word. Every token of
a block uses the same addresses in its own lane.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VmemPlan:
    """Word addresses of the regions (the same in every token lane)."""

    h: int  # residual stream [hidden], FX
    q: int  # Q [q_dim], FX, then int8 in place after the per-head quantization
    k: int  # K [kv_dim] (follows Q)
    v: int  # V [kv_dim] (follows K)
    q_scale: int  # per-head pf scales of Q [heads]
    k_scale: int  # [kv_heads]
    v_scale: int  # [kv_heads]
    att: int  # attention output [q_dim], FX
    act: int  # gate -> act(gate) -> act(gate) * up [ffn], FX
    x8: int  # int8 copy of the engine's input vector [max(hidden, ffn, q_dim)]
    x_scale: int  # its pf scale
    total: int  # words used


def vmem_plan(hidden: int, ffn: int, heads: int, kv_heads: int, head_dim: int) -> VmemPlan:
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    at = 0

    def take(n: int) -> int:
        nonlocal at
        start, at = at, at + n
        return start

    h = take(hidden)
    q = take(q_dim)
    k = take(kv_dim)
    v = take(kv_dim)
    q_scale = take(heads)
    k_scale = take(kv_heads)
    v_scale = take(kv_heads)
    att = take(q_dim)
    act = take(ffn)
    x8 = take(max(hidden, ffn, q_dim))
    x_scale = take(1)
    return VmemPlan(h=h, q=q, k=k, v=v, q_scale=q_scale, k_scale=k_scale, v_scale=v_scale, att=att, act=act,
                    x8=x8, x_scale=x_scale, total=at)
