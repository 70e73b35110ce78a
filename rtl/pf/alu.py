"""Sequential scalar pf unit: the per-vector scale math of the op units, one op at a time.

Ops (:class:`PfOp`; golden functions in sim/numerics/pf.py):

====== ===================================== =================================================
op     result                                 path
====== ===================================== =================================================
NORM   ``normalize(x, k)`` (``x < 2**62``)    normalizer
MUL    ``mul(a, b)``                          :class:`PfMul`
ADD    ``add(a, b)``                          order, shift and add, normalizer
SHL    ``shl(a, k)``                          exponent add
RECIP  ``recip(a)`` (``a != 0``)              ``(2**33 + m) // 2m`` (divider), normalizer
RSQRT  ``rsqrt(a)`` (``a != 0``)              ``2**48 // m'`` (divider), isqrt, normalizer
DIV    ``quotient = x // y`` (``x < 2**49``,  divider
       ``1 <= y < 2**24``)
====== ===================================== =================================================

Operands ``a``, ``b`` are pfs (``2**15 <= m < 2**16``, or ``m == 0``); result exponents are the low 16
bits of the exact ones (callers keep results representable).

Handshake: a ``start`` pulse while idle (``busy`` low) latches ``op``, ``a``, ``b``, ``x``, ``y``,
``k``; ``busy`` is high from the next cycle through the ``done`` cycle; ``done`` pulses for one cycle.
``result`` (and ``quotient`` after DIV) are valid from ``done`` until the next ``start``. ``start``
while busy is ignored.

Cycles from ``start`` to ``done``: SHL 2, MUL 4, NORM 5, ADD 8, DIV 28, RECIP 32, RSQRT 42.

One divider (49 / 24 bits, 2 quotient bits per cycle), one square root (34 bits, 2 root bits per
cycle), one normalizer (64 bits) and one pf multiplier are shared by the ops.
"""
from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from ..control.isa import PF_LAYOUT
from .divider import Divider
from .isqrt import Isqrt
from .mul import PfMul
from .normalize import E_WIDTH, Normalize

M_BITS = 16
DIV_NUM = 49  # DIV x < 2**49; RSQRT divides 2**48
DIV_DEN = 24  # DIV y < 2**24; RECIP / RSQRT divide by m or 2m (17 bits)
SQRT_WIDTH = 34  # 2**48 // m' <= 2**33 for m' >= 2**15
ADD_D_MAX = 17  # ADD: beyond this exponent difference the smaller operand cannot change the sum


class PfOp(enum.IntEnum, shape=3):
    NORM = 0
    MUL = 1
    ADD = 2
    SHL = 3
    RECIP = 4
    RSQRT = 5
    DIV = 6


