"""Requantization with a per-element scale: ``o = sat32(pf.apply(x, s, frac))`` (sim/numerics/pf.py,
fixed.py ``sat32``), pipelined.

``x * s.m`` (signed ``x_width + 16`` bits) is shifted by ``sh = -(s.e + frac)``: right shifts round
half up (``floor(x * m / 2**sh + 1/2)``), left shifts (``sh < 0``) are exact after clipping ``x * m``
to int32 and the shift to 32; the result saturates to int32. The shift changes every element, so it
is decoded in the pipeline, next to the multiply.

One right shifter serves both directions: with ``w = 2 * x * m`` (right) or ``w = 2 * v * 2**32``
(left, ``v = x * m`` when that fits int32) and ``a = sh`` (right) or ``32 - min(-sh, 32)`` (left), the
result is ``((w >> a) + 1) >> 1``: for a right shift ``floor(x * m / 2**sh + 1/2)``, for a left shift
the exact ``v << min(-sh, 32)`` (the ``+ 1`` falls off). A left shift of an ``x * m`` beyond int32
saturates whatever the shift, so it is flagged instead of clipped. Right shifts clamp at
``min(x_width + 16, 63)``: beyond the product width every value rounds to 0 (for ``x_width = 48``,
exact while ``|x * m| < 2**62``, the range ``pf.apply`` accepts). Only 41 bits of the coarse shift and
34 of the fine one are kept, with flags that the bits above are copies of the sign (if not, the result
saturates).

``x * m`` is one DSP48E2 for ``x_width <= 27``; wider ``x`` splits into a 24-bit unsigned low part
and a signed high part (two DSPs) whose products are added in the next stage.

Pipeline (``latency`` = 4 cycles, 5 for ``x_width > 27``; full throughput; ``ce`` low holds every
stage):

1. DSP multiply; shift decode (direction, amount);
   (``x_width > 27``: 1b. sum of the two partial products;)
2. operand select (right or left), overflow flag of a left shift, coarse shift by a multiple of 8
   and its sign-extension flag;
3. fine shift by 0..7 and its sign-extension flag;
4. round (``+ 1``, ``>> 1``), saturate to int32.
"""
from __future__ import annotations

from amaranth.hdl import C, Cat, EnableInserter, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..control.isa import PF_LAYOUT

M_BITS = 16
DSP_A = 27  # DSP48E2 multiplier input widths (signed): 27 x 18
SPLIT = 24  # low part of a wide x
W = 65  # shifter width: 2 * int32 * 2**32 for a left shift, 2 * x * m (<= 65 bits) for a right one
TW = 34  # fine result bits kept: (t + 1) >> 1 within int32 needs t within 34 bits
CW = TW + 7  # coarse result bits kept: the fine shift reads 7 more
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _all_equal(v):
    return (v == 0) | (v == (1 << len(v)) - 1)


