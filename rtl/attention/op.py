"""The ATTN op unit: causal GQA attention of a block's queries over the int8 KV cache in DDR, bit-exact
with ``sim/golden/attention.py`` ``attend`` (docs/numerics.md "Attention"; ``sim/isa_model.py``
``op_attn`` says what it does to VMEM).

Descriptor: ``heads`` H, ``kv_heads`` KVH (G = H / KVH query heads per KV head), ``k`` = head_dim d,
``src`` q8 [H d words, int8 in the low byte], ``aux`` the q scales [H pf words], ``dst`` the FX output
[H d words], ``stride`` S (positions per KV head in the cache), ``addr0``/``addr1`` K/V rows
(row (h, p) at ``addr + (h S + p) d``), ``addr2``/``addr3`` their pf scales (at ``addr + 4 (h S + p)``),
``scale0`` = log2(e)/sqrt(d). Token lane ``t < T`` of the block sits at position ``pos0 + t`` and
attends to keys ``0 .. pos0 + t``.

Work order: KV head by KV head; the KV head's (query head, token) pairs in chunks of up to ``q_lanes``
lanes (:class:`~.chunks.ChunkPlanner`). Every chunk covers the keys ``0 .. n - 1``, ``n = pos0 + T``
(a lane masks the keys past its position). Per KV head its K and V scales are read once into the
:class:`~.scales.ScaleBuffer` (4 per cycle); per chunk:

- LOAD (:class:`~.load.QueryLoad`): each lane's q8 into the query store, ``SqC = mul(S_q, C)``
  (VMEM, ``d + 1`` cycles a lane);
- K pass: ``n`` K rows at one beat per cycle (:class:`~.qk.QkArray`), a key at least every
  ``max(d / 16, ceil(lanes / pipes))`` cycles; logits, maxima, V-scale exponents
  (:class:`~.logits.LogitUnit`) into the logit buffer (``max_ctx x lanes`` logits, UltraRAM when large);
- V pass: ``n`` V rows (:class:`~.pv.PvArray`, ``d`` cycles per 16 keys) with the softmax weights of
  :class:`~.softmax.SoftmaxUnit` a tile ahead;
- OUT (:class:`~.out.OutputWriter`): ``lanes x (d + 1)`` cycles (VMEM writes) and the lane scales.

Each K/V byte is read once per chunk (decode of Qwen2.5-0.5B, 7 query heads per KV head, is one chunk per
KV head at 8 lanes). Overlap: a chunk's reads are requested before its LOAD (DDR latency and the scale
stream hide behind it), the next chunk's LOAD runs beside the V pass and OUT, and the next chunk's
scales and K pass beside OUT; a V pass waits for the last OUT (the accumulators). At d = 64 and 8 lanes
a chunk of ``n`` keys takes about ``8 n`` cycles plus LOAD and OUT where they do not overlap
(``lanes (d + 1)`` each, first LOAD and last OUT of an op) and ~150 cycles of pipeline fill.

Errors (rtl/control/unit.py): BAD_DESC at once (``error_addr`` 0) for d not a multiple of 16, 0 or above
``max_head_dim``; H 0 or above ``max_heads``; KVH 0 or not dividing H; ``pos0 + T`` keys above
``max_ctx``; K/V row addresses not 16-byte aligned or scale addresses not 4-byte aligned. An AXI read
error finishes the op (every beat is still taken; the results are garbage) with AXI_READ and the
failing burst's address. ``stall``: a pass waits for a DDR beat.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out

from ..accel_params import AccelParams
from ..axi.reader import AxiReader
from ..axi.signature import AxiReadSignature
from ..control.isa import ErrorCode
from ..control.unit import unit_members
from ..pf import Divider
from ..vmem import VmemReadSignature, VmemWriteSignature
from .common import BEAT_BYTES, acc_width, score_width
from .chunks import ChunkPlanner, chunk_layout
from .load import QueryLoad
from .logits import LogitUnit
from .out import OutputWriter
from .pv import PvArray
from .qk import QkArray
from .scales import ScaleBuffer
from .softmax import SoftmaxUnit

URAM_MIN_BITS = 64 * 1024 * 8  # memories from 64 KB on go to UltraRAM


class AttentionOp(wiring.Component):
    """Runs one ATTN descriptor; see the module docstring. ``pipes``: shared logit / softmax pipelines."""

    def __init__(self, params: AccelParams, *, pipes: int = 2):
        if pipes < 1:
            raise ValueError(f"attention pipes {pipes} must be >= 1")
        p = self.p = params
        self.pipes = pipes
        QL, B, depth, AW = p.q_lanes, p.batch, p.vmem_words, p.addr_width
        self.max_beats = p.max_head_dim // BEAT_BYTES
        self.score_width = score_width(p.max_head_dim)
        self.acc_width = acc_width(p.max_ctx)
        members = unit_members(AW)
        members.update({
            "axi": Out(AxiReadSignature(AW, 8 * BEAT_BYTES)),
            "vr": Out(VmemReadSignature(B, depth)),
            "vw": Out(VmemWriteSignature(B, depth)),
        })
        super().__init__(members)
        self.reader = AxiReader(addr_width=AW, data_width=8 * BEAT_BYTES)
        self.qk = QkArray(lanes=QL, max_beats=self.max_beats, score_width=self.score_width)
        self.logits = LogitUnit(lanes=QL, pipes=pipes, max_ctx=p.max_ctx, score_width=self.score_width)
        self.softmax = SoftmaxUnit(lanes=QL, pipes=pipes, max_ctx=p.max_ctx)
        self.pv = PvArray(lanes=QL, max_beats=self.max_beats, max_ctx=p.max_ctx, acc_width=self.acc_width)
        self.scales = ScaleBuffer(p.max_ctx)
        self.load = QueryLoad(lanes=QL, batch=B, vmem_depth=depth, max_beats=self.max_beats)
        self.out = OutputWriter(lanes=QL, batch=B, vmem_depth=depth, max_head_dim=p.max_head_dim,
                                acc_width=self.acc_width)
        self.plan = ChunkPlanner(lanes=QL, batch=B, max_ctx=p.max_ctx, vmem_depth=depth, max_heads=p.max_heads,
                                 max_head_dim=p.max_head_dim, addr_width=AW, len_width=self.reader.len_width)
        self.key_period = self.logits.key_period

    def elaborate(self, platform):
        m = Module()
        p = self.p
        QL, B, AW = p.q_lanes, p.batch, p.addr_width
        desc, ctx = self.desc, self.ctx
        m.submodules.reader = rd = self.reader
        m.submodules.qk = qk = self.qk
        m.submodules.logits = lg = self.logits
        m.submodules.softmax = sm = self.softmax
        m.submodules.pv = pv = self.pv
        m.submodules.scales = sc = self.scales
        m.submodules.load = ld = self.load
        m.submodules.out = ot = self.out
        m.submodules.div = div = Divider(8, 8)
        wiring.connect(m, rd.axi, wiring.flipped(self.axi))
        wiring.connect(m, ld.vr, wiring.flipped(self.vr))
        wiring.connect(m, ot.vw, wiring.flipped(self.vw))

        ctx_range = range(p.max_ctx + 1)
        H = desc.heads
        d = Signal(range(p.max_head_dim + 1))
        nb = Signal(range(self.max_beats + 1))
        T = Signal.like(ctx.T)
        G = Signal(8)
        nkeys_all = Signal(ctx_range)  # pos0 + T: keys of the block's last token
        pos0 = Signal(ctx_range)
        krow0, vrow0, ksc0, vsc0 = (Signal(AW, name=n) for n in ("krow0", "vrow0", "ksc0", "vsc0"))
        row_stride = Signal(AW)  # S d: bytes of K (or V) rows per KV head
        sc_stride = Signal(AW)  # 4 S
        m.d.comb += [ld.nb.eq(nb), ld.c.eq(desc.scale0)]

        # -- the logit buffer -------------------------------------------------------------------------
        lb_bits = lg.lb_depth * 32 * self.pipes
        lbuf = Memory(shape=32 * self.pipes, depth=max(lg.lb_depth, 2), init=[],
                      attrs={"ram_style": "ultra"} if lb_bits >= URAM_MIN_BITS else {})
        m.submodules.lbuf = lbuf
        lbw, lbr = lbuf.write_port(), lbuf.read_port(transparent_for=())
        m.d.comb += [lbw.addr.eq(lg.lb_addr), lbw.data.eq(lg.lb_data), lbw.en.eq(lg.lb_en),
                     lbr.addr.eq(sm.lb_addr), sm.lb_data.eq(lbr.data)]

        # -- chunks: planned and loaded ahead (kv: the chunk in its K/V passes; out: the one going out) ----
        m.submodules.plan = pl = self.plan
        wiring.connect(m, pl.cmd, rd.cmd)
        kv = Signal(chunk_layout(QL, B, p.max_ctx, p.vmem_words))
        out_n = Signal(range(QL + 1))
        out_t = Signal.like(kv.t)
        out_obase = Signal.like(kv.obase)
        out_e = Signal.like(lg.e)
        out_live = Signal(QL)
        m.d.comb += [
            pl.T.eq(T), pl.pos0.eq(pos0), pl.G.eq(G), pl.kv_heads.eq(desc.kv_heads), pl.d.eq(d),
            pl.src.eq(desc.src), pl.aux.eq(desc.aux), pl.dst.eq(desc.dst), pl.krow.eq(krow0), pl.vrow.eq(vrow0),
            pl.ksc.eq(ksc0), pl.vsc.eq(vsc0), pl.row_stride.eq(row_stride), pl.sc_stride.eq(sc_stride),
            ld.job_valid.eq(pl.job_valid), pl.job_ready.eq(ld.job_ready), ld.job_lane.eq(pl.job_lane),
            ld.job_t.eq(pl.job_t), ld.job_q.eq(pl.job_q), ld.job_s.eq(pl.job_s), pl.load_idle.eq(ld.idle),
            qk.q_we.eq(ld.q_we), qk.q_lane.eq(ld.q_lane), qk.q_beat.eq(ld.q_beat), qk.q_data.eq(ld.q_data),
            lg.key_valid.eq(qk.score_valid), lg.score.eq(qk.score), lg.sqc.eq(ld.sqc), lg.pos.eq(kv.pos),
            lg.lane_valid.eq(kv.valid), lg.sc_k.eq(sc.rk), lg.sc_v.eq(sc.rv),
            sm.nkeys.eq(kv.nkeys), sm.max.eq(lg.max), sm.e.eq(lg.e), sm.pos.eq(kv.pos),
            sm.lane_valid.eq(kv.valid), sm.sc_v.eq(sc.rv), sm.go.eq(pv.go),
            pv.nb.eq(nb), pv.nkeys.eq(kv.nkeys), pv.a.eq(sm.a), pv.a_ready.eq(sm.ready),
            ot.n.eq(out_n), ot.d.eq(d), ot.psum.eq(sm.psum), ot.e.eq(out_e), ot.live.eq(out_live),
            ot.t.eq(out_t), ot.obase.eq(out_obase), pv.rd_addr.eq(ot.rd_addr), ot.rd_data.eq(pv.rd_data),
        ]

        # -- the stream goes to one consumer at a time, in request order ----------------------------------
        route_sc, route_k, route_v = Signal(), Signal(), Signal()
        beat = rd.data.payload
        m.d.comb += [sc.beat.payload.eq(beat), sc.beat.valid.eq(rd.data.valid & route_sc),
                     pv.v.payload.eq(beat), pv.v.valid.eq(rd.data.valid & route_v)]
        k_beats = Signal.like(sc.k_beats)
        v_beats = Signal.like(sc.v_beats)
        k_off, v_off = pl.chunk.k_off, pl.chunk.v_off  # the planned chunk's, steady until it is taken
        m.d.comb += [k_beats.eq((k_off + nkeys_all + 3) >> 2), v_beats.eq((v_off + nkeys_all + 3) >> 2),
                     sc.n_rows.eq((nkeys_all + 3) >> 2), sc.k_offset.eq(k_off), sc.v_offset.eq(v_off),
                     sc.k_beats.eq(k_beats), sc.v_beats.eq(v_beats)]

        # K pass: beats into the QK array; a key's last beat at least key_period cycles after the last
        # (the gate is made of registered flags: it drives the reader FIFO's read enable)
        k_keys_left = Signal(ctx_range)
        k_beat = Signal(range(max(self.max_beats, 2)))
        k_first, k_last, k_more = Signal(), Signal(), Signal()  # of the next beat; keys remain
        since = Signal(range(self.key_period + 1))  # cycles since the last key's last beat
        since_ok = Signal()
        k_open = Signal()
        k_take = Signal()
        k_init = Signal()  # the K pass starts: the flags for key 0
        m.d.comb += [k_open.eq(route_k & k_more & (~k_last | since_ok)),
                     k_take.eq(k_open & rd.data.valid),
                     qk.k_valid.eq(k_take), qk.k_data.eq(beat), qk.k_beat.eq(k_beat),
                     qk.k_first.eq(k_first), qk.k_last.eq(k_last)]
        since_n = Signal.like(since)
        m.d.comb += since_n.eq(Mux(k_take & k_last, 1, Mux(since == self.key_period, since, since + 1)))
        m.d.sync += [since.eq(since_n), since_ok.eq(since_n == self.key_period)]
        with m.If(k_init):
            m.d.sync += [k_beat.eq(0), k_first.eq(1), k_last.eq(nb == 1), k_keys_left.eq(kv.nkeys),
                         k_more.eq(1), since.eq(self.key_period), since_ok.eq(1)]
        with m.Elif(k_take):
            m.d.sync += [k_beat.eq(k_beat + 1), k_first.eq(0), k_last.eq(k_beat == nb - 2)]
            with m.If(k_last):
                m.d.sync += [k_beat.eq(0), k_first.eq(1), k_last.eq(nb == 1), k_keys_left.eq(k_keys_left - 1),
                             k_more.eq(k_keys_left != 1)]
        ready = Mux(route_sc, sc.beat.ready, Mux(route_k, k_open, route_v & pv.v.ready))
        # stall: a consumer waits for a beat (the scale stream only once the chunk's queries are in)
        m.d.comb += [rd.data.ready.eq(ready),
                     self.stall.eq(~rd.data.valid & ready & (~route_sc | pl.chunk_valid))]

        # scale buffer read: the logit unit in the K pass, the softmax in the V pass
        m.d.comb += sc.raddr.eq(Mux(route_v, sm.sc_addr, lg.sc_addr))

        # -- control ------------------------------------------------------------------------------------
        bad = Signal()
        stride_left = Signal(range(self.max_beats + 1))
        pulse = {n: Signal(name=f"{n}_go") for n in ("plan", "scales", "clear", "vpass", "out")}
        m.d.sync += [self.done.eq(0)] + [s.eq(0) for s in pulse.values()]
        m.d.comb += [pl.start.eq(pulse["plan"]), sc.start.eq(pulse["scales"]), lg.clear.eq(pulse["clear"]),
                     sm.start.eq(pulse["vpass"]), pv.start.eq(pulse["vpass"]), ot.start.eq(pulse["out"]),
                     rd.error_clear.eq(self.start),
                     div.num.eq(H), div.den.eq(desc.kv_heads), div.start.eq(self.start)]
        keys_scored = Signal(ctx_range)
        with m.If(qk.score_valid):
            m.d.sync += keys_scored.eq(keys_scored + 1)
        k_done = Signal()  # every key scored and its logits written (registered: it ends the K pass)
        m.d.sync += k_done.eq((keys_scored == kv.nkeys) & lg.idle & route_k & ~pulse["clear"] & ~k_done)
        m.d.comb += pl.q_free.eq(k_done)
        out_busy = Signal()
        with m.If(ot.done):
            m.d.sync += out_busy.eq(0)
        sc_started, sc_in = Signal(), Signal()  # the scale stream of the next chunk's KV head: begun, in
        with m.If(sc.done):
            m.d.sync += [route_sc.eq(0), sc_in.eq(1)]

        def finish(code, addr=0):
            m.d.sync += [self.done.eq(1), self.error.eq(code), self.error_addr.eq(addr)]
            m.next = "DONE"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    keys = ctx.pos0 + ctx.T
                    m.d.sync += [
                        bad.eq((desc.k == 0) | (desc.k[:4] != 0) | (desc.k > p.max_head_dim) | (H == 0)
                               | (H > p.max_heads) | (desc.kv_heads == 0) | (keys > p.max_ctx)
                               | (desc.addr0[:4] != 0) | (desc.addr1[:4] != 0) | (desc.addr2[:2] != 0)
                               | (desc.addr3[:2] != 0)),
                        d.eq(desc.k), nb.eq(desc.k >> 4), T.eq(ctx.T), pos0.eq(ctx.pos0), nkeys_all.eq(keys),
                        krow0.eq(ctx.ddr_base + desc.addr0), vrow0.eq(ctx.ddr_base + desc.addr1),
                        ksc0.eq(ctx.ddr_base + desc.addr2), vsc0.eq(ctx.ddr_base + desc.addr3),
                        sc_stride.eq(desc.stride << 2), row_stride.eq(0), stride_left.eq(desc.k >> 4),
                        out_busy.eq(0), sc_started.eq(0), sc_in.eq(0), self.error.eq(0), self.error_addr.eq(0),
                    ]
                    m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(div.done):
                    m.d.sync += G.eq(div.quotient)
                    with m.If(bad | (div.remainder != 0)):
                        finish(ErrorCode.BAD_DESC)
                    with m.Else():
                        m.next = "STRIDE"
            with m.State("STRIDE"):  # S d = d / 16 additions of 16 S
                with m.If(stride_left == 0):
                    m.d.sync += pulse["plan"].eq(1)
                    m.next = "NEXT"
                with m.Else():
                    m.d.sync += [row_stride.eq(row_stride + (desc.stride << 4)), stride_left.eq(stride_left - 1)]
            with m.State("NEXT"):  # the next chunk: its KV head's scales as soon as its reads are out
                with m.If(pl.planned & pl.chunk.scales & ~sc_started & ~pulse["plan"]):
                    m.d.sync += [pulse["scales"].eq(1), route_sc.eq(1), sc_started.eq(1)]
                with m.If(pl.chunk_valid & (~pl.chunk.scales | sc_in) & ~pulse["plan"]):
                    m.d.comb += pl.take.eq(1)
                    m.d.sync += [kv.eq(pl.chunk), sc_started.eq(0), sc_in.eq(0)]
                    m.next = "K_START"
                with m.Elif(pl.finished & ~pulse["plan"] & ~out_busy):
                    m.next = "FINISH"
            with m.State("K_START"):
                m.d.comb += k_init.eq(1)
                m.d.sync += [route_k.eq(1), keys_scored.eq(0), pulse["clear"].eq(1)]
                m.next = "K_PASS"
            with m.State("K_PASS"):
                with m.If(k_done):
                    m.d.sync += route_k.eq(0)
                    m.next = "V_WAIT"
            with m.State("V_WAIT"):  # the accumulators are free once the last chunk went out
                with m.If(~out_busy):
                    m.d.sync += [route_v.eq(1), pulse["vpass"].eq(1)]
                    m.next = "V_PASS"
            with m.State("V_PASS"):
                with m.If(pv.done):
                    m.d.sync += [route_v.eq(0), pulse["out"].eq(1), out_busy.eq(1), out_n.eq(kv.n),
                                 out_t.eq(kv.t), out_obase.eq(kv.obase), out_e.eq(lg.e), out_live.eq(lg.live)]
                    m.next = "NEXT"
            with m.State("FINISH"):
                with m.If(~rd.busy):
                    with m.If(rd.error):
                        finish(ErrorCode.AXI_READ, rd.error_addr)
                    with m.Else():
                        finish(ErrorCode.OK)
            with m.State("DONE"):
                m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
