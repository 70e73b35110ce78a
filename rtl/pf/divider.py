"""Sequential unsigned integer division: ``quotient = num // den``, ``remainder = num % den``.

Restoring division, ``steps`` quotient bits per cycle (default 2, i.e. radix 4 as two chained radix-2
steps: a subtract and a select each, 4 LUT levels in all). The numerator is padded at the top to a
multiple of ``steps`` bits and shifts out of a register whose freed low end collects the quotient.

Handshake: a ``start`` pulse while idle (``busy`` low) latches ``num`` and ``den``; ``busy`` is high
from the next cycle through the ``done`` cycle; ``done`` pulses for one cycle, ``ceil(num_width /
steps) + 1`` cycles after ``start``. ``quotient`` and ``remainder`` are valid from ``done`` until the
next ``start``. ``start`` while busy is ignored. One division at a time.

Division by zero (callers never do it): every trial subtraction succeeds, so ``quotient`` is all
ones (``2**num_width - 1``) and ``remainder`` is ``num mod 2**den_width``.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class Divider(wiring.Component):
    """``num_width``-bit by ``den_width``-bit unsigned division (see the module docstring)."""

    def __init__(self, num_width: int, den_width: int, steps: int = 2):
        if not 1 <= num_width <= 128 or not 1 <= den_width <= 64:
            raise ValueError(f"Divider widths must be 1..128 / 1..64, not {num_width} / {den_width}")
        if steps not in (1, 2, 3):
            raise ValueError(f"Divider steps must be 1, 2 or 3, not {steps}")
        self.num_width, self.den_width, self.steps = num_width, den_width, steps
        self.iterations = -(-num_width // steps)
        self.latency = self.iterations + 1  # start cycle to done cycle
        super().__init__({
            "start": In(1),
            "num": In(num_width),
            "den": In(den_width),
            "busy": Out(1),
            "done": Out(1),
            "quotient": Out(num_width),
            "remainder": Out(den_width),
        })

    def elaborate(self, platform):
        m = Module()
        NW, DW, K = self.num_width, self.den_width, self.steps
        n = self.iterations
        bits = Signal(n * K)  # numerator bits still to bring down (top) / quotient bits (bottom)
        rem = Signal(DW)
        den = Signal(DW)
        count = Signal(range(n))
        run = Signal()
        m.d.comb += [self.quotient.eq(bits[:NW]), self.remainder.eq(rem)]
        m.d.sync += self.done.eq(0)

        # K chained restoring steps: bring down the next bit, subtract the divisor if it fits
        r, q = rem, bits
        for _ in range(K):
            r2 = Cat(q[-1], r)  # 2 * rem + next bit < 2 * den
            diff = Signal(DW + 2)
            m.d.comb += diff.eq(r2 - den)
            fits = ~diff[-1]
            r_next = Signal(DW)
            m.d.comb += r_next.eq(Mux(fits, diff[:DW], r2[:DW]))
            r, q = r_next, Cat(fits, q[:-1])

        with m.If(run):
            m.d.sync += [rem.eq(r), bits.eq(q), count.eq(count - 1)]
            with m.If(count == 0):
                m.d.sync += [run.eq(0), self.done.eq(1)]
        with m.Elif(self.start & ~self.busy):
            m.d.sync += [rem.eq(0), bits.eq(self.num), den.eq(self.den), count.eq(n - 1),
                         run.eq(1), self.busy.eq(1)]
        with m.If(self.done):
            m.d.sync += self.busy.eq(0)
        return m
