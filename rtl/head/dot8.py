"""Exact int8 dot product of a DDR row with a held vector, one 16-byte beat per cycle: the head's
rescoring sum ``dot = sum(row * x8)`` (docs/numerics.md "Output head").

A beat pair ``(w, x)`` (``lanes`` signed bytes each) enters with ``valid``; ``first`` marks the first
beat of a row (the accumulator restarts) and ``last`` its final beat. Each beat's ``lanes`` products
are DSP48E2 multiplies of registered operands (8 x 8 signed), summed by an adder tree with a register
after every two adder levels, then accumulated.

Pipeline (``latency`` = 4 cycles for 16 lanes, full throughput, no stall): products; sums of four;
beat total; accumulate. ``out_valid`` pulses ``latency`` cycles after a ``last`` beat, with ``dot``
(the accumulator, which holds until the next row's first beat reaches it).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

GROUP = 4  # adder-tree operands per registered stage (two adder levels)


def _tree_stages(lanes: int) -> int:
    stages, n = 0, lanes
    while n > 1:
        n = -(-n // GROUP)
        stages += 1
    return stages


def _pairwise(terms):
    """Balanced sum: ceil(log2(len)) adder levels."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


class Int8Dot(wiring.Component):
    """``dot = sum over a row's beats of sum_i w[i] * x[i]`` (signed bytes); see the module docstring."""

    def __init__(self, lanes: int = 16, acc_width: int = 27):
        if lanes < 1:
            raise ValueError(f"int8 dot lanes {lanes} must be >= 1")
        if acc_width < 17:
            raise ValueError(f"int8 dot acc_width {acc_width} must be >= 17 (one beat's sum)")
        self.lanes, self.acc_width = lanes, acc_width
        self.latency = 2 + _tree_stages(lanes)
        super().__init__({
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "w": In(8 * lanes),
            "x": In(8 * lanes),
            "out_valid": Out(1),
            "dot": Out(signed(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        # products: int8 x int8 lies in [-16256, 16384], 16 bits signed
        terms = []
        for i in range(self.lanes):
            p = Signal(signed(16), name=f"p{i}")
            m.d.sync += p.eq(self.w.word_select(i, 8).as_signed() * self.x.word_select(i, 8).as_signed())
            terms.append(p)
        valid, first, last = Signal(), Signal(), Signal()
        m.d.sync += [valid.eq(self.valid), first.eq(self.first), last.eq(self.last)]

        width = 16
        stage = 0
        while len(terms) > 1:
            width += 2  # four operands: two more bits
            nxt = []
            for g in range(0, len(terms), GROUP):
                s = Signal(signed(width), name=f"s{stage}_{g // GROUP}")
                m.d.sync += s.eq(_pairwise(terms[g:g + GROUP]))
                nxt.append(s)
            terms = nxt
            v, f, la = Signal(), Signal(), Signal()
            m.d.sync += [v.eq(valid), f.eq(first), la.eq(last)]
            valid, first, last = v, f, la
            stage += 1

        acc = Signal(signed(self.acc_width))
        with m.If(valid):
            m.d.sync += acc.eq(Mux(first, 0, acc) + terms[0])
        m.d.sync += self.out_valid.eq(valid & last)
        m.d.comb += self.dot.eq(acc)
        return m
