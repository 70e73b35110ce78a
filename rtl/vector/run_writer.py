"""VMEM -> DDR run writer: copies runs of VMEM words of one token lane to DDR byte regions, packed into
16-byte beats (the KV cache rows and scales, STORE's rows).

A run ``(vaddr, count, addr, wide, lane)`` writes the words ``vaddr .. vaddr + count - 1`` of lane
``lane`` to consecutive bytes from absolute DDR address ``addr``: the low byte of each word
(``wide = 0``), or all four little-endian (``wide = 1``; ``addr`` must then be 4-byte aligned). It
becomes one :class:`~ternfpga.rtl.axi.AxiWriter` command for the enclosing beats; the first and last
beats carry only the strobes of the run's bytes, so nothing around the region changes.

Path: read issue (credit-checked against a small word FIFO, since VMEM read data is valid for one
cycle only) -> lane pick -> word FIFO -> packer (byte position in the beat; a beat leaves when full or at
the run's end) -> output register -> AxiWriter. Throughput: one word per cycle, no pause between runs
(a run's command is queued when it is accepted). Latency: a run accepted at edge N reads at edge N+1;
its last beat reaches the writer about 5 cycles after its last read.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..axi.reader import cmd_layout
from ..axi.signature import AxiWriteSignature
from ..axi.writer import AxiWriter
from ..vmem import VmemReadSignature
from .common import pick_lane

BEAT_BYTES = 16
WORD_FIFO_DEPTH = 8


def run_layout(lanes: int, depth: int, count_width: int, addr_width: int) -> data.StructLayout:
    return data.StructLayout({"vaddr": range(max(depth, 2)), "count": count_width, "addr": addr_width,
                              "wide": 1, "lane": range(max(lanes, 2))})


class RunWriter(wiring.Component):
    """See the module docstring. ``count == 0`` runs are accepted and dropped.

    ``error`` / ``error_addr``: the writer's (sticky; the first failing burst), cleared by
    ``error_clear``. ``idle``: no run in progress, nothing buffered, every burst answered. ``blocked``:
    a read is due but the path to DDR is full (write back-pressure).
    """

    def __init__(self, *, lanes: int, depth: int, count_width: int, addr_width: int = 40, max_burst: int = 16,
                 fifo_depth: int = 64, max_outstanding: int = 8):
        if count_width < 1:
            raise ValueError(f"count_width {count_width} must be >= 1")
        self.lanes, self.depth, self.count_width, self.addr_width = lanes, depth, count_width, addr_width
        self.writer = AxiWriter(addr_width=addr_width, data_width=8 * BEAT_BYTES, len_width=count_width + 2,
                                max_burst=max_burst, fifo_depth=fifo_depth, max_outstanding=max_outstanding)
        super().__init__({
            "run": In(stream.Signature(run_layout(lanes, depth, count_width, addr_width))),
            "vr": Out(VmemReadSignature(lanes, depth)),
            "axi": Out(AxiWriteSignature(addr_width, 8 * BEAT_BYTES)),
            "error": Out(1),
            "error_addr": Out(addr_width),
            "error_clear": In(1),
            "idle": Out(1),
            "blocked": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.writer = wr = self.writer
        wiring.connect(m, wr.axi, wiring.flipped(self.axi))
        m.d.comb += [self.error.eq(wr.error), self.error_addr.eq(wr.error_addr), wr.error_clear.eq(self.error_clear)]

        # -- runs: a command per run into a small FIFO, the read counters loaded -----------------------
        cl = cmd_layout(self.addr_width, self.count_width + 2)
        m.submodules.cmds = cmds = SyncFIFOBuffered(width=cl.size, depth=4)
        m.d.comb += [wr.cmd.valid.eq(cmds.r_rdy), wr.cmd.payload.eq(cmds.r_data), cmds.r_en.eq(wr.cmd.ready)]

        reading = Signal()
        vaddr = Signal.like(self.vr.addr)
        left = Signal(self.count_width)
        last = Signal()
        first = Signal()
        wide = Signal()
        lane = Signal(range(max(self.lanes, 2)))
        offset = Signal(4)
        pending = Signal(range(WORD_FIFO_DEPTH + 1))  # words read and not yet taken by the packer
        issue = Signal()
        m.d.comb += issue.eq(reading & (pending != WORD_FIFO_DEPTH))

        run = self.run.payload
        beats = Signal(self.count_width + 2)  # (addr mod 16 + bytes + 15) / 16
        m.d.comb += [
            beats.eq((run.addr[:4] + Mux(run.wide, run.count << 2, run.count) + BEAT_BYTES - 1) >> 4),
            self.run.ready.eq((~reading | (issue & last)) & cmds.w_rdy),
            cmds.w_data.eq(Cat(run.addr, beats)),
        ]
        accept = self.run.valid & self.run.ready & (run.count != 0)
        m.d.comb += cmds.w_en.eq(accept)
        with m.If(accept):
            m.d.sync += [reading.eq(1), vaddr.eq(run.vaddr), left.eq(run.count), last.eq(run.count == 1),
                         first.eq(1), wide.eq(run.wide), lane.eq(run.lane), offset.eq(run.addr[:4])]
        with m.Elif(issue):
            m.d.sync += [vaddr.eq(vaddr + 1), left.eq(left - 1), last.eq(left == 2), first.eq(0)]
            with m.If(last):
                m.d.sync += reading.eq(0)
        m.d.comb += [self.vr.addr.eq(vaddr), self.vr.en.eq(issue)]

        # -- s1: the lane's word -> word FIFO ---------------------------------------------------------
        wl = data.StructLayout({"word": 32, "first": 1, "offset": 4, "wide": 1, "last": 1})
        m.submodules.words = words = SyncFIFOBuffered(width=wl.size, depth=WORD_FIFO_DEPTH)
        v1 = Signal()
        tag1 = Signal(wl)
        lane1 = Signal.like(lane)
        m.d.sync += [v1.eq(issue), lane1.eq(lane), tag1.first.eq(first), tag1.offset.eq(offset),
                     tag1.wide.eq(wide), tag1.last.eq(last)]
        w_in = Signal(wl)
        m.d.comb += [w_in.eq(tag1), w_in.word.eq(pick_lane(self.vr.data, lane1, self.lanes)),
                     words.w_data.eq(w_in), words.w_en.eq(v1)]

        # -- packer -------------------------------------------------------------------------------------
        out = wr.data
        acc = Signal(8 * BEAT_BYTES)
        strb = Signal(BEAT_BYTES)
        pos = Signal(4)
        w = wl(words.r_data)
        advance = ~out.valid | out.ready
        pop = Signal()
        m.d.comb += [pop.eq(words.r_rdy & advance), words.r_en.eq(advance)]
        m.d.sync += pending.eq(pending + issue - pop)
        p = Mux(w.first, w.offset, pos)
        merged = Signal(8 * BEAT_BYTES)
        merged_strb = Signal(BEAT_BYTES)
        for j in range(BEAT_BYTES):
            here = Mux(w.wide, p[2:] == j >> 2, p == j)
            byte = Mux(w.wide, w.word[8 * (j & 3):8 * (j & 3) + 8], w.word[:8])
            m.d.comb += [merged[8 * j:8 * j + 8].eq(Mux(here, byte, acc[8 * j:8 * j + 8])),
                         merged_strb[j].eq(here | strb[j])]
        end = Mux(w.wide, p + 4, p + 1)
        full = end[4]
        with m.If(pop):
            m.d.sync += pos.eq(end[:4])
            with m.If(w.last | full):
                m.d.sync += [out.valid.eq(1), out.payload.data.eq(merged), out.payload.strb.eq(merged_strb),
                             strb.eq(0)]
            with m.Else():
                m.d.sync += [acc.eq(merged), strb.eq(merged_strb)]
                with m.If(out.ready):
                    m.d.sync += out.valid.eq(0)
        with m.Elif(out.ready):
            m.d.sync += out.valid.eq(0)

        m.d.comb += [
            self.idle.eq(~reading & (pending == 0) & ~out.valid & (cmds.level == 0) & wr.idle),
            self.blocked.eq(reading & ~issue),
        ]
        return m
