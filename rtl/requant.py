"""Requantization of accumulators to Q15.16: ``y = sat32(round(acc * m * 2**-shift))``.

Round half up (``(x + 2**(shift-1)) >> shift``) for ``shift > 0``, exact left shift for ``shift <= 0``,
then saturation to int32: ``sim/numerics/pf.py`` ``apply`` + ``fixed.sat32`` bit for bit. ``batch``
values (one row, every vector) per cycle; ``acc * m`` is one DSP48E2 multiply per vector.

Pipeline: 5 stages (multiply, round, coarse shift by a multiple of 8, fine shift, saturate), full
throughput; the whole pipeline holds while ``out`` is stalled. ``m`` and ``shift`` are per-pass
constants: the shift decode is registered, so they must be stable 2 cycles before the first input.
"""
from __future__ import annotations

from amaranth.hdl import C, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

LATENCY = 5


def max_shift(acc_width: int) -> int:
    """The largest useful right shift for ``acc_width``-bit sums: the product width + 1 (beyond it every
    value rounds to 0)."""
    return acc_width + 17 + 1


class Requant(wiring.Component):
    """``batch`` accumulators of one row in, their Q15.16 values out (see the module docstring)."""

    def __init__(self, *, batch: int, acc_width: int, row_width: int):
        if batch < 1 or acc_width < 2 or row_width < 1:
            raise ValueError("batch >= 1, acc_width >= 2, row_width >= 1")
        self.batch, self.acc_width, self.row_width = batch, acc_width, row_width
        self.prod_width = acc_width + 17  # signed acc x unsigned 16-bit mantissa
        self.max_shift = max_shift(acc_width)
        super().__init__({
            "inp": In(stream.Signature(data.StructLayout({
                "row": row_width, "acc": data.ArrayLayout(signed(acc_width), batch)}))),
            "out": Out(stream.Signature(data.StructLayout({
                "row": row_width, "value": data.ArrayLayout(signed(32), batch)}))),
            "m": In(data.ArrayLayout(16, batch)),
            "shift": In(data.ArrayLayout(signed(8), batch)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        B, PW = self.batch, self.prod_width
        advance = Signal()
        m.d.comb += advance.eq(~self.out.valid | self.out.ready)
        m.d.comb += self.inp.ready.eq(advance)
        stages = LATENCY - 1
        valid = [Signal(name=f"v{i}") for i in range(stages)]
        rows = [Signal(self.row_width, name=f"row{i}") for i in range(stages)]
        idle = ~self.out.valid
        for v in valid:
            idle = idle & ~v
        m.d.comb += self.idle.eq(idle)
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.inp.valid), rows[0].eq(self.inp.payload.row)]
            for i in range(1, stages):
                m.d.sync += [valid[i].eq(valid[i - 1]), rows[i].eq(rows[i - 1])]
            m.d.sync += [self.out.valid.eq(valid[-1]), self.out.payload.row.eq(rows[-1])]
        for b in range(B):
            sh = self.shift[b]
            # per-pass shift decode, registered: direction, amounts, the rounding half
            right = Signal(name=f"right{b}")
            rsh = Signal(7, name=f"rsh{b}")
            lsh = Signal(6, name=f"lsh{b}")
            half = Signal(PW + 1, name=f"half{b}")
            m.d.sync += [right.eq(sh > 0), rsh.eq(Mux(sh > 0, sh.as_unsigned()[:7], 0)),
                         lsh.eq(Mux(sh < 0, (-sh).as_unsigned()[:6], 0)),
                         half.eq(Mux(sh > 0, C(1, PW + 1) << (sh - 1).as_unsigned()[:7], 0))]
            prod = Signal(signed(PW), name=f"prod{b}")
            rnd = Signal(signed(PW + 2), name=f"rnd{b}")  # + the half 2**PW at the largest shift
            coarse = Signal(signed(PW + 34), name=f"coarse{b}")
            fine = Signal(signed(PW + 34), name=f"fine{b}")
            with m.If(advance):
                m.d.sync += [
                    prod.eq(self.inp.payload.acc[b] * self.m[b]),  # stage 1: the DSP multiply
                    rnd.eq(prod + half),  # stage 2: add the rounding half for right shifts
                    # stages 3 and 4: shift by the multiple-of-8 part, then by the rest (arithmetic
                    # right shift, or exact left shift of at most 32)
                    coarse.eq(Mux(right, rnd >> (rsh[3:] << 3), rnd << (lsh[3:] << 3))),
                    fine.eq(Mux(right, coarse >> rsh[:3], coarse << lsh[:3])),
                    # stage 5: saturate to int32
                    self.out.payload.value[b].eq(Mux(fine > (1 << 31) - 1, (1 << 31) - 1,
                                                     Mux(fine < -(1 << 31), -(1 << 31), fine))),
                ]
        return m