class Apply(wiring.Component):
    """``o = sat32(pf.apply(x, s, frac))`` for signed ``x_width``-bit ``x`` and a pf ``s``."""

    def __init__(self, x_width: int, frac: int):
        if not 2 <= x_width <= 48:
            raise ValueError(f"Apply x_width must be in 2..48, not {x_width}")
        if not 0 <= frac <= 64:
            raise ValueError(f"Apply frac must be in 0..64, not {frac}")
        self.x_width, self.frac = x_width, frac
        self.prod_width = x_width + M_BITS  # signed x * unsigned 16-bit m
        self.max_right = min(self.prod_width, 63)
        self.wide = x_width > DSP_A
        self.latency = 5 if self.wide else 4
        super().__init__({
            "x": In(signed(x_width)),
            "s": In(PF_LAYOUT),
            "ce": In(1, init=1),
            "o": Out(signed(32)),
        })

    def elaborate(self, platform):
        m = Module()
        PW, F, RMAX = self.prod_width, self.frac, self.max_right

        # stage 1: the multiply; the shift decode, all compares against constants on e
        e = self.s.e
        sh = Signal(signed(18))
        m.d.comb += sh.eq(-e - F)
        right1 = Signal()
        amount1 = Signal(6)
        m.d.sync += [
            right1.eq(e <= -F),
            amount1.eq(Mux(e <= -F,
                           Mux(e <= -F - RMAX, RMAX, sh[:6]),  # right: min(sh, RMAX)
                           Mux(e <= 32 - F, sh[:5], 0))),  # left: 32 + max(sh, -32) = 32 - min(-sh, 32)
        ]
        xm = Signal(signed(PW))
        if self.wide:
            lo = Signal(SPLIT + M_BITS)
            hi = Signal(signed(PW - SPLIT))
            m.d.sync += [lo.eq(self.x[:SPLIT] * self.s.m), hi.eq(self.x[SPLIT:].as_signed() * self.s.m)]
            right, amount = Signal(), Signal(6)
            m.d.sync += [xm.eq((hi << SPLIT) + lo), right.eq(right1), amount.eq(amount1)]
        else:
            m.d.sync += xm.eq(self.x * self.s.m)
            right, amount = right1, amount1

        # stage 2: the shifter operand, a left shift's overflow, the coarse shift
        xm64 = Signal(signed(64))
        m.d.comb += xm64.eq(xm)
        base = Signal(signed(W))
        m.d.comb += base.eq(Mux(right, Cat(C(0, 1), xm).as_signed(), Cat(C(0, 33), xm64[:32]).as_signed()))
        fits32 = xm64[31:PW] == Mux(xm[-1], (1 << (PW - 31)) - 1, 0) if PW > 32 else C(1)
        # Only the low CW bits of the coarse result and TW bits of the fine one are kept, with a flag
        # that everything above is a sign extension; else the result saturates by the sign.
        shifted = Signal(signed(W))
        m.d.comb += shifted.eq(base >> Cat(C(0, 3), amount[3:]))
        ext_c = Signal()  # shifted[CW - 1:] all equal: base[CW - 1 + 8c:] all equal
        with m.Switch(amount[3:]):
            for c in range(8):
                with m.Case(c):
                    m.d.comb += ext_c.eq(_all_equal(base[min(CW - 1 + 8 * c, W - 1):]))
        coarse = Signal(signed(CW))
        ext2 = Signal()
        left_sat2 = Signal()
        neg2 = Signal()
        fine_amt = Signal(3)
        m.d.sync += [
            coarse.eq(shifted[:CW]), ext2.eq(ext_c),
            # a left shift of anything beyond int32 saturates
            left_sat2.eq(~right & ~fits32),
            neg2.eq(xm[-1]), fine_amt.eq(amount[:3]),
        ]

        # stage 3: the fine shift
        ext_f = Signal()  # bits TW - 1 .. CW - 1 of the fine result all equal
        with m.Switch(fine_amt):
            for f in range(8):
                with m.Case(f):
                    m.d.comb += ext_f.eq(_all_equal(coarse[TW - 1 + f:]))
        t = Signal(signed(TW))
        sat3 = Signal()
        neg3 = Signal()
        m.d.sync += [t.eq(coarse >> fine_amt), sat3.eq(left_sat2 | ~(ext2 & ext_f)), neg3.eq(neg2)]

        # stage 4: (t + 1) >> 1, saturated; the bounds compare t itself to keep the carry chains parallel
        rounded = Signal(33)
        m.d.comb += rounded.eq(t[:33] + 1)
        over = t >= (1 << 32) - 1  # (t + 1) >> 1 > INT32_MAX
        under = t < -(1 << 32) - 1  # (t + 1) >> 1 < INT32_MIN
        m.d.sync += self.o.eq(Mux(sat3, Mux(neg3, INT32_MIN, INT32_MAX),
                                  Mux(over, INT32_MAX, Mux(under, INT32_MIN, rounded[1:33]))))
        return EnableInserter(self.ce)(m)
