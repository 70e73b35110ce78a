"""Product of two pfs: ``o = pf.mul(a, b)`` (sim/numerics/pf.py), pipelined.

The 16x16 mantissa product (one DSP48E2) of two pfs lies in ``[2**30, 2**32)`` (or is 0), so its
leading one is bit 31 or bit 30: normalizing it is a one-bit choice (as in rtl/scale.py), then the
17 bits from the leading one are rounded half up and a carry to ``2**16`` renormalizes.

Operands are pfs: ``2**15 <= m < 2**16``, or ``m == 0`` (any ``e``: the product is zero).

Pipeline (``latency`` = 2 cycles, full throughput; ``ce`` low holds every stage):

1. mantissa product (DSP), exponent sum, zero flag;
2. the 17 bits from the leading one, round half up, renormalize on carry, zero.

The exponent output is the low 16 bits of the exact one (callers keep results representable).
"""
from __future__ import annotations

from amaranth.hdl import EnableInserter, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..control.isa import PF_LAYOUT

M_BITS = 16


class PfMul(wiring.Component):
    """``o = pf.mul(a, b)``, ``latency`` cycles after ``a``/``b`` (sampled with ``ce`` high)."""

    latency = 2

    def __init__(self):
        super().__init__({
            "a": In(PF_LAYOUT),
            "b": In(PF_LAYOUT),
            "ce": In(1, init=1),
            "o": Out(PF_LAYOUT),
        })

    def elaborate(self, platform):
        m = Module()
        # stage 1: the DSP product and the exponent sum
        p = Signal(2 * M_BITS)
        e1 = Signal(signed(17))
        zero1 = Signal()
        m.d.sync += [p.eq(self.a.m * self.b.m), e1.eq(self.a.e + self.b.e),
                     zero1.eq((self.a.m == 0) | (self.b.m == 0))]
        # stage 2: the 17 bits from the leading one (bit 31 or bit 30), rounded half up; all ones carries
        # to 2**16 = 2**15 with the exponent one higher
        top17 = Signal(17)
        m.d.comb += top17.eq(Mux(p[31], p[15:32], p[14:31]))
        inc = Signal(18)
        m.d.comb += inc.eq(top17 + 1)
        carry = inc[17]
        e2 = Signal(signed(19))
        m.d.comb += e2.eq(e1 + 15 + p[31] + carry)
        m.d.sync += [
            self.o.m.eq(Mux(zero1, 0, Mux(carry, 1 << (M_BITS - 1), inc[1:17]))),
            self.o.e.eq(Mux(zero1, 0, e2[:16])),
        ]
        return EnableInserter(self.ce)(m)
