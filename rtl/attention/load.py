"""The LOAD step of a chunk: each lane's query (``d`` int8 in the low bytes of VMEM words) into the QK
array's query store, and its logit scale ``SqC = mul(S_q, C)``.

A job (``job_*``: lane, token lane ``t`` of the VMEM row, the query's and its scale's VMEM addresses)
reads the scale word, then the ``d = 16 nb`` elements, one VMEM read per cycle (``d + 1`` cycles). The
elements gather into 16-byte beats that go to ``q_*`` (beat ``b`` holds elements ``16 b .. 16 b + 15``);
the scale goes through a ``PfMul`` into ``sqc[lane]``. The next job is taken as soon as this one's
reads are issued; ``idle``: no job in progress, every write done.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..control.isa import PF_LAYOUT
from ..pf import PfMul
from ..vmem import WORD_BITS, VmemReadSignature
from .common import BEAT_BYTES, delay


class QueryLoad(wiring.Component):
    def __init__(self, *, lanes: int, batch: int, vmem_depth: int, max_beats: int):
        if min(lanes, batch, vmem_depth, max_beats) < 1:
            raise ValueError("QueryLoad needs lanes, batch, vmem_depth and max_beats >= 1")
        self.lanes, self.batch, self.vmem_depth, self.max_beats = lanes, batch, vmem_depth, max_beats
        self._mul = PfMul()
        super().__init__({
            "vr": Out(VmemReadSignature(batch, vmem_depth)),
            "nb": In(range(max_beats + 1)),
            "c": In(PF_LAYOUT),
            "job_valid": In(1),
            "job_ready": Out(1),
            "job_lane": In(range(max(lanes, 2))),
            "job_t": In(range(max(batch, 2))),
            "job_q": In(range(max(vmem_depth, 2))),
            "job_s": In(range(max(vmem_depth, 2))),
            "q_we": Out(1),
            "q_lane": Out(range(max(lanes, 2))),
            "q_beat": Out(range(max(max_beats, 2))),
            "q_data": Out(8 * BEAT_BYTES),
            "sqc": Out(data.ArrayLayout(PF_LAYOUT, lanes)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        B = self.batch
        m.submodules.mul = mul = self._mul

        # -- reads: the scale, then d elements ------------------------------------------------------------
        left = Signal(range(self.max_beats * BEAT_BYTES + 2))  # reads still to issue
        addr = Signal.like(self.vr.addr)
        scale_next = Signal()  # the next read is the scale
        q_addr = Signal.like(self.job_q)
        lane = Signal.like(self.job_lane)
        t = Signal.like(self.job_t)
        # job_ready and idle are registers: they feed the planner's lane bookkeeping
        ready = Signal(init=1)
        accept = Signal()
        m.d.comb += [self.job_ready.eq(ready), self.vr.en.eq(left != 0), self.vr.addr.eq(addr),
                     accept.eq(self.job_valid & ready)]
        with m.If(accept):
            m.d.sync += ready.eq(0)
        with m.Elif(left == 1):
            m.d.sync += ready.eq(1)
        with m.If(accept):
            m.d.sync += [left.eq((self.nb << 4) + 1), addr.eq(self.job_s), q_addr.eq(self.job_q),
                         scale_next.eq(1), lane.eq(self.job_lane), t.eq(self.job_t)]
        with m.Elif(left != 0):
            m.d.sync += [left.eq(left - 1), scale_next.eq(0)]
            with m.If(scale_next):
                m.d.sync += addr.eq(q_addr)
            with m.Else():
                m.d.sync += addr.eq(addr + 1)

        # -- the word of lane t, one cycle after its read ----------------------------------------------
        got, got_scale = Signal(), Signal()
        got_lane, got_t = Signal.like(lane), Signal.like(t)
        m.d.sync += [got.eq(self.vr.en), got_scale.eq(scale_next), got_lane.eq(lane), got_t.eq(t)]
        word = Signal(WORD_BITS)
        m.d.comb += word.eq(self.vr.data.word_select(got_t, WORD_BITS) if B > 1 else self.vr.data)
        w2 = Signal(WORD_BITS)
        v2, s2 = Signal(), Signal()
        lane2 = Signal.like(lane)
        m.d.sync += [w2.eq(word), v2.eq(got), s2.eq(got_scale), lane2.eq(got_lane)]

        # scale: S_q x C, into the lane's register
        m.d.comb += [mul.a.eq(w2), mul.b.eq(self.c)]
        s_done = delay(m, v2 & s2, PfMul.latency, "s_done")
        s_lane = delay(m, lane2, PfMul.latency, "s_lane")
        for i in range(self.lanes):
            with m.If(s_done & (s_lane == i)):
                m.d.sync += self.sqc[i].eq(mul.o)

        # elements: bytes shift in from the top, so element 16 b + i ends in byte i
        beat = Signal(8 * BEAT_BYTES)
        nbyte = Signal(4)
        nbeat = Signal.like(self.q_beat)
        shifted = Cat(beat[8:], w2[:8])
        take = v2 & ~s2
        m.d.comb += [self.q_we.eq(take & (nbyte == BEAT_BYTES - 1)), self.q_lane.eq(lane2),
                     self.q_beat.eq(nbeat), self.q_data.eq(shifted)]
        with m.If(v2 & s2):
            m.d.sync += [nbyte.eq(0), nbeat.eq(0)]
        with m.Elif(take):
            m.d.sync += [beat.eq(shifted), nbyte.eq(nbyte + 1)]
            with m.If(nbyte == BEAT_BYTES - 1):
                m.d.sync += nbeat.eq(nbeat + 1)

        busy = Signal(range(PfMul.latency + 4))
        with m.If((left != 0) | got | v2):
            m.d.sync += busy.eq(PfMul.latency + 2)
        with m.Elif(busy != 0):
            m.d.sync += busy.eq(busy - 1)
        m.d.sync += self.idle.eq(~accept & (left == 0) & ~got & ~v2 & (busy == 0))
        return m
