"""Small helpers shared by the attention blocks."""
from __future__ import annotations

from amaranth.hdl import Module, Signal

BEAT_BYTES = 16  # one AXI beat: 16 int8 elements of a K/V row, or 4 pf scale words
COLS = BEAT_BYTES  # DSP chain length of the QK and PV arrays (one column per beat byte / tile key)
LOGIT_FRAC = 10  # log2-domain logits (docs/numerics.md "Attention")
FX_FRAC = 16


def delay(m: Module, sig, cycles: int, name: str, domain: str = "sync"):
    """``sig`` delayed by ``cycles`` registers (``sig`` itself for 0)."""
    for i in range(cycles):
        nxt = Signal.like(sig, name=f"{name}_d{i}")
        m.d[domain] += nxt.eq(sig)
        sig = nxt
    return sig


def pick(m: Module, items: list, index, shape, name: str):
    """``items[index]`` (the last item for an index beyond the list)."""
    out = Signal(shape, name=name)
    with m.Switch(index):
        for i, it in enumerate(items):
            if i == len(items) - 1:
                with m.Default():
                    m.d.comb += out.eq(it)
            else:
                with m.Case(i):
                    m.d.comb += out.eq(it)
    return out


def score_width(max_head_dim: int) -> int:
    """Signed width of q8 . k8 over ``max_head_dim`` terms (|int8 x int8| <= 2**14), at least the 21 bits
    the QK array's per-beat chain carries."""
    return max(21, (max_head_dim << 14).bit_length() + 1)


def acc_width(max_ctx: int) -> int:
    """Signed width of sum_j a_j * v8_j over ``max_ctx`` keys (a < 2**16, |v8| <= 128)."""
    return (((1 << 16) - 1) * 128 * max_ctx).bit_length() + 1
