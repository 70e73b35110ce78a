"""Pieces every streaming vector op shares: the token-lane cursor, the lane pick from a VMEM row, the
replicated write word, int32 saturation."""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value

from ..control.isa import Flag
from ..vmem import WORD_BITS

INT32_MAX = (1 << 31) - 1
INT32_MIN = -(1 << 31)


def pick_lane(row: Value, lane: Value, lanes: int) -> Value:
    """Word ``lane`` of a VMEM row (``lanes`` 32-bit words side by side)."""
    return row[:WORD_BITS] if lanes == 1 else row.word_select(lane, WORD_BITS)


def replicate(word: Value, lanes: int) -> Value:
    """A VMEM row with ``word`` in every lane (the write's lane mask picks the lane)."""
    return Cat(*([word[:WORD_BITS]] * lanes))


def sat32(value: Value, width: int) -> Value:
    """Saturate a signed ``width``-bit value (``width >= 32``) to int32, from its top bits only: one LUT
    for the overflow flag of up to 6 bits, then a 3-input LUT per output bit."""
    if width == 32:
        return value[:32]
    top = value[31:width]
    overflow = ~((top == 0) | (top == (1 << (width - 31)) - 1))
    sign = value[width - 1]
    return Mux(overflow, Mux(sign, Const(INT32_MIN & 0xFFFF_FFFF, 32), Const(INT32_MAX, 32)), value[:32])


class TokenCursor:
    """The token lane an op is on: ``t`` runs from the first token (``T - 1`` with
    :attr:`Flag.LAST_TOKEN`, else 0) to ``T - 1``. ``mask`` is the one-hot lane mask of ``t``, ``last``
    says ``t`` is ``T - 1`` and ``count`` is the number of tokens the op runs for -- all registers.

    ``load`` (a pulse, with the descriptor and ctx valid) sets the first token; ``step`` moves to the
    next. Both are driven by the owner through :meth:`elaborate`'s arguments.
    """

    def __init__(self, lanes: int):
        self.lanes = lanes
        self.t = Signal(range(max(lanes, 2)))
        self.mask = Signal(lanes)
        self.last = Signal()
        self.count = Signal(range(lanes + 1))

    def elaborate(self, m: Module, *, load: Value, step: Value, desc, ctx) -> None:
        T = ctx.T
        only_last = (desc.flags & Flag.LAST_TOKEN) != 0
        first = Mux(only_last, T - 1, 0)[:len(self.t)]
        with m.If(load):
            m.d.sync += [
                self.t.eq(first),
                self.mask.eq(Const(1, self.lanes) << first),
                self.last.eq(Mux(only_last, 1, T == 1)),
                self.count.eq(Mux(only_last, 1, T)),
            ]
        with m.Elif(step):
            m.d.sync += [
                self.t.eq(self.t + 1),
                self.mask.eq(self.mask << 1),
                self.last.eq(self.t + 2 == T),
            ]
