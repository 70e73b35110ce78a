"""Rounding of a non-negative integer to a pf: ``o = pf.normalize(v, e)`` (sim/numerics/pf.py).

``v * 2**e`` becomes ``m * 2**e'`` with ``2**15 <= m < 2**16``: ``v`` is shifted so its leading one
lands on mantissa bit 15, rounded half up on the bit below (a left shift is exact), and a rounding
carry to ``2**16`` renormalizes to ``2**15`` with the exponent one higher; ``v == 0`` gives (0, 0).

The 17 bits from the leading one down are all the rounding needs (round half up looks at one bit),
so the shifter produces only those: ``v`` is padded at the bottom to whole bytes, a byte-wise
leading-zero count picks the first non-zero byte (coarse shift by a multiple of 8) and the leading
zeros inside it (fine shift by 0..7).

Pipeline (``latency`` = 3 cycles, full throughput, one input per cycle; ``ce`` low holds every stage):

1. per byte: non-zero flag and its leading-zero count; the exponent offset ``e + width - 16``;
2. index of the first non-zero byte, coarse shift into a 24-bit window, the exponent less the
   leading-zero count;
3. fine shift to 17 bits, round, renormalize on carry, zero.

The exponent output is the low 16 bits of the exact one (callers keep results representable).
"""
from __future__ import annotations

from amaranth.hdl import Cat, EnableInserter, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..control.isa import PF_LAYOUT

M_BITS = 16
E_WIDTH = 18  # the exponent input: any pf exponent plus an offset of a few dozen


class Normalize(wiring.Component):
    """``o = pf.normalize(v, e)`` for ``width``-bit unsigned ``v`` and signed 18-bit ``e``.

    ``latency`` cycles from ``v``/``e`` (sampled on a cycle with ``ce`` high) to ``o``; one input per
    cycle. ``ce`` low freezes the pipeline (inputs ignored, ``o`` held).
    """

    latency = 3

    def __init__(self, width: int):
        if not 1 <= width <= 64:
            raise ValueError(f"Normalize width must be in 1..64, not {width}")
        self.width = width
        super().__init__({
            "v": In(width),
            "e": In(signed(E_WIDTH)),
            "ce": In(1, init=1),
            "o": Out(PF_LAYOUT),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.width
        G = max(3, (W + 7) // 8)  # bytes; at least 3 so the 24-bit window always exists
        WP = 8 * G
        vp = Cat(Signal(WP - W), self.v)  # padded at the bottom: leading zeros stay those of v

        # stage 1: per byte (byte 0 is the most significant) a non-zero flag and its leading zeros
        v1 = Signal(WP)
        nz1 = Signal(G)
        lz1 = [Signal(3, name=f"lz1_{g}") for g in range(G)]
        e1 = Signal(signed(E_WIDTH + 2))
        m.d.sync += [v1.eq(vp), e1.eq(self.e + (W - M_BITS))]
        for g in range(G):
            byte = vp[WP - 8 * (g + 1):WP - 8 * g]
            m.d.sync += nz1[g].eq(byte.any())
            lz = 0
            for b in range(8):  # the highest set bit wins (the last Mux is the outermost)
                lz = Mux(byte[b], 7 - b, lz)
            m.d.sync += lz1[g].eq(lz)

        # stage 2: the first non-zero byte, the coarse shift, the exponent less the leading zeros
        gi = 0
        for g in reversed(range(G)):
            gi = Mux(nz1[g], g, gi)
        gi_s = Signal(range(G))
        m.d.comb += gi_s.eq(gi)
        fine_c = Signal(3)
        with m.Switch(gi_s):
            for g in range(G):
                with m.Case(g):
                    m.d.comb += fine_c.eq(lz1[g])
        window = Signal(24)  # bytes gi .. gi + 2
        v1_ext = Cat(Signal(16), v1)  # zero bytes below the last
        with m.Switch(gi_s):
            for g in range(G):
                with m.Case(g):
                    top = WP + 16 - 8 * g
                    m.d.comb += window.eq(v1_ext[top - 24:top])
        w2 = Signal(24)
        fine2 = Signal(3)
        zero2 = Signal()
        e2 = Signal(signed(E_WIDTH + 3))
        m.d.sync += [w2.eq(window), fine2.eq(fine_c), zero2.eq(~nz1.any()),
                     e2.eq(e1 - Cat(fine_c, gi_s))]

        # stage 3: fine shift to the 17 bits from the leading one, round half up, carry, zero
        top17 = Signal(17)
        with m.Switch(fine2):
            for f in range(8):
                with m.Case(f):
                    m.d.comb += top17.eq(w2[7 - f:24 - f])
        inc = Signal(18)
        m.d.comb += inc.eq(top17 + 1)
        carry = inc[17]
        e3 = Signal(signed(E_WIDTH + 4))
        m.d.comb += e3.eq(e2 + carry)
        m.d.sync += [
            self.o.m.eq(Mux(zero2, 0, Mux(carry, 1 << (M_BITS - 1), inc[1:17]))),
            self.o.e.eq(Mux(zero2, 0, e3[:16])),
        ]
        return EnableInserter(self.ce)(m)
