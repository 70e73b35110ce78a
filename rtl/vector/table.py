"""DDR table reader: streams the little-endian elements of byte regions at any byte address, one
element per cycle (the bias vector, RoPE cos/sin rows).

A request ``(addr, count)`` names ``count`` elements of ``elem_bytes`` from absolute byte address
``addr`` (no alignment needed). It becomes one :class:`~ternfpga.rtl.axi.AxiReader` command for the
enclosing beats, and its ``(addr mod 16, count)`` goes into a small FIFO for the unpacker, so requests
queue back to back and the stream does not pause between them beyond one cycle per region.

Unpacker: a two-beat window (``cur``, ``nxt``) and a byte position in ``cur``; an element is the bytes
at the position (reaching into ``nxt`` when it crosses the beat boundary: a 16:1 mux per output bit).
A region's last element drops its beat(s), so a region's unused tail bytes never reach the next one.

Latency: a request at edge N issues its command at edge N+1; an element leaves ``elem`` two cycles
after its last beat leaves the reader. Throughput: one element per cycle (a beat lasts 16 /
``elem_bytes`` cycles) plus one bubble per region. ``elem`` is a registered stream with back-pressure.
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..axi import AxiReader, AxiReadSignature

BEAT_BYTES = 16


def req_layout(addr_width: int, count_width: int) -> data.StructLayout:
    return data.StructLayout({"addr": addr_width, "count": count_width})


class TableStream(wiring.Component):
    """Streams the elements of the requested regions in order (see the module docstring).

    ``error`` / ``error_addr`` are the reader's (sticky, the first failing burst's address), cleared by
    ``error_clear``; an errored beat is still unpacked, so every request completes. ``busy`` (a register):
    in the previous cycle a request was offered, queued, in flight or being unpacked -- so a request
    offered in cycle N keeps it high from N+1 until its last element has gone. ``count == 0`` requests
    are accepted and dropped.
    """

    def __init__(self, *, elem_bytes: int, addr_width: int = 40, count_width: int = 16, max_burst: int = 16,
                 fifo_depth: int = 64, max_outstanding: int = 4, queue_depth: int = 4):
        if elem_bytes not in (1, 2, 4, 8):
            raise ValueError(f"elem_bytes {elem_bytes} must be 1, 2, 4 or 8")
        if count_width < 1:
            raise ValueError(f"count_width {count_width} must be >= 1")
        if queue_depth < 2:
            raise ValueError(f"queue_depth {queue_depth} must be >= 2")
        self.elem_bytes, self.addr_width, self.count_width = elem_bytes, addr_width, count_width
        self.queue_depth = queue_depth
        # beats of one region: (addr mod 16 + count * elem_bytes + 15) / 16
        self.len_width = count_width + exact_log2(elem_bytes) + 1
        self.reader = AxiReader(addr_width=addr_width, data_width=8 * BEAT_BYTES, len_width=self.len_width,
                                max_burst=max_burst, fifo_depth=fifo_depth, max_outstanding=max_outstanding)
        super().__init__({
            "req": In(stream.Signature(req_layout(addr_width, count_width))),
            "elem": Out(stream.Signature(8 * elem_bytes)),
            "axi": Out(AxiReadSignature(addr_width, 8 * BEAT_BYTES)),
            "error": Out(1),
            "error_addr": Out(addr_width),
            "error_clear": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        W = self.elem_bytes
        m.submodules.reader = rd = self.reader
        wiring.connect(m, rd.axi, wiring.flipped(self.axi))
        m.d.comb += [self.error.eq(rd.error), self.error_addr.eq(rd.error_addr),
                     rd.error_clear.eq(self.error_clear)]

        # Request -> reader command (registered) + (offset, count) for the unpacker.
        meta_layout = data.StructLayout({"offset": 4, "count": self.count_width})
        m.submodules.meta = meta = SyncFIFOBuffered(width=meta_layout.size, depth=self.queue_depth)
        cmd_valid = Signal()
        req = self.req.payload
        offset = req.addr[:4]
        beats = (offset + (req.count << exact_log2(W)) + BEAT_BYTES - 1) >> 4
        m.d.comb += [
            self.req.ready.eq((~cmd_valid | rd.cmd.ready) & meta.w_rdy),
            rd.cmd.valid.eq(cmd_valid),
            meta.w_data.eq(Cat(offset, req.count)),
        ]
        take = self.req.valid & self.req.ready
        nonempty = req.count != 0
        m.d.comb += meta.w_en.eq(take & nonempty)
        with m.If(take & nonempty):
            m.d.sync += [cmd_valid.eq(1), rd.cmd.payload.addr.eq(req.addr), rd.cmd.payload.beats.eq(beats)]
        with m.Elif(rd.cmd.ready):
            m.d.sync += cmd_valid.eq(0)

        # Unpacker: region state, beat window (``fill`` beats of cur, nxt held), byte position.
        active = Signal()
        pos = Signal(4)
        left = Signal(self.count_width)
        last = Signal()  # the next element is the region's last
        fill = Signal(range(3))
        cur = Signal(8 * BEAT_BYTES)
        nxt = Signal(8 * BEAT_BYTES)
        m_out = meta_layout(meta.r_data)
        m.d.comb += meta.r_en.eq(~active)
        with m.If(~active & meta.r_rdy):
            m.d.sync += [active.eq(1), pos.eq(m_out.offset), left.eq(m_out.count), last.eq(m_out.count == 1)]

        window = Cat(cur, nxt)
        cross = pos > BEAT_BYTES - W  # the element at pos reaches into nxt
        ends_beat = pos >= BEAT_BYTES - W  # ... or ends exactly at cur's end
        advance = ~self.elem.valid | self.elem.ready
        produce = Signal()
        m.d.comb += produce.eq(active & advance & (fill != 0) & (~cross | (fill == 2)))
        with m.If(produce):
            m.d.sync += [
                self.elem.payload.eq(Array(window[8 * j:8 * (j + W)] for j in range(BEAT_BYTES))[pos]),
                self.elem.valid.eq(1),
                pos.eq(pos + W),
                left.eq(left - 1),
                last.eq(left == 2),
            ]
            with m.If(last):
                m.d.sync += active.eq(0)
        with m.Elif(self.elem.ready):
            m.d.sync += self.elem.valid.eq(0)

        # Beats dropped from the window: the element's beat when it ends at or past cur's end, both when
        # the region's last element crosses into nxt (its tail bytes are padding).
        pop = Signal(range(3))
        with m.If(produce):
            with m.If(last & cross):
                m.d.comb += pop.eq(2)
            with m.Elif(last | ends_beat):
                m.d.comb += pop.eq(1)
        push = Signal()
        m.d.comb += [rd.data.ready.eq(fill != 2), push.eq(rd.data.valid & (fill != 2))]
        kept = fill - pop  # beats left in the window before the push
        with m.If((pop == 1) & (fill == 2)):
            m.d.sync += cur.eq(nxt)
        with m.If(push):
            with m.If(kept == 0):
                m.d.sync += cur.eq(rd.data.payload)
            with m.Else():
                m.d.sync += nxt.eq(rd.data.payload)
        m.d.sync += fill.eq(kept + push)

        # registered, exact on the way up: a request offered in cycle N makes busy high from N+1
        m.d.sync += self.busy.eq(self.req.valid | cmd_valid | (meta.level != 0) | active | (fill != 0)
                                 | self.elem.valid | rd.busy)
        return m
