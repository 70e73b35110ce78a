"""Sequential exact integer square root: ``root = floor(sqrt(x))`` (``pf.isqrt``, sim/numerics/pf.py).

Digit-by-digit (restoring) square root, ``steps`` root bits per cycle (default 2: two chained steps,
each a subtract and a select, 4 LUT levels in all): each step brings down the next two bits of ``x``
into the partial remainder and subtracts ``4 * root + 1`` if it fits, appending a one to the root
(else a zero). ``x`` is padded at the top to a multiple of ``2 * steps`` bits.

Handshake: a ``start`` pulse while idle (``busy`` low) latches ``x``; ``busy`` is high from the next
cycle through the ``done`` cycle; ``done`` pulses for one cycle, ``ceil(width / (2 * steps)) + 1``
cycles after ``start``; ``root`` (and ``remainder`` = ``x - root**2``) are valid from ``done`` until the
next ``start``. ``start`` while busy is ignored.
"""
from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class Isqrt(wiring.Component):
    """Floor square root of a ``width``-bit unsigned integer (see the module docstring)."""

    def __init__(self, width: int, steps: int = 2):
        if not 1 <= width <= 128:
            raise ValueError(f"Isqrt width must be in 1..128, not {width}")
        if steps not in (1, 2, 3):
            raise ValueError(f"Isqrt steps must be 1, 2 or 3, not {steps}")
        self.width, self.steps = width, steps
        self.iterations = -(-width // (2 * steps))
        self.root_width = self.iterations * steps
        self.latency = self.iterations + 1  # start cycle to done cycle
        super().__init__({
            "start": In(1),
            "x": In(width),
            "busy": Out(1),
            "done": Out(1),
            "root": Out((width + 1) // 2),
            "remainder": Out((width + 1) // 2 + 1),
        })

    def elaborate(self, platform):
        m = Module()
        K, n, RW = self.steps, self.iterations, self.root_width
        xs = Signal(2 * RW)  # radicand bits still to bring down, two per step, from the top
        root = Signal(RW)
        rem = Signal(RW + 1)  # x' - root**2 <= 2 * root
        count = Signal(range(n))
        run = Signal()
        m.d.comb += [self.root.eq(root), self.remainder.eq(rem)]
        m.d.sync += self.done.eq(0)

        r, q, x = rem, root, xs
        for _ in range(K):
            r2 = Cat(x[-2:], r)  # 4 * rem + next two bits
            trial = Cat(C(1, 2), q)  # 4 * root + 1
            diff = Signal(RW + 4)
            m.d.comb += diff.eq(r2 - trial)
            fits = ~diff[-1]
            r_next = Signal(RW + 1)
            m.d.comb += r_next.eq(Mux(fits, diff, r2))
            r, q, x = r_next, Cat(fits, q[:-1]), Cat(C(0, 2), x[:-2])

        with m.If(run):
            m.d.sync += [rem.eq(r), root.eq(q), xs.eq(x), count.eq(count - 1)]
            with m.If(count == 0):
                m.d.sync += [run.eq(0), self.done.eq(1)]
        with m.Elif(self.start & ~self.busy):
            m.d.sync += [rem.eq(0), root.eq(0), xs.eq(self.x), count.eq(n - 1),
                         run.eq(1), self.busy.eq(1)]
        with m.If(self.done):
            m.d.sync += self.busy.eq(0)
        return m
