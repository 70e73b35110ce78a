"""The OUT step of a chunk: ``out = sat32(apply(acc, shl(recip(normalize(psum, 0)), E + 15), 16))`` for
every lane and element into VMEM (docs/numerics.md "Attention", step 7); 0 for a lane without a live key.

``start`` (the accumulators are final): :class:`~.oscale.OutScale` works out each lane's scale (about 25
cycles a lane) while the lanes' elements go out, lane by lane, one element per cycle:
the accumulator read (``rd_addr``, ``rd_data`` a cycle later), the lane's pick, an ``Apply``, and a VMEM
write of token lane ``t`` at ``obase + i``. The next lane's scale is worked out while one lane's
elements go out, so a chunk takes about ``30 + lanes * (d + 1)`` cycles. ``done`` pulses after the last
write.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..control.isa import PF_LAYOUT
from ..pf import Apply
from ..vmem import VmemWriteSignature
from .common import FX_FRAC, delay
from .oscale import OutScale


class OutputWriter(wiring.Component):
    def __init__(self, *, lanes: int, batch: int, vmem_depth: int, max_head_dim: int, acc_width: int):
        if min(lanes, batch, vmem_depth, max_head_dim) < 1 or not 2 <= acc_width <= 48:
            raise ValueError("OutputWriter needs lanes, batch, vmem_depth, max_head_dim >= 1 and acc_width "
                             "in 2..48")
        self.lanes, self.batch, self.vmem_depth = lanes, batch, vmem_depth
        self.max_head_dim, self.acc_width = max_head_dim, acc_width
        self._scale = OutScale()
        self._apply = Apply(acc_width, FX_FRAC)
        super().__init__({
            "vw": Out(VmemWriteSignature(batch, vmem_depth)),
            "start": In(1),
            "n": In(range(lanes + 1)),  # lanes 0 .. n - 1 are in use
            "d": In(range(max_head_dim + 1)),
            "psum": In(data.ArrayLayout(32, lanes)),
            "e": In(data.ArrayLayout(signed(16), lanes)),
            "live": In(lanes),
            "t": In(data.ArrayLayout(range(max(batch, 2)), lanes)),
            "obase": In(data.ArrayLayout(range(max(vmem_depth, 2)), lanes)),
            "rd_addr": Out(range(max_head_dim)),
            "rd_data": In(data.ArrayLayout(signed(acc_width), lanes)),
            "done": Out(1),  # a one-cycle pulse
        })

    def elaborate(self, platform):
        m = Module()
        L = self.lanes
        m.submodules.scale = osc = self._scale
        m.submodules.apply = app = self._apply

        # -- scales, lane by lane ------------------------------------------------------------------------
        scale = Signal(data.ArrayLayout(PF_LAYOUT, L))
        have = Signal(L)  # scale[l] is final
        sl = Signal(range(L + 1))  # the lane whose scale is being worked out
        n = Signal.like(self.n)
        with m.Switch(sl):
            for i in range(L):
                with m.Case(i):
                    m.d.comb += [osc.psum.eq(self.psum[i]), osc.e.eq(self.e[i]), osc.live.eq(self.live[i])]
        with m.FSM(name="scale"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [sl.eq(0), have.eq(0), n.eq(self.n)]
                    m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(sl == n):
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += osc.start.eq(1)
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(osc.done):
                    for i in range(L):
                        with m.If(sl == i):
                            m.d.sync += [scale[i].eq(osc.result), have[i].eq(1)]
                    m.d.sync += sl.eq(sl + 1)
                    m.next = "NEXT"

        # -- elements, lane by lane -----------------------------------------------------------------------
        ol = Signal(range(L + 1))  # the lane going out
        i = Signal(range(self.max_head_dim + 1))
        last_i = Signal(range(self.max_head_dim))
        cur_scale = Signal(PF_LAYOUT)
        cur_t = Signal.like(self.t[0])
        cur_base = Signal.like(self.obase[0])
        reading = Signal()
        pending = Signal(range(self._apply.latency + 4))  # cycles until the last read element is written
        m.d.comb += self.rd_addr.eq(i)
        with m.FSM(name="out"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [ol.eq(0), last_i.eq(self.d - 1)]
                    m.next = "LANE"
            with m.State("LANE"):
                with m.If(ol == n):
                    m.next = "DRAIN"
                with m.Elif(have.bit_select(ol, 1)):
                    with m.Switch(ol):
                        for k in range(L):
                            with m.Case(k):
                                m.d.sync += [cur_scale.eq(scale[k]), cur_t.eq(self.t[k]),
                                             cur_base.eq(self.obase[k])]
                    m.d.sync += i.eq(0)
                    m.next = "ELEMS"
            with m.State("ELEMS"):
                m.d.comb += reading.eq(1)
                m.d.sync += i.eq(i + 1)
                with m.If(i == last_i):
                    m.d.sync += ol.eq(ol + 1)
                    m.next = "LANE"
            with m.State("DRAIN"):
                with m.If(pending == 0):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        # read (cycle 0), the lane's accumulator registered (1), Apply, write
        got = Signal()
        got_i = Signal.like(i)
        got_l = Signal.like(ol)
        m.d.sync += [got.eq(reading), got_i.eq(i), got_l.eq(ol)]
        x = Signal(signed(self.acc_width))
        v1 = Signal()
        i1 = Signal.like(i)
        with m.Switch(got_l):
            for k in range(L):
                with m.Case(k):
                    m.d.sync += x.eq(self.rd_data[k])
        m.d.sync += [v1.eq(got), i1.eq(got_i)]
        m.d.comb += [app.x.eq(x), app.s.eq(delay(m, cur_scale, 2, "scale_x"))]
        v_o = delay(m, v1, app.latency, "v_o")
        i_o = delay(m, i1, app.latency, "i_o")
        t_o = delay(m, cur_t, app.latency + 2, "t_o")
        base_o = delay(m, cur_base, app.latency + 2, "base_o")
        m.d.comb += [
            self.vw.addr.eq(base_o + i_o),
            self.vw.en.eq(Mux(v_o, 1 << t_o, 0)),
            self.vw.data.eq(app.o.as_unsigned().replicate(self.batch)),
        ]
        # the element pipeline is empty once pending is 0
        with m.If(reading):
            m.d.sync += pending.eq(app.latency + 3)
        with m.Elif(pending != 0):
            m.d.sync += pending.eq(pending - 1)
        return m
