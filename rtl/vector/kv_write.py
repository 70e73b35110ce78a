"""KV_WRITE op unit: appends the block's K (or V) rows and their scales to the KV cache in DDR
(sim/isa_model.py ``op_kv_write``).

For each token lane ``t`` (position ``p = pos0 + t``) and KV head ``h < kv_heads``, slot
``s = h * stride + p``:

- the ``k`` int8 values ``src[h k .. h k + k)`` (VMEM words holding sign-extended int8; the low byte is
  written), 16 per beat, to DDR ``addr0 + s k``;
- the pf word ``VMEM[aux + h]`` (4 bytes) to ``addr1 + 4 s``: one beat with only its 4 strobes set
  (``addr1`` 4-byte aligned).

Each row and each scale is one run of a :class:`~.run_writer.RunWriter` (ordered: row then scale per
head, heads then tokens). Setup: ``stride * k`` and ``p * k`` by two shift-add multipliers, one cycle per
bit of ``k`` (8 at head_dim 128); then one VMEM word per cycle (``k + 1`` cycles per head and token)
while DDR takes the writes. ``done`` after the last BRESP.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from ..accel_params import AccelParams
from ..axi import AxiWriteSignature
from ..control.isa import ErrorCode, Flag
from ..control.unit import unit_members
from ..vmem import VmemReadSignature
from .run_writer import RunWriter
from .serial_mul import SerialMul


class KvWriteOp(wiring.Component):
    def __init__(self, params: AccelParams):
        self.p = params
        B, depth, aw = params.batch, params.vmem_words, params.addr_width
        self.k_width = len(Signal(range(params.max_head_dim + 1)))
        self.runs = RunWriter(lanes=B, depth=depth, count_width=self.k_width, addr_width=aw)
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
        k = desc.k[:self.k_width]
        kv_heads = desc.kv_heads[:len(Signal(range(self.p.max_kv_heads + 1)))]
        only_last = (desc.flags & Flag.LAST_TOKEN) != 0

        running = Signal()
        load = Signal()
        m.d.comb += [load.eq(self.start & ~self.busy), rw.error_clear.eq(load)]

        # setup: stride * k (bytes between heads' rows) and p * k (the first token's row), both by k's bits
        m.submodules.mul_s = mul_s = SerialMul(width=aw, b_width=self.k_width)
        m.submodules.mul_p = mul_p = SerialMul(width=aw, b_width=self.k_width)
        pos = Signal(32)
        rows0, scales0 = Signal(aw), Signal(aw)
        t_first = Mux(only_last, ctx.T - 1, 0)
        with m.If(load):
            m.d.sync += [running.eq(1), pos.eq(ctx.pos0 + t_first), rows0.eq(ctx.ddr_base + desc.addr0),
                         scales0.eq(ctx.ddr_base + desc.addr1)]
        mul_start = Signal()
        m.d.sync += mul_start.eq(load)
        m.d.comb += [mul_s.start.eq(mul_start), mul_s.a.eq(desc.stride), mul_s.b.eq(k),
                     mul_p.start.eq(mul_start), mul_p.a.eq(pos), mul_p.b.eq(k)]
        setup = Signal()
        m.d.sync += setup.eq(Mux(load, 1, setup & (mul_start | mul_s.busy)))
        go = Signal()
        m.d.comb += go.eq(setup & ~mul_start & ~mul_s.busy)

        # run generator: (token, head, row | scale)
        lane = Signal(range(max(B, 2)))
        tokens_left = Signal(range(B + 1))
        heads_left = Signal.like(kv_heads)
        scale_next = Signal()  # the next run is head h's scale
        generating = Signal()
        row_t, sc_t = Signal(aw), Signal(aw)  # head 0 of this token
        row_h, sc_h = Signal(aw), Signal(aw)  # head h
        head_step, sc_step = Signal(aw), Signal(aw)
        vsrc, vaux = Signal.like(self.vr.addr), Signal.like(self.vr.addr)
        m.d.comb += [
            rw.run.valid.eq(generating),
            rw.run.payload.vaddr.eq(Mux(scale_next, vaux, vsrc)),
            rw.run.payload.count.eq(Mux(scale_next, 1, k)),
            rw.run.payload.addr.eq(Mux(scale_next, sc_h, row_h)),
            rw.run.payload.wide.eq(scale_next),
            rw.run.payload.lane.eq(lane),
        ]
        with m.If(go):
            m.d.sync += [
                generating.eq((kv_heads != 0) & (k != 0)),
                tokens_left.eq(Mux(only_last, 1, ctx.T)), lane.eq(t_first), heads_left.eq(kv_heads),
                scale_next.eq(0),
                row_t.eq(rows0 + mul_p.product), row_h.eq(rows0 + mul_p.product),
                sc_t.eq(scales0 + (pos << 2)), sc_h.eq(scales0 + (pos << 2)),
                head_step.eq(mul_s.product), sc_step.eq(desc.stride << 2),
                vsrc.eq(desc.src), vaux.eq(desc.aux),
            ]
        with m.Elif(rw.run.valid & rw.run.ready):
            m.d.sync += scale_next.eq(~scale_next)
            with m.If(scale_next & (heads_left == 1)):  # the token's last run: next token
                m.d.sync += [row_t.eq(row_t + k), row_h.eq(row_t + k), sc_t.eq(sc_t + 4), sc_h.eq(sc_t + 4),
                             vsrc.eq(desc.src), vaux.eq(desc.aux), heads_left.eq(kv_heads),
                             lane.eq(lane + 1), tokens_left.eq(tokens_left - 1)]
                with m.If(tokens_left == 1):
                    m.d.sync += generating.eq(0)
            with m.Elif(scale_next):  # next head
                m.d.sync += [row_h.eq(row_h + head_step), sc_h.eq(sc_h + sc_step), vsrc.eq(vsrc + k),
                             vaux.eq(vaux + 1), heads_left.eq(heads_left - 1)]

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
