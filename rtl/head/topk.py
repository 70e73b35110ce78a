"""Streaming top-K selector: keeps the ``k`` best ``{row, value}`` of a stream by (value descending, row
ascending), i.e. ``sim/golden/head.py`` ``top_k_indices`` (ties to the lower row id).

The rows go into a :class:`~.heap.Heap` under the key ``{value offset-binary, ~row}`` (a larger key is
better), so the heap root is the worst row kept. Path of a row: input FIFO (absorbs bursts) -> stage B
(one candidate, with registered compares against the root) -> dropped, or pushed / replaced into the
heap.

- While fewer than ``k`` rows are held, every row is pushed (one heap push at a time).
- Then a row that does not beat the root is dropped, one per cycle, while the heap works too: the root
  only grows once ``k`` rows are held, so a compare against an older root is still a safe "drop".
- A row that beats the root replaces it, but only on a compare made while the heap was idle (so the
  root it beat is the current one); a row waits in stage B while the heap is busy, then is compared
  again (one bubble cycle after each heap operation).

Throughput: one row per cycle while rows are dropped; a replacement costs the heap's replace_top
(at most ``2 * floor(log2(max_k)) + 1`` cycles) plus 2, a push (filling) the heap's push plus 1. On
random scores almost every row after the first few thousand is dropped: ~1 row per cycle overall
(simulated, max_k = k = 256: 151,936 random rows in 162,607 cycles; ascending scores ~16 cycles a row).

``clear`` (a pulse, with ``k`` in 1..max_k; 0 reads as 1, larger as max_k) starts a new selection;
assert it only while ``idle``. Rows accepted in or after that cycle belong to the new selection; rows
must be unique within a selection. ``idle``: every accepted row handled and no heap operation running;
then ``count`` rows are held (min(k, rows seen)) and ``rd_addr`` (0..count-1) -> ``rd_data`` one
cycle later reads them, unordered.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .heap import Heap


def row_layout(row_width: int, value_width: int) -> data.StructLayout:
    return data.StructLayout({"row": row_width, "value": signed(value_width)})


class TopK(wiring.Component):
    """Keeps the ``k <= max_k`` best rows of a stream (see the module docstring)."""

    def __init__(self, max_k: int, row_width: int, value_width: int, fifo_depth: int = 16):
        if max_k < 1:
            raise ValueError(f"top-k max_k {max_k} must be >= 1")
        if row_width < 1:
            raise ValueError(f"top-k row_width {row_width} must be >= 1")
        if value_width < 2:
            raise ValueError(f"top-k value_width {value_width} must be >= 2 (signed)")
        if fifo_depth < 2:
            raise ValueError(f"top-k fifo_depth {fifo_depth} must be >= 2")
        self.max_k, self.row_width, self.value_width, self.fifo_depth = max_k, row_width, value_width, fifo_depth
        self.key_width = row_width + value_width
        layout = row_layout(row_width, value_width)
        super().__init__({
            "clear": In(1),
            "k": In(range(max_k + 1)),
            "inp": In(stream.Signature(layout)),
            "idle": Out(1),
            "count": Out(range(max_k + 1)),
            "rd_addr": In(range(max(max_k, 2))),
            "rd_data": Out(layout),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        RW, VW, KW = self.row_width, self.value_width, self.key_width
        m.submodules.heap = heap = Heap(self.max_k, KW)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=KW, depth=self.fifo_depth)

        # key {value offset-binary, ~row}: unsigned order = (value ascending, row descending)
        value = self.inp.payload.value.as_unsigned()
        m.d.comb += [
            fifo.w_data.eq(Cat(~self.inp.payload.row, value[:VW - 1], ~value[VW - 1])),
            fifo.w_en.eq(self.inp.valid),
            self.inp.ready.eq(fifo.w_rdy),
        ]
        rkey = heap.rd_data.key
        m.d.comb += [
            heap.rd_addr.eq(self.rd_addr),
            self.rd_data.row.eq(~rkey[:RW]),
            self.rd_data.value.eq(Cat(rkey[RW:KW - 1], ~rkey[KW - 1])),
            self.count.eq(heap.count),
        ]

        left = Signal(range(self.max_k + 1))  # pushes still to make before k rows are held
        full_k = Signal()  # k rows held or being pushed
        steady = Signal()  # k rows held and the heap settled: the root only grows from here on
        b_valid = Signal()
        b_key = Signal(KW)
        b_gt = Signal()  # b_key > the root, compared last cycle
        b_fresh = Signal()  # ... while the heap was idle and no operation started: the root is current
        b_safe = Signal()  # ... while steady: a "not greater" is final
        gt_a = Signal()
        gt_b = Signal()
        m.d.comb += [gt_a.eq(fifo.r_data > heap.top.key), gt_b.eq(b_key > heap.top.key)]

        push = Signal()
        replace = Signal()
        drop = Signal()
        move = Signal()  # stage B takes the FIFO's head (if any)
        m.d.comb += [
            push.eq(b_valid & ~full_k & ~heap.busy),
            replace.eq(b_valid & b_fresh & b_gt & full_k),  # fresh: the heap was idle and still is
            drop.eq(b_valid & b_safe & ~b_gt),
            move.eq(~b_valid | push | replace | drop),
            fifo.r_en.eq(move),
            heap.push.eq(push),
            heap.replace_top.eq(replace),
            heap.entry.key.eq(b_key),
            heap.clear.eq(self.clear),
            self.idle.eq(~b_valid & (fifo.r_level == 0) & ~heap.busy),
        ]
        with m.If(move):
            m.d.sync += [b_valid.eq(fifo.r_rdy), b_key.eq(fifo.r_data), b_gt.eq(gt_a)]
        with m.Else():
            m.d.sync += b_gt.eq(gt_b)
        m.d.sync += [b_fresh.eq(~heap.busy & ~push & ~replace), b_safe.eq(steady)]
        with m.If(push):
            m.d.sync += [left.eq(left - 1), full_k.eq(left == 1)]
        with m.If(full_k & ~heap.busy):
            m.d.sync += steady.eq(1)

        with m.If(self.clear):
            k = self.k
            m.d.sync += [b_valid.eq(0), full_k.eq(0), steady.eq(0),
                         left.eq(Mux(k == 0, 1, Mux(k > self.max_k, self.max_k, k)))]
        return m
