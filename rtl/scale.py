"""Combined output scales: ``S_b = S_w * S_x[b]`` as pf products, turned into requantization shifts.

For each batch vector ``b``: ``p = m_w * m_x`` (16x16), normalized to 16 bits with round-half-up exactly
as ``sim/numerics/pf.py`` ``mul`` does, then ``shift = -(e + 16)`` clamped to ``[-32, max_shift]``
(beyond those bounds every result saturates or rounds to 0 anyway). Latency 3 cycles; the inputs must
be held steady while the engine runs, so this is computed once per pass.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

PF_LAYOUT = data.StructLayout({"m": 16, "e": signed(16)})
SHIFT_MIN = -32


class ScaleCombine(wiring.Component):
    """``w`` (pf) times each ``x[b]`` (pf) -> ``m[b]`` (16-bit mantissa) and ``shift[b]``.

    ``shift`` is the right shift that turns ``acc * m`` into a Q15.16 value: ``-(e + 16)``.
    """

    def __init__(self, batch: int, max_shift: int):
        if batch < 1:
            raise ValueError("batch must be >= 1")
        if not 1 <= max_shift <= 100:
            raise ValueError("max_shift must be in 1..100")
        self.batch, self.max_shift = batch, max_shift
        super().__init__({
            "w": In(PF_LAYOUT),
            "x": In(data.ArrayLayout(PF_LAYOUT, batch)),
            "m": Out(data.ArrayLayout(16, batch)),
            "shift": Out(data.ArrayLayout(signed(8), batch)),
        })

    def elaborate(self, platform):
        m = Module()
        for b in range(self.batch):
            x = self.x[b]
            # stage 1: the 16x16 product and the exponent sum
            p = Signal(32, name=f"p{b}")
            e = Signal(signed(18), name=f"e{b}")
            zero = Signal(name=f"zero{b}")
            m.d.sync += [p.eq(self.w.m * x.m), e.eq(self.w.e + x.e), zero.eq((self.w.m == 0) | (x.m == 0))]
            # stage 2: normalize p in [2**30, 2**32) by 16 if bit 31 is set, else 15; round half up
            rounded = Signal(17, name=f"rounded{b}")
            exp = Signal(signed(19), name=f"exp{b}")
            zero2 = Signal(name=f"zero2_{b}")
            m.d.sync += [rounded.eq(Mux(p[31], (p + (1 << 15)) >> 16, (p + (1 << 14)) >> 15)),
                         exp.eq(e + Mux(p[31], 16, 15)), zero2.eq(zero)]
            # stage 3: a rounding carry renormalizes; shift = -(e + 16), clamped
            carry = rounded[16]
            mant = Mux(carry, 1 << 15, rounded[:16])
            sh = Signal(signed(20), name=f"sh{b}")
            m.d.comb += sh.eq(-(exp + carry + 16))
            clamped = Mux(sh < SHIFT_MIN, SHIFT_MIN, Mux(sh > self.max_shift, self.max_shift, sh))
            m.d.sync += [self.m[b].eq(Mux(zero2, 0, mant)), self.shift[b].eq(Mux(zero2, 0, clamped))]
        return m