class PfAlu(wiring.Component):
    """One pf op at a time (see the module docstring). ``cycles[op]``: from ``start`` to ``done``."""

    def __init__(self):
        self._div = Divider(DIV_NUM, DIV_DEN)
        self._sqrt = Isqrt(SQRT_WIDTH)
        div, sqrt, norm = self._div.latency, self._sqrt.latency, Normalize.latency
        # start, ISSUE, [ADD: 2 states | divider, [square root]], wait for a pipeline, done
        self.cycles = {PfOp.SHL: 2, PfOp.MUL: PfMul.latency + 2, PfOp.NORM: norm + 2, PfOp.ADD: norm + 5,
                       PfOp.DIV: div + 2, PfOp.RECIP: div + norm + 3, PfOp.RSQRT: div + sqrt + norm + 3}
        super().__init__({
            "op": In(PfOp),
            "a": In(PF_LAYOUT),
            "b": In(PF_LAYOUT),
            "x": In(64),
            "y": In(DIV_DEN),
            "k": In(signed(E_WIDTH)),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "result": Out(PF_LAYOUT),
            "quotient": Out(64),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.div = div = self._div
        m.submodules.sqrt = sqrt = self._sqrt
        m.submodules.norm = norm = Normalize(64)
        m.submodules.mul = mul = PfMul()

        # operands, latched at start; the op as one-hot flags (cheap decode everywhere). x and k go
        # straight into the normalizer's operand registers (NORM), where DIV and SHL find them too.
        a = Signal(PF_LAYOUT)
        b = Signal(PF_LAYOUT)
        y = Signal(DIV_DEN)
        is_op = {op: Signal(name=f"is_{op.name.lower()}") for op in PfOp}
        nv = Signal(64)
        ne = Signal(signed(E_WIDTH))
        # the wait for a pipeline (normalizer or multiplier)
        wait = Signal(range(max(Normalize.latency, PfMul.latency) + 1))
        m.d.comb += [norm.v.eq(nv), norm.e.eq(ne), mul.a.eq(a), mul.b.eq(b),
                     self.quotient.eq(div.quotient)]
        m.d.sync += self.done.eq(0)
        with m.If(self.done):
            m.d.sync += self.busy.eq(0)

        # divider operands: DIV x // y; RECIP (2**33 + m) // 2m (= (2**33 // m + 1) >> 1 = round(2**32 / m),
        # nested floor divisions); RSQRT 2**48 // m' (m' = 2m for an odd e). The numerator is loaded
        # into nv at start.
        m.d.comb += [
            div.num.eq(nv[:DIV_NUM]),
            div.den.eq(Mux(is_op[PfOp.DIV], y,
                           Mux(is_op[PfOp.RECIP] | (is_op[PfOp.RSQRT] & a.e[0]), a.m << 1, a.m))),
            sqrt.x.eq(div.quotient[:SQRT_WIDTH]),
        ]

        # ADD as normalize(big * 2**d + small, big_e - d): the larger-exponent operand shifted left by
        # the exponent difference d, plus the other. Normalizing this exact sum rounds like pf.add's sum
        # floored to 16 guard bits (the rounding bit lies above them), and from d = 17 on the smaller
        # operand no longer reaches the rounding bit, so d is clamped to 17.
        a_zero = Signal()
        b_zero = Signal()
        a_ge = Signal()
        d_a = Signal(5)  # d when a has the larger exponent
        d_b = Signal(5)  # d when b has
        big = Signal(M_BITS + ADD_D_MAX - 1)  # the larger, shifted by the multiple-of-4 part of d
        small = Signal(M_BITS)
        big_e = Signal(signed(M_BITS))
        dist = Signal(5)

        def clamp_dist(d):
            return Mux((d[5:] != 0) | (d[:5] > ADD_D_MAX), ADD_D_MAX, d[:5])  # negative d: never used

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start & ~self.busy):
                    m.d.sync += [a.eq(self.a), b.eq(self.b), y.eq(self.y), ne.eq(self.k), self.busy.eq(1),
                                 nv.eq(Mux(self.op == PfOp.RECIP, (1 << 33) | self.a.m,
                                           Mux(self.op == PfOp.RSQRT, 1 << 48, self.x)))]
                    m.d.sync += [is_op[op].eq(self.op == op) for op in PfOp]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                with m.If(is_op[PfOp.NORM]):
                    m.d.sync += wait.eq(Normalize.latency - 1)  # x, k entered the normalizer
                    m.next = "WAIT"
                with m.If(is_op[PfOp.MUL]):
                    m.d.sync += wait.eq(PfMul.latency - 1)  # a, b entered the multiplier this cycle
                    m.next = "WAIT"
                with m.If(is_op[PfOp.SHL]):
                    m.d.sync += [self.result.m.eq(a.m), self.result.e.eq(Mux(a.m == 0, 0, a.e + ne)),
                                 self.done.eq(1)]
                    m.next = "IDLE"
                with m.If(is_op[PfOp.ADD]):
                    m.d.sync += [a_zero.eq(a.m == 0), b_zero.eq(b.m == 0), a_ge.eq(a.e >= b.e),
                                 d_a.eq(clamp_dist(a.e - b.e)), d_b.eq(clamp_dist(b.e - a.e))]
                    m.next = "ADD_ORDER"
                with m.If(is_op[PfOp.RECIP] | is_op[PfOp.RSQRT] | is_op[PfOp.DIV]):
                    m.d.comb += div.start.eq(1)
                    m.next = "DIVIDE"
                with m.If(~Cat(*is_op.values()).any()):  # not an op: finish, result unchanged
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
            with m.State("ADD_ORDER"):
                # the exponent is the larger one's, or the other's when one operand is zero
                a_big = b_zero | (~a_zero & a_ge)
                d = Mux(a_big, d_a, d_b)
                m.d.sync += [big.eq(Mux(a_big, a.m, b.m) << Cat(C(0, 2), d[2:])),
                             small.eq(Mux(a_big, b.m, a.m)), big_e.eq(Mux(a_big, a.e, b.e)), dist.eq(d)]
                m.next = "ADD_SUM"
            with m.State("ADD_SUM"):
                m.d.sync += [nv.eq((big << dist[:2]) + small), ne.eq(big_e - dist),
                             wait.eq(Normalize.latency)]
                m.next = "WAIT"
            with m.State("DIVIDE"):
                with m.If(div.done):
                    with m.If(is_op[PfOp.DIV]):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.If(is_op[PfOp.RECIP]):
                        # q <= 2**17 for a pf (up to 2**32 for any m > 0)
                        m.d.sync += [nv.eq(div.quotient[:34]), ne.eq(-a.e - 32),
                                     wait.eq(Normalize.latency)]
                        m.next = "WAIT"
                    with m.If(is_op[PfOp.RSQRT]):
                        m.d.comb += sqrt.start.eq(1)
                        m.next = "SQRT"
            with m.State("SQRT"):
                with m.If(sqrt.done):
                    # e' = e or e - 1 (even); -24 - e'/2 = -24 - floor(e / 2)
                    m.d.sync += [nv.eq(sqrt.root), ne.eq(-24 - (a.e >> 1)), wait.eq(Normalize.latency)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.d.sync += [self.result.eq(Mux(is_op[PfOp.MUL], mul.o, norm.o)), self.done.eq(1)]
                    m.next = "IDLE"
        return m
