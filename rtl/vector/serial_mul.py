"""Shift-and-add multiplier for the once-per-op address products (``pos * head_dim``,
``stride * head_dim``, ``tok0 * stride``): one bit of ``b`` per cycle, no DSP.

``start`` (a pulse) latches ``a`` and ``b``; ``busy`` is high from the next cycle until ``product`` =
``a * b mod 2**width`` is final, which takes one cycle per bit of ``b`` up to its highest set bit
(``b == 0``: one cycle).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class SerialMul(wiring.Component):
    def __init__(self, *, width: int, b_width: int):
        if width < 1 or b_width < 1:
            raise ValueError(f"width {width} and b_width {b_width} must be >= 1")
        self.width, self.b_width = width, b_width
        super().__init__({
            "start": In(1),
            "a": In(width),
            "b": In(b_width),
            "busy": Out(1),
            "product": Out(width),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        a = Signal(self.width)
        b = Signal(self.b_width)
        with m.If(self.start):
            m.d.sync += [a.eq(self.a), b.eq(self.b), self.product.eq(0), self.busy.eq(1)]
        with m.Elif(self.busy):
            m.d.sync += [
                self.product.eq(self.product + Mux(b[0], a, 0)),
                a.eq(a << 1),
                b.eq(b >> 1),
                self.busy.eq(b[1:] != 0),
            ]
        return m
