"""ROPE op unit: rotate-half RoPE of ``heads`` vectors of ``k`` FX words per token lane, in VMEM
(sim/isa_model.py ``op_rope``; docs/numerics.md "RoPE").

Per token ``t`` (position ``p = pos0 + t``) the int16 rows ``cos[p]``, ``sin[p]`` (``k/2`` entries at
DDR ``addr0 + p k`` and ``addr1 + p k``, any byte address) come through the table reader, two entries
per cycle, into an on-chip table double buffered by token, so the next token's rows load while this one
is rotated. ``k`` must be a multiple of 4 (head_dim is a multiple of 16). Then for every head and
``i < k/2``, with ``x1 = src[h k + i]``, ``x2 = src[h k + i + k/2]``::

    y1 = sat32(rshift_round(x1 c - x2 s, 14)),  y2 = sat32(rshift_round(x2 c + x1 s, 14))

written to ``dst`` at the same offsets. One VMEM read port, so a pair takes two cycles: ``x1`` then
``x2`` are read in consecutive cycles, each multiplied by ``c`` and ``s`` of entry ``i`` in the same
two multipliers (``x*c``, ``x*s``; int32 x int16, two DSP48E2 each), and the cross terms are combined
when ``x2``'s products arrive.

Pipeline: issue (VMEM and table read) -> lane pick -> multiply -> combine + rounding half -> shift and
saturate -> write ``y1``, then ``y2`` the next cycle. Throughput: one pair per two cycles (one element
per cycle); between tokens no pause once the next token's rows are in. ``start`` to the first table
request: 3 cycles plus one per bit of ``k``; the first token waits for its two rows (``k/2``
cycles after their first beats). ``dst`` must equal ``src`` or not overlap it.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out

from ..accel_params import AccelParams
from ..axi import AxiReadSignature
from ..control.isa import ErrorCode, Flag
from ..control.unit import unit_members
from ..vmem import VmemReadSignature, VmemWriteSignature
from .common import TokenCursor, pick_lane, replicate, sat32
from .serial_mul import SerialMul
from .table import TableStream

ROPE_FRAC = 14
PROD_BITS = 48  # int32 x int16
SUM_BITS = PROD_BITS + 2  # a difference of two products plus the rounding half


class RopeOp(wiring.Component):
    def __init__(self, params: AccelParams):
        self.p = params
        B, depth, aw = params.batch, params.vmem_words, params.addr_width
        self.half_max = params.max_head_dim // 2
        self.k_width = len(Signal(range(params.max_head_dim + 1)))
        if params.max_head_dim % 4:
            raise ValueError(f"max_head_dim {params.max_head_dim} must be a multiple of 4")
        # table entries travel in pairs: one 32-bit element = entries 2j and 2j + 1 of a row
        self.pairs_max = params.max_head_dim // 4
        self.table = TableStream(elem_bytes=4, addr_width=aw, count_width=len(Signal(range(self.pairs_max + 1))))
        super().__init__({
            **unit_members(aw),
            "vr": Out(VmemReadSignature(B, depth)),
            "vw": Out(VmemWriteSignature(B, depth)),
            "axi": Out(AxiReadSignature(aw, 128)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        B, aw = self.p.batch, self.p.addr_width
        desc, ctx = self.desc, self.ctx
        m.submodules.table = tab = self.table
        wiring.connect(m, tab.axi, wiring.flipped(self.axi))
        k = desc.k[:self.k_width]
        half = k[1:]
        quarter = k[2:]  # entry pairs per row
        heads = desc.heads[:len(Signal(range(self.p.max_heads + 1)))]
        only_last = (desc.flags & Flag.LAST_TOKEN) != 0

        # -- setup: the first token's table row offset p * k ----------------------------------------
        running = Signal()
        load = Signal()
        m.d.comb += [load.eq(self.start & ~self.busy), tab.error_clear.eq(load)]
        m.submodules.mul = mul = SerialMul(width=aw, b_width=self.k_width)
        base0, base1 = Signal(aw), Signal(aw)
        pos = Signal(32)
        empty = Signal()  # nothing to rotate
        with m.If(load):
            m.d.sync += [running.eq(1), base0.eq(ctx.ddr_base + desc.addr0), base1.eq(ctx.ddr_base + desc.addr1),
                         pos.eq(ctx.pos0 + Mux(only_last, ctx.T - 1, 0)), empty.eq((heads == 0) | (quarter == 0))]
        mul_start = Signal()
        m.d.sync += mul_start.eq(load)
        m.d.comb += [mul.start.eq(mul_start), mul.a.eq(pos), mul.b.eq(k)]
        setup = Signal()  # mul running
        m.d.sync += setup.eq(Mux(load, 1, setup & (mul_start | mul.busy)))
        go = Signal()  # the cycle the row offset is known
        m.d.comb += go.eq(setup & ~mul_start & ~mul.busy)

        # -- table requests: cos row then sin row of every token --------------------------------------
        tok = TokenCursor(B)
        reqs = Signal(range(B + 1))  # tokens whose rows are still to request
        sin_next = Signal()
        row0, row1 = Signal(aw), Signal(aw)
        m.d.comb += [tab.req.valid.eq(reqs != 0), tab.req.payload.addr.eq(Mux(sin_next, row1, row0)),
                     tab.req.payload.count.eq(quarter)]
        with m.If(go):
            m.d.sync += [reqs.eq(Mux(empty, 0, tok.count)), sin_next.eq(0),
                         row0.eq(base0 + mul.product), row1.eq(base1 + mul.product)]
        with m.Elif(tab.req.valid & tab.req.ready):
            m.d.sync += sin_next.eq(~sin_next)
            with m.If(sin_next):
                m.d.sync += [reqs.eq(reqs - 1), row0.eq(row0 + k), row1.eq(row1 + k)]

        # -- table loader: entry pair j of a row -> word (slot, j), cos pair in bits 0..31, sin in 32..63
        slot_bits = len(Signal(range(self.half_max)))  # entry index i
        pair_bits = max(slot_bits - 1, 1)
        m.submodules.tbl = tbl = Memory(shape=64, depth=2 << pair_bits, init=[])
        tw = tbl.write_port(granularity=32)
        tr = tbl.read_port(transparent_for=())
        loaded = Signal(range(B + 1))  # tokens whose rows are in
        rotated = Signal(range(B + 1))  # tokens fully issued (their slot is free again)
        ld_i = Signal(pair_bits)
        ld_last = Signal()
        ld_sin = Signal()
        ld_slot = Signal()
        ld_ok = Signal()
        m.d.comb += [ld_ok.eq((loaded - rotated)[:2] != 2), tab.elem.ready.eq(running & ld_ok)]
        ld_take = tab.elem.valid & tab.elem.ready
        m.d.comb += [tw.addr.eq(Cat(ld_i, ld_slot)), tw.data.eq(Cat(tab.elem.payload, tab.elem.payload)),
                     tw.en.eq(Mux(ld_sin, 0b10, 0b01) & ld_take.replicate(2))]
        with m.If(go):
            m.d.sync += [ld_i.eq(0), ld_last.eq(quarter == 1), ld_sin.eq(0), ld_slot.eq(0), loaded.eq(0)]
        with m.Elif(ld_take):
            with m.If(ld_last):
                m.d.sync += [ld_i.eq(0), ld_last.eq(quarter == 1), ld_sin.eq(~ld_sin)]
                with m.If(ld_sin):
                    m.d.sync += [ld_slot.eq(~ld_slot), loaded.eq(loaded + 1)]
            with m.Else():
                m.d.sync += [ld_i.eq(ld_i + 1), ld_last.eq(ld_i + 2 == quarter)]

        # -- issue: x1 then x2 of pair i of head h, token lane t ---------------------------------------
        rotating = Signal()
        heads_left = Signal.like(heads)
        i = Signal(slot_bits)
        last_i = Signal()
        phase = Signal()  # 0: x1, 1: x2
        pr_slot = Signal()
        a1, a2 = Signal.like(self.vr.addr), Signal.like(self.vr.addr)
        d1, d2 = Signal.like(self.vw.addr), Signal.like(self.vw.addr)
        issue = Signal()
        m.d.comb += issue.eq(rotating & (loaded != rotated))
        tok.elaborate(m, load=load, step=issue & phase & last_i & (heads_left == 1), desc=desc, ctx=ctx)
        src_half, dst_half = Signal.like(a2), Signal.like(d2)
        half_p1 = Signal(self.k_width)
        with m.If(load):
            m.d.sync += [src_half.eq(desc.src + half), dst_half.eq(desc.dst + half), half_p1.eq(half + 1)]

        def first_pair_of_token():
            return [a1.eq(desc.src), a2.eq(src_half), d1.eq(desc.dst), d2.eq(dst_half), i.eq(0),
                    last_i.eq(half == 1), heads_left.eq(heads), phase.eq(0)]

        with m.If(go):
            m.d.sync += [rotating.eq(~empty), rotated.eq(0), pr_slot.eq(0)] + first_pair_of_token()
        with m.Elif(issue):
            m.d.sync += phase.eq(~phase)
            with m.If(phase & last_i & (heads_left == 1)):  # the token's last pair
                m.d.sync += [rotated.eq(rotated + 1), pr_slot.eq(~pr_slot)] + first_pair_of_token()
                with m.If(tok.last):
                    m.d.sync += rotating.eq(0)
            with m.Elif(phase & last_i):  # next head
                m.d.sync += [a1.eq(a2 + 1), a2.eq(a2 + half_p1), d1.eq(d2 + 1), d2.eq(d2 + half_p1),
                             i.eq(0), last_i.eq(half == 1), heads_left.eq(heads_left - 1)]
            with m.Elif(phase):
                m.d.sync += [a1.eq(a1 + 1), a2.eq(a2 + 1), d1.eq(d1 + 1), d2.eq(d2 + 1), i.eq(i + 1),
                             last_i.eq(i + 2 == half)]
        m.d.comb += [self.vr.addr.eq(Mux(phase, a2, a1)), self.vr.en.eq(issue),
                     tr.addr.eq(Cat(i[1:], pr_slot) if slot_bits > 1 else Cat(Const(0, 1), pr_slot)),
                     tr.en.eq(issue)]

        # -- datapath ----------------------------------------------------------------------------------
        def stage(*sigs, name):
            return [Signal.like(s, name=f"{s.name}_{name}") for s in sigs]

        wa0 = Mux(phase, d2, d1)
        v1, ph1, wa1, lane1, mask1 = stage(issue, phase, d1, tok.t, tok.mask, name="s1")
        odd1 = Signal()  # entry i is the second of its pair
        m.d.sync += [v1.eq(issue), ph1.eq(phase), wa1.eq(wa0), lane1.eq(tok.t), mask1.eq(tok.mask),
                     odd1.eq(i[0])]
        # s2: operands
        x2, c2, s2 = Signal(signed(32)), Signal(signed(16)), Signal(signed(16))
        v2, ph2, wa2, mask2 = stage(v1, ph1, wa1, mask1, name="s2")
        m.d.sync += [x2.eq(pick_lane(self.vr.data, lane1, B)),
                     c2.eq(Mux(odd1, tr.data[16:32], tr.data[:16])), s2.eq(Mux(odd1, tr.data[48:], tr.data[32:48])),
                     v2.eq(v1), ph2.eq(ph1), wa2.eq(wa1), mask2.eq(mask1)]
        # s3: x*c, x*s
        pc, ps = Signal(signed(PROD_BITS)), Signal(signed(PROD_BITS))
        v3, ph3, wa3, mask3 = stage(v2, ph2, wa2, mask2, name="s3")
        m.d.sync += [pc.eq(x2 * c2), ps.eq(x2 * s2), v3.eq(v2), ph3.eq(ph2), wa3.eq(wa2), mask3.eq(mask2)]
        # s4: on x2's products (x1's are one cycle older): the two sums plus the rounding half
        pc1, ps1, wa_x1 = Signal.like(pc), Signal.like(ps), Signal.like(wa3)
        m.d.sync += [pc1.eq(pc), ps1.eq(ps), wa_x1.eq(wa3)]
        r1, r2 = Signal(signed(SUM_BITS)), Signal(signed(SUM_BITS))
        v4 = Signal()
        w1_4, w2_4, mask4 = stage(wa3, wa3, mask3, name="s4")
        half_lsb = Const(1 << (ROPE_FRAC - 1), SUM_BITS)
        m.d.sync += [r1.eq(pc1 - ps + half_lsb), r2.eq(pc + ps1 + half_lsb), v4.eq(v3 & ph3),
                     w1_4.eq(wa_x1), w2_4.eq(wa3), mask4.eq(mask3)]
        # s5: shift and saturate
        y1, y2 = Signal(32), Signal(32)
        v5 = Signal()
        w1_5, w2_5, mask5 = stage(w1_4, w2_4, mask4, name="s5")
        m.d.sync += [y1.eq(sat32(r1[ROPE_FRAC:], SUM_BITS - ROPE_FRAC)),
                     y2.eq(sat32(r2[ROPE_FRAC:], SUM_BITS - ROPE_FRAC)),
                     v5.eq(v4), w1_5.eq(w1_4), w2_5.eq(w2_4), mask5.eq(mask4)]
        # write y1 now, y2 next cycle (pairs come at most every other cycle)
        pend = Signal()
        y2_p, w2_p, mask_p = stage(y2, w2_5, mask5, name="pend")
        with m.If(v5):
            m.d.sync += [self.vw.addr.eq(w1_5), self.vw.data.eq(replicate(y1, B)), self.vw.en.eq(mask5),
                         pend.eq(1), y2_p.eq(y2), w2_p.eq(w2_5), mask_p.eq(mask5)]
        with m.Elif(pend):
            m.d.sync += [self.vw.addr.eq(w2_p), self.vw.data.eq(replicate(y2_p, B)), self.vw.en.eq(mask_p),
                         pend.eq(0)]
        with m.Else():
            m.d.sync += self.vw.en.eq(0)

        # -- completion -----------------------------------------------------------------------------
        drained = (~setup & ~go & ~rotating & (reqs == 0) & ~v1 & ~v2 & ~v3 & ~v4 & ~v5 & ~pend
                   & (self.vw.en == 0) & ~tab.busy)
        # registered (once drained, nothing restarts), so done follows one cycle later
        drained_r = Signal()
        m.d.sync += drained_r.eq(drained & ~load)
        m.d.sync += self.done.eq(running & drained_r)
        with m.If(running & drained_r):
            m.d.sync += running.eq(0)
        m.d.comb += [
            self.busy.eq(running | self.done),
            self.stall.eq(rotating & (loaded == rotated)),
            self.error.eq(ErrorCode.AXI_READ * tab.error),
            self.error_addr.eq(tab.error_addr),
        ]
        return m
