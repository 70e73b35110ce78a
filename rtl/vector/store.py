"""STORE op unit: copies ``n`` VMEM words of each token lane to DDR (traced intermediates;
sim/isa_model.py ``op_store``).

Token ``t``'s row goes to DDR ``addr0 + (tok0 + t) * stride``: mode ``I32`` writes each word's 4 bytes
(little-endian, 4 words per beat; the row must start 4-byte aligned), ``I8`` its low byte (16 per beat,
any alignment). A row is one run of a :class:`~.run_writer.RunWriter`; its last beat carries only the
strobes of its bytes, so the DDR around the row does not change.

Setup: ``(tok0 + t_first) * stride`` by a shift-add multiplier, one cycle per bit of the token index;
then one VMEM word per cycle with no pause between tokens, while DDR takes the writes. ``done`` after the
last BRESP.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from ..accel_params import AccelParams
from ..axi import AxiWriteSignature
from ..control.isa import ErrorCode, Flag, StoreMode
from ..control.unit import unit_members
from ..vmem import VmemReadSignature
from .run_writer import RunWriter
from .serial_mul import SerialMul


class StoreOp(wiring.Component):
    def __init__(self, params: AccelParams):
        self.p = params
        B, depth, aw = params.batch, params.vmem_words, params.addr_width
        self.count_width = len(Signal(range(depth + 1)))  # n beyond the VMEM depth is not a valid op
        self.runs = RunWriter(lanes=B, depth=depth, count_width=self.count_width, addr_width=aw)
        super().__init__({
            **unit_members(aw),
            "vr": Out(VmemReadSignature(B, depth)),
            "axiw": Out(AxiWriteSignature(aw, 128)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        B, aw = self.p.batch, self.p.addr_width
        desc, ctx = self.desc, self.ctx
        m.submodules.runs = rw = self.runs
        wiring.connect(m, rw.axi, wiring.flipped(self.axiw))
        wiring.connect(m, rw.vr, wiring.flipped(self.vr))
        n = desc.n[:self.count_width]
        only_last = (desc.flags & Flag.LAST_TOKEN) != 0

        running = Signal()
        load = Signal()
        m.d.comb += [load.eq(self.start & ~self.busy), rw.error_clear.eq(load)]

        # setup: the first token's row offset (tok0 + t_first) * stride
        m.submodules.mul = mul = SerialMul(width=aw, b_width=32)
        tok = Signal(32)
        base = Signal(aw)
        t_first = Mux(only_last, ctx.T - 1, 0)
        with m.If(load):
            m.d.sync += [running.eq(1), tok.eq(ctx.tok0 + t_first), base.eq(ctx.ddr_base + desc.addr0)]
        mul_start = Signal()
        m.d.sync += mul_start.eq(load)
        m.d.comb += [mul.start.eq(mul_start), mul.a.eq(desc.stride), mul.b.eq(tok)]
        setup = Signal()
        m.d.sync += setup.eq(Mux(load, 1, setup & (mul_start | mul.busy)))
        go = Signal()
        m.d.comb += go.eq(setup & ~mul_start & ~mul.busy)

        # one run per token
        lane = Signal(range(max(B, 2)))
        tokens_left = Signal(range(B + 1))
        row = Signal(aw)
        generating = Signal()
        m.d.comb += [
            rw.run.valid.eq(generating),
            rw.run.payload.vaddr.eq(desc.src),
            rw.run.payload.count.eq(n),
            rw.run.payload.addr.eq(row),
            rw.run.payload.wide.eq(desc.mode != StoreMode.I8),  # as the ISA model: anything else is I32
            rw.run.payload.lane.eq(lane),
        ]
        with m.If(go):
            m.d.sync += [generating.eq(n != 0), tokens_left.eq(Mux(only_last, 1, ctx.T)), lane.eq(t_first),
                         row.eq(base + mul.product)]
        with m.Elif(rw.run.valid & rw.run.ready):
            m.d.sync += [row.eq(row + desc.stride), lane.eq(lane + 1), tokens_left.eq(tokens_left - 1)]
            with m.If(tokens_left == 1):
                m.d.sync += generating.eq(0)

        drained = Signal()
        m.d.sync += drained.eq(~load & ~setup & ~go & ~generating & rw.idle)
        m.d.sync += self.done.eq(running & drained)
        with m.If(running & drained):
            m.d.sync += running.eq(0)
        m.d.comb += [
            self.busy.eq(running | self.done),
            self.stall.eq(running & rw.blocked),
            self.error.eq(ErrorCode.AXI_WRITE * rw.error),
            self.error_addr.eq(rw.error_addr),
        ]
        return m
