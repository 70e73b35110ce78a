"""On-chip copy of one KV head's K and V scales (pf words, 4 per 16-byte beat), for the passes of
every chunk of that KV head.

``start`` takes the geometry of two streams that follow each other on ``beat``: the K scales, then the
V scales, each a run of ``*_beats`` beats from a beat-aligned address, where key 0 is word ``*_offset``
(0..3) of the first beat (a scale array need not start on a 16-byte boundary). Row ``r`` of each buffer
holds the scales of keys ``4 r .. 4 r + 3`` (word ``j % 4`` is key ``j``): with an offset the row is
put together from two beats (a 4:1 word rotation). ``rows`` rows are written per stream, one per beat
(the last, with an offset, after the stream); ``done`` pulses when both are in.

Read (both buffers at once): ``raddr`` in cycle N, ``rk`` / ``rv`` in cycle N + 1.
Size: ``ceil(max_ctx / 4)`` rows of 128 bits per buffer (block RAM).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


class ScaleBuffer(wiring.Component):
    def __init__(self, max_ctx: int):
        if max_ctx < 1:
            raise ValueError(f"ScaleBuffer max_ctx {max_ctx} must be >= 1")
        self.max_ctx = max_ctx
        self.rows = -(-max_ctx // 4)
        super().__init__({
            "start": In(1),
            "n_rows": In(range(self.rows + 1)),
            "k_offset": In(2),
            "k_beats": In(range(self.rows + 2)),
            "v_offset": In(2),
            "v_beats": In(range(self.rows + 2)),
            "beat": In(stream.Signature(128)),
            "done": Out(1),
            "raddr": In(range(max(self.rows, 2))),
            "rk": Out(128),
            "rv": Out(128),
        })

    def elaborate(self, platform):
        m = Module()
        depth = max(self.rows, 2)
        m.submodules.kmem = kmem = Memory(shape=128, depth=depth, init=[])
        m.submodules.vmem = vmem = Memory(shape=128, depth=depth, init=[])
        kw, vw = kmem.write_port(), vmem.write_port()
        kr, vr = kmem.read_port(transparent_for=()), vmem.read_port(transparent_for=())
        m.d.comb += [kr.addr.eq(self.raddr), vr.addr.eq(self.raddr), self.rk.eq(kr.data), self.rv.eq(vr.data)]

        n_rows = Signal.like(self.n_rows)
        v_offset, v_beats = Signal(2), Signal.like(self.v_beats)
        kind_v = Signal()  # 0: the K stream, 1: the V stream
        offset = Signal(2)
        left = Signal.like(self.k_beats)  # beats of the current stream still to take
        row = Signal.like(self.n_rows)  # next row to write
        first = Signal()  # the next beat is the stream's first
        prev = Signal(128)
        active = Signal()

        cur = self.beat.payload
        wdata = Signal(128)
        with m.Switch(offset):
            with m.Case(0):
                m.d.comb += wdata.eq(cur)
            for o in (1, 2, 3):
                with m.Case(o):
                    m.d.comb += wdata.eq(Cat(prev[32 * o:], cur[:32 * o]))
        take = Signal()
        write = Signal()
        more = Signal()  # left != 0, as a register: beat.ready drives the reader FIFO's read enable
        m.d.comb += [
            self.beat.ready.eq(active & more),
            take.eq(self.beat.valid & self.beat.ready),
            kw.addr.eq(row), vw.addr.eq(row), kw.data.eq(wdata), vw.data.eq(wdata),
            kw.en.eq(write & ~kind_v), vw.en.eq(write & kind_v),
        ]
        m.d.sync += self.done.eq(0)

        def next_stream():
            with m.If(kind_v):
                m.d.sync += [active.eq(0), self.done.eq(1)]
            with m.Else():
                m.d.sync += [kind_v.eq(1), offset.eq(v_offset), left.eq(v_beats), more.eq(v_beats != 0), row.eq(0),
                             first.eq(1)]

        with m.If(self.start):
            m.d.sync += [active.eq(1), kind_v.eq(0), n_rows.eq(self.n_rows), offset.eq(self.k_offset),
                         left.eq(self.k_beats), more.eq(self.k_beats != 0), v_offset.eq(self.v_offset),
                         v_beats.eq(self.v_beats),
                         row.eq(0), first.eq(1)]
        with m.Elif(take):
            # without an offset beat n is row n; with one, beat n completes row n - 1
            m.d.comb += write.eq((row < n_rows) & ((offset == 0) | ~first))
            m.d.sync += [prev.eq(cur), first.eq(0), left.eq(left - 1), more.eq(left != 1)]
            with m.If(write):
                m.d.sync += row.eq(row + 1)
        with m.Elif(active & ~more):
            # the stream is in: with an offset, the last row may still wait in prev
            with m.If((offset != 0) & (row < n_rows)):
                m.d.comb += write.eq(1)
                m.d.sync += row.eq(row + 1)
            with m.Else():
                next_stream()
        return m
