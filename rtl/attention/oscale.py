"""A lane's output scale: ``shl(recip(normalize(psum, 0)), E + 15)`` (``sim/numerics/pf.py``), or 0 for a
lane without a live key; sequential, about 25 cycles.

``normalize`` (a ``Normalize(32)``), then ``recip``: ``q = (2**33 + m) // 2m`` (= ``round(2**32 / m)``, in
``[2**16, 2**17]``, one ``Divider``), whose normalization is a shift by 1 or 2 with round half up (and a
carry to ``2**16`` renormalized), then the exponent ``-e - 32 + shift + E + 15``. ``psum`` is at least
``2**15`` (the largest logit's key has ``p = 2**15``), never 0.

``start`` latches ``psum``, ``e``, ``live``; ``done`` pulses with ``result``, which holds until the next
``start``. Only the parts a softmax sum needs, where a general ``PfAlu`` would carry a square root, an
adder and a 64-bit normalizer.
"""
from __future__ import annotations

from amaranth.hdl import C, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..control.isa import PF_LAYOUT
from ..pf import Divider, Normalize

E_OFFSET = 15  # p is Q0.15
RECIP_E = 32  # recip: m' = round(2**32 / m), exponent -e - 32


class OutScale(wiring.Component):
    def __init__(self):
        self._norm = Normalize(32)
        self._div = Divider(34, 17)
        super().__init__({
            "start": In(1),
            "psum": In(32),
            "e": In(signed(16)),
            "live": In(1),
            "done": Out(1),
            "result": Out(PF_LAYOUT),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.norm = norm = self._norm
        m.submodules.div = div = self._div
        psum = Signal(32)
        big_e = Signal(signed(16))
        live = Signal()
        wait = Signal(range(Normalize.latency + 1))
        m1 = Signal(16)
        e1 = Signal(signed(16))
        m.d.comb += [norm.v.eq(psum), norm.e.eq(0), div.num.eq(C(1 << 33, 34) | m1), div.den.eq(m1 << 1)]
        q = div.quotient[:18]
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [psum.eq(self.psum), big_e.eq(self.e), live.eq(self.live),
                                 wait.eq(Normalize.latency)]
                    m.next = "NORM"
            with m.State("NORM"):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.d.sync += [m1.eq(norm.o.m), e1.eq(norm.o.e)]
                    m.next = "DIV"
            with m.State("DIV"):
                m.d.comb += div.start.eq(1)
                m.next = "DIV_WAIT"
            with m.State("DIV_WAIT"):
                with m.If(div.done):
                    m.next = "ROUND"
            with m.State("ROUND"):
                two = q[17]  # q = 2**17: shift 2; else shift 1
                r = Signal(17)
                m.d.comb += r.eq(Mux(two, (q + 2) >> 2, (q + 1) >> 1))
                carry = r[16]
                e = -e1 - RECIP_E + 1 + two + carry + big_e + E_OFFSET
                m.d.sync += [self.result.m.eq(Mux(live, Mux(carry, 1 << 15, r[:16]), 0)),
                             self.result.e.eq(Mux(live, e, 0)), self.done.eq(1)]
                m.next = "IDLE"
        return m
