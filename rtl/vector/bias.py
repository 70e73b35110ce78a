"""BIAS op unit: ``dst[i] = sat32(src[i] + b[i])`` for ``i < n`` and every token lane of the op, ``b``
the int32 vector at DDR ``addr0`` (sim/isa_model.py ``op_bias``).

The bias is re-read from DDR for every token instead of being held on chip: one request per token
goes to the table reader up front, so the element stream runs on across tokens without a pause, and
the extra traffic (``4 n`` bytes per token: ~3.5 KiB for Qwen2.5-0.5B's q bias) is noise beside the
weight stream, while a ``max_q_dim``-word buffer would cost 4 BRAM36 at the default maxima.

Pipeline per element (no stalls once the element is there): VMEM read of ``src + i`` with the bias
element -> lane pick -> add and saturate -> VMEM write of ``dst + i`` in lane ``t``. One element per
cycle; ``start`` to the first DDR request: 2 cycles. ``dst`` must equal ``src`` or not overlap
``src + 1 .. src + n - 1`` (each word is written after it and every earlier one is read).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from ..accel_params import AccelParams
from ..axi import AxiReadSignature
from ..control.isa import ErrorCode, Flag
from ..control.unit import unit_members
from ..vmem import VmemReadSignature, VmemWriteSignature
from .common import TokenCursor, pick_lane, replicate, sat32
from .table import TableStream


class BiasOp(wiring.Component):
    def __init__(self, params: AccelParams):
        self.p = params
        B, depth, aw = params.batch, params.vmem_words, params.addr_width
        self.count_width = len(Signal(range(depth + 1)))  # n beyond the VMEM depth is not a valid op
        self.table = TableStream(elem_bytes=4, addr_width=aw, count_width=self.count_width)
        super().__init__({
            **unit_members(aw),
            "vr": Out(VmemReadSignature(B, depth)),
            "vw": Out(VmemWriteSignature(B, depth)),
            "axi": Out(AxiReadSignature(aw, 128)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        B = self.p.batch
        desc, ctx = self.desc, self.ctx
        m.submodules.table = tab = self.table
        wiring.connect(m, tab.axi, wiring.flipped(self.axi))
        n = desc.n[:self.count_width]

        running = Signal()  # between start and done
        load = Signal()
        m.d.comb += load.eq(self.start & ~self.busy)

        # Requests: the same region once per token.
        reqs = Signal(range(B + 1))
        m.d.comb += [tab.req.valid.eq(reqs != 0), tab.req.payload.count.eq(n)]
        with m.If(load):
            m.d.sync += tab.req.payload.addr.eq(ctx.ddr_base + desc.addr0)
        m.d.comb += tab.error_clear.eq(load)

        # Element loop: index i (down-counter ``left``), token lane t.
        tok = TokenCursor(B)
        feeding = Signal()  # elements still to take
        left = Signal(self.count_width)
        last_i = Signal()
        rd_addr = Signal.like(self.vr.addr)
        wr_addr = Signal.like(self.vw.addr)
        take = Signal()
        m.d.comb += [take.eq(feeding & tab.elem.valid), tab.elem.ready.eq(feeding)]
        tok.elaborate(m, load=load, step=take & last_i, desc=desc, ctx=ctx)
        only_last = (desc.flags & Flag.LAST_TOKEN) != 0
        with m.If(load):
            m.d.sync += [reqs.eq(Mux(n == 0, 0, Mux(only_last, 1, ctx.T))), feeding.eq(n != 0), left.eq(n),
                         last_i.eq(n == 1), rd_addr.eq(desc.src), wr_addr.eq(desc.dst)]
        with m.Elif(tab.req.ready & (reqs != 0)):
            m.d.sync += reqs.eq(reqs - 1)
        with m.If(take):
            with m.If(last_i):
                m.d.sync += [left.eq(n), last_i.eq(n == 1), rd_addr.eq(desc.src), wr_addr.eq(desc.dst)]
                with m.If(tok.last):
                    m.d.sync += feeding.eq(0)
            with m.Else():
                m.d.sync += [left.eq(left - 1), last_i.eq(left == 2), rd_addr.eq(rd_addr + 1),
                             wr_addr.eq(wr_addr + 1)]
        m.d.comb += [self.vr.addr.eq(rd_addr), self.vr.en.eq(take)]

        # s1: the read row arrives; s2: add; then the registered write port.
        v1, v2 = Signal(), Signal()
        b1 = Signal(32)
        a1, a2 = Signal.like(wr_addr), Signal.like(wr_addr)
        lane1 = Signal.like(tok.t)
        mask1, mask2 = Signal(B), Signal(B)
        x2, b2 = Signal(signed(32)), Signal(signed(32))
        m.d.sync += [
            v1.eq(take), b1.eq(tab.elem.payload), a1.eq(wr_addr), lane1.eq(tok.t), mask1.eq(tok.mask),
            v2.eq(v1), x2.eq(pick_lane(self.vr.data, lane1, B)), b2.eq(b1), a2.eq(a1), mask2.eq(mask1),
        ]
        total = Signal(signed(33))
        m.d.comb += total.eq(x2 + b2)
        m.d.sync += [self.vw.addr.eq(a2), self.vw.data.eq(replicate(sat32(total, 33), B)),
                     self.vw.en.eq(mask2 & v2.replicate(B))]

        # Done once every element is written and the reader is idle; the reader's error is the op's.
        drained = ~feeding & (reqs == 0) & ~v1 & ~v2 & (self.vw.en == 0) & ~tab.busy
        with m.If(load):
            m.d.sync += running.eq(1)
        m.d.comb += [
            self.busy.eq(running | self.done),
            self.stall.eq(feeding & ~tab.elem.valid),
            self.error.eq(ErrorCode.AXI_READ * tab.error),
            self.error_addr.eq(tab.error_addr),
        ]
        # registered (once drained, nothing restarts), so done follows one cycle later
        drained_r = Signal()
        m.d.sync += drained_r.eq(drained & ~load)
        m.d.sync += self.done.eq(running & drained_r)
        with m.If(running & drained_r):
            m.d.sync += running.eq(0)
        return m
