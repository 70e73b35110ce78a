"""Orders the rescored shortlist by (logit descending, row id ascending) and writes it to DDR as
``{u32 row id, i32 logit}`` entries, best first (docs/numerics.md "Output head", step 4).

Entries arrive on ``inp`` (always ready, at most ``max_k`` between two ``clear`` pulses) into a
``max_k``-deep block-RAM queue; a pusher moves them one at a time into a :class:`~.heap.Heap` under the
key ``{~(logit offset-binary), row}``, so the min-heap's root is the *best* entry. Pushes overlap the
arrival of later entries (a push of a random entry costs a few cycles; arrivals are a row's beats apart).

``go`` (a pulse, once ``pushed`` is high: all ``count`` entries are in the heap and it is idle) issues
one :class:`~ternfpga.rtl.axi.writer.AxiWriter` command for ``ceil(count / 2)`` beats at ``addr`` and pops
the heap, best first, straight into the write stream: two entries per 16-byte beat, an odd last entry in
the low half with the high half's strobes off. ``done`` pulses once every B response is in; ``error`` /
``error_addr`` are the writer's (the first failing burst), valid with ``done``.

Cost: a pop is 1 + the heap's pop (at most ``2 * floor(log2(max_k)) + 2`` cycles), so the sort runs in
O(count * log count) cycles (measured ~14 per entry at 256: ~3.6k); the writes overlap it. ``count``
must hold from ``clear`` until ``done``; ``addr`` from ``go`` until ``done``.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..axi.signature import AxiWriteSignature
from ..axi.writer import AxiWriter
from .heap import Heap

BEAT_BYTES = 16
LOGIT_BITS = 32


def entry_layout(row_width: int) -> data.StructLayout:
    return data.StructLayout({"row": row_width, "logit": signed(LOGIT_BITS)})


class RankWriter(wiring.Component):
    """Heap sort of up to ``max_k`` entries, written best first (see the module docstring)."""

    def __init__(self, *, addr_width: int, row_width: int, max_k: int):
        if max_k < 1 or row_width < 1:
            raise ValueError("rank writer needs max_k >= 1 and row_width >= 1")
        if row_width > 32:
            raise ValueError(f"row ids of {row_width} bits do not fit the u32 result field")
        self.addr_width, self.row_width, self.max_k = addr_width, row_width, max_k
        self.key_width = row_width + LOGIT_BITS
        self.writer = AxiWriter(addr_width=addr_width, data_width=8 * BEAT_BYTES,
                                len_width=(max_k // 2 + 1).bit_length())
        super().__init__({
            "clear": In(1),
            "count": In(range(max_k + 1)),
            "inp": In(stream.Signature(entry_layout(row_width), always_ready=True)),
            "pushed": Out(1),
            "go": In(1),
            "addr": In(addr_width),
            "axi": Out(AxiWriteSignature(addr_width, 8 * BEAT_BYTES)),
            "done": Out(1),
            "error": Out(1),
            "error_addr": Out(addr_width),
        })

    def elaborate(self, platform):
        m = Module()
        RW, KW = self.row_width, self.key_width
        m.submodules.heap = heap = Heap(self.max_k, KW)
        m.submodules.writer = writer = self.writer
        wiring.connect(m, writer.axi, wiring.flipped(self.axi))
        m.d.comb += [self.error.eq(writer.error), self.error_addr.eq(writer.error_addr),
                     writer.error_clear.eq(self.clear), heap.clear.eq(self.clear)]

        # -- arrival queue -----------------------------------------------------------------------
        m.submodules.queue = queue = Memory(shape=KW, depth=self.max_k, init=[])
        qw, qr = queue.write_port(), queue.read_port(transparent_for=())
        wi = Signal(range(self.max_k + 1))  # entries arrived
        pj = Signal(range(self.max_k + 1))  # entries pushed (or being pushed)
        logit = self.inp.payload.logit.as_unsigned()
        # larger logit -> smaller key (offset binary inverted); lower row -> smaller key
        m.d.comb += [qw.addr.eq(wi), qw.en.eq(self.inp.valid),
                     qw.data.eq(Cat(self.inp.payload.row, ~logit[:LOGIT_BITS - 1], logit[LOGIT_BITS - 1]))]
        with m.If(self.inp.valid):
            m.d.sync += wi.eq(wi + 1)

        pushing = Signal()  # the queue word read last cycle goes into the heap now
        m.d.sync += pushing.eq(0)
        m.d.comb += [qr.addr.eq(pj), heap.entry.key.eq(qr.data), heap.push.eq(pushing)]
        with m.If(~pushing & ~heap.busy & (pj != wi)):
            m.d.sync += [pushing.eq(1), pj.eq(pj + 1)]
        m.d.sync += self.pushed.eq(~pushing & ~heap.busy & (pj == self.count))

        # -- pops into the write stream ----------------------------------------------------------
        key = heap.top.key
        top_entry = Cat(key[:RW], Const(0, 32 - RW), ~key[RW:KW - 1], key[KW - 1])  # {u32 row, i32 logit}
        lo = Signal(64)
        half = Signal()  # lo holds an entry
        wv = writer.data.valid
        full_strb = (1 << BEAT_BYTES) - 1
        with m.If(wv & writer.data.ready):
            m.d.sync += wv.eq(0)
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.go):
                    m.d.sync += half.eq(0)
                    m.next = "CMD"
            with m.State("CMD"):
                m.d.comb += [writer.cmd.valid.eq(1), writer.cmd.payload.addr.eq(self.addr),
                             writer.cmd.payload.beats.eq((self.count + 1) >> 1)]
                with m.If(writer.cmd.ready):
                    m.next = "POP"
            with m.State("POP"):
                with m.If(~heap.busy & ~wv):
                    with m.If(~heap.empty):
                        m.d.comb += heap.pop.eq(1)
                        with m.If(half):
                            m.d.sync += [writer.data.payload.data.eq(Cat(lo, top_entry)),
                                         writer.data.payload.strb.eq(full_strb), wv.eq(1), half.eq(0)]
                        with m.Else():
                            m.d.sync += [lo.eq(top_entry), half.eq(1)]
                    with m.Elif(half):  # an odd count: the last entry alone, high half not written
                        m.d.sync += [writer.data.payload.data.eq(lo),
                                     writer.data.payload.strb.eq((1 << (BEAT_BYTES // 2)) - 1), wv.eq(1),
                                     half.eq(0)]
                    with m.Else():
                        m.next = "ACK"
            with m.State("ACK"):  # the last beat went at least a cycle ago, so idle is current
                with m.If(writer.idle):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        with m.If(self.clear):
            m.d.sync += [wi.eq(0), pj.eq(0), pushing.eq(0), self.pushed.eq(0)]
        return m
