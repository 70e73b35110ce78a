"""The NORM_QUANT op unit: RMSNorm and/or absmax int8 quantization of VMEM vectors (docs/numerics.md
"Quantizing activations", "RMSNorm followed by quantization"; sim/isa_model.py ``op_norm_quant``).

Per token lane ``t`` (``t < T``, or only ``T - 1`` with ``Flag.LAST_TOKEN``), over ``h = VMEM[src ..
src + n)``:

- ``RMS``: ``x8, S = norm_quant(h, g, scale0, scale1)``, ``g`` the ``n`` int16 gains at ``ddr_base +
  addr0`` (any even address); ``ABSMAX``: ``x8, S = quantize_absmax(h, 2**-16)``. Both: ``x8`` to the
  matmul engine (``act``: chunks of ``trits_per_lane`` values, the last one zero-padded), ``S`` to its
  ``x_scale[t]`` (``xs_*``), ``x8`` to ``VMEM[dst + i]`` (sign-extended) and ``S`` to ``VMEM[aux]`` (pf word
  ``m | e << 16``).
- ``HEADS``: per chunk ``c`` of ``k`` elements, ``quantize_absmax(h[c*k:(c+1)*k], 2**-16)`` to ``VMEM[dst
  + c*k + i]`` and ``VMEM[aux + c]``; nothing to the engine.

``dst`` must equal ``src`` or lie outside ``src .. src + n - 1`` (an element is overwritten only after it
and every earlier one have been read for the last time); the scale words (``aux`` .. ``aux + n/k - 1``)
must not overlap ``src .. src + n - 1``.

Flag.PRESCANNED (RMS and ABSMAX; HEADS ignores it): ``lane_absmax[t]`` / ``lane_absmax_pos[t]`` (the
MATMUL unit's: max |h| of lane ``t`` and whether an ``h >= 0`` reached it) stand in for the first pass,
with the same results. ``t`` depends on max |h| alone, so RMS skips its ``MAX`` pass; absmax
quantization also depends on the extreme's sign (``M'``, :class:`NqScalar`), which the pair gives, so
ABSMAX skips its ``STATS`` pass (``ss`` is not used there) and hands the scalar ``maxz, minz = M, 0``
(reached by ``h >= 0``) or ``0, -M``: the same ``max(maxz, -minz)`` and ``max(maxz, ~minz)``. The
compiler sets the flag only where it holds (host/program.py ``mark_prescanned``).

Work is split into jobs (one per token, or per token and head) and three stages, each with a one-job
slot: passes over VMEM at one element per cycle through :class:`QuantPipe` (RMS: ``MAX`` for ``t``, then
``STATS``; else ``STATS`` only; prescanned: RMS ``STATS`` only, ABSMAX none), the scalar chain
(:class:`NqScalar`: ~45 cycles for absmax, ~120 for RMSNorm) and the ``WRITE`` pass. The read port
serves the next job's statistics while the scalar chain works on the current one and while the last
write's tail drains, so with several jobs a vector takes about ``3n + 25`` cycles (RMS), ``2n + 20``
(absmax) or ``2k + 15`` per head, prescanned ``2n + 25`` (RMS) and ``n + 25`` (absmax); a lone vector
also waits for its scalar chain (n = 896: 2838 cycles RMS, 1866 absmax, prescanned 1962 and 963; 14
heads of 64: 2008). The gains are read once per op into a 128-bit wide buffer (8 per word); their DDR
latency hides under the first ``MAX`` pass, or, prescanned, the first ``STATS`` pass reads each beat as
soon as it is in (a beat holds 8 gains, so after the first one the read stays ahead).

Errors: ``n`` zero or above ``max_k``, an unknown mode, ``HEADS`` with ``k`` zero or not dividing ``n``:
``BAD_DESC`` before anything is read or written (the divisibility check takes ``n / k`` cycles;
``error_addr`` 0: the unit does not know the descriptor's address). An AXI error on
the gains: the op runs to its end, then ``AXI_READ`` with the failing burst's address. ``stall``: a
``STATS`` pass waits for the gains.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..accel_params import BEAT_BYTES, AccelParams
from ..axi import AxiReader, AxiReadSignature
from ..control.isa import PF_LAYOUT, ErrorCode, Flag, NormMode
from ..control.unit import unit_members
from ..port import act_layout
from ..vmem import VmemReadSignature, VmemWriteSignature
from .nq_scalar import NqScalar
from .quant_pipe import Pass, QuantPipe

ACT_FIFO = 8  # engine chunks buffered between the pipeline and ``act``
GAINS_PER_WORD = 8  # int16 per 128-bit beat


def tshift_of(absmax):
    """RMSNorm's reduction shift ``t = max(0, bitlen(absmax) - 23)`` of a 32-bit max |h| (or their OR)."""
    t = 0
    for b in range(22, 32):
        t = Mux(absmax[b], b - 22, t)
    return t


class NormQuantOp(wiring.Component):
    """The NORM_QUANT unit for accelerator parameters ``params`` (see the module docstring)."""

    def __init__(self, params: AccelParams):
        if not isinstance(params, AccelParams):
            raise TypeError("NormQuantOp needs an AccelParams")
        self.p = params
        B, aw = params.batch, params.addr_width
        super().__init__({
            **unit_members(aw),
            "axi": Out(AxiReadSignature(aw, 8 * BEAT_BYTES)),
            "vr": Out(VmemReadSignature(B, params.vmem_words)),
            "vw": Out(VmemWriteSignature(B, params.vmem_words)),
            "act": Out(stream.Signature(act_layout(params.engine))),
            "xs_we": Out(1),
            "xs_lane": Out(range(B)),
            "xs_value": Out(PF_LAYOUT),
            "lane_absmax": In(data.ArrayLayout(32, B)),
            "lane_absmax_pos": In(B),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        B, aw, depth = p.batch, p.addr_width, max(p.vmem_words, 2)
        tpl = p.engine.trits_per_lane
        max_n = p.max_k
        n_w = bits_for(max_n)
        g_words = (max_n + GAINS_PER_WORD - 1) // GAINS_PER_WORD + 1  # + 1: an unaligned start
        desc, ctx = self.desc, self.ctx

        m.submodules.pipe = pipe = QuantPipe(B)
        m.submodules.scal = scal = NqScalar()
        m.submodules.reader = rd = AxiReader(addr_width=aw, data_width=8 * BEAT_BYTES,
                                             len_width=bits_for(g_words), max_burst=16, fifo_depth=32,
                                             max_outstanding=4)
        wiring.connect(m, wiring.flipped(self.axi), rd.axi)
        m.submodules.gbuf = gbuf = Memory(shape=8 * BEAT_BYTES, depth=g_words, init=[])
        g_wr = gbuf.write_port()
        g_rd = gbuf.read_port(transparent_for=())
        fifo_w = len(Signal(act_layout(p.engine)).as_value())
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=fifo_w, depth=ACT_FIFO)
        m.d.comb += [self.act.valid.eq(fifo.r_rdy), self.act.payload.eq(fifo.r_data), fifo.r_en.eq(self.act.ready)]

        # -- the op's registers, latched at start ----------------------------------------------
        rms, heads = Signal(), Signal()
        pre_rms, pre_abs = Signal(), Signal()  # Flag.PRESCANNED: no MAX pass (RMS), no STATS pass (ABSMAX)
        n = Signal(n_w)
        L = Signal(n_w)  # elements per job: n, or k (HEADS)
        src, dst, aux = (Signal(range(depth), name=x) for x in ("src", "dst", "aux"))
        T = Signal(range(B + 1))
        s_g, eps = Signal(PF_LAYOUT), Signal(PF_LAYOUT)
        goff = Signal(3)  # the first gain's int16 position in its beat
        m.d.comb += [scal.n.eq(n), scal.rms.eq(rms), scal.s_g.eq(s_g), scal.eps.eq(eps)]

        error = Signal(len(self.error))
        error_addr = Signal(aw)
        m.d.comb += [self.error.eq(error), self.error_addr.eq(error_addr)]
        m.d.sync += [self.done.eq(0), rd.error_clear.eq(0), scal.prep.eq(0), scal.start.eq(0),
                     self.xs_we.eq(0), pipe.clear.eq(0)]

        mode = desc.mode
        bad_desc = ((desc.n == 0) | (desc.n > max_n) | (mode > NormMode.HEADS)
                    | ((mode == NormMode.HEADS) & (desc.k == 0)))
        last_tok = (desc.flags & Flag.LAST_TOKEN).any()
        prescanned = (desc.flags & Flag.PRESCANNED).any()
        rem = Signal(n_w)  # HEADS: n mod k by subtraction
        k_big = Signal()  # k does not fit n_w bits
        nch = Signal(n_w)  # chunks per token

        # -- gains: one read per op into gbuf ------------------------------------------------------
        g_cmd = Signal()
        g_addr = Signal(aw)
        g_left = Signal(range(g_words + 1))  # beats still to arrive
        g_beats = Signal(range(g_words + 1))
        m.d.comb += [rd.cmd.valid.eq(g_cmd), rd.cmd.payload.addr.eq(g_addr),  # low bits ignored
                     rd.cmd.payload.beats.eq(g_beats), rd.data.ready.eq(1)]
        with m.If(rd.cmd.ready):
            m.d.sync += g_cmd.eq(0)
        g_widx = Signal(range(g_words))
        m.d.comb += [g_wr.addr.eq(g_widx), g_wr.data.eq(rd.data.payload), g_wr.en.eq(rd.data.valid)]
        with m.If(rd.data.valid):
            m.d.sync += [g_widx.eq(g_widx + 1), g_left.eq(g_left - 1)]
        gains_ok = Signal()
        m.d.sync += gains_ok.eq(g_left == 0)  # (cleared when the read is issued, below)

        # -- jobs: stats side (s_*), its slot (sv), the scalar's (q_*), the result (rv), the write (w_*)
        s_t, s_c, s_off, s_more = Signal(range(B + 1)), Signal(n_w), Signal(n_w), Signal()
        s_tshift = Signal(4)
        sv = Signal()
        j_t, j_c, j_off, j_tshift = Signal(range(B)), Signal(n_w), Signal(n_w), Signal(4)  # slot's job
        j_last = Signal()
        j_maxz, j_minz = Signal(32), Signal(signed(33))  # ABSMAX prescanned: the job's statistics
        q_t, q_c, q_off, q_tshift, q_last = Signal(range(B)), Signal(n_w), Signal(n_w), Signal(4), Signal()
        rv = Signal()
        w_t, w_c, w_off, w_tshift, w_last = Signal(range(B)), Signal(n_w), Signal(n_w), Signal(4), Signal()
        w_a, w_R = Signal(6), Signal(16)
        w_sq = Signal(PF_LAYOUT)

        # the scalar takes the slot when it and the result slot are free
        with m.If(sv & ~scal.busy & ~scal.start & ~scal.done & ~rv & ~scal.prep):
            m.d.sync += [scal.start.eq(1), sv.eq(0), q_t.eq(j_t), q_c.eq(j_c), q_off.eq(j_off),
                         q_tshift.eq(j_tshift), q_last.eq(j_last)]
        m.d.comb += [scal.ss.eq(pipe.ss), scal.maxz.eq(Mux(pre_abs, j_maxz, pipe.maxz)),
                     scal.minz.eq(Mux(pre_abs, j_minz, pipe.minz)), scal.tshift.eq(j_tshift)]

        # -- prescanned: lane s_t's max |h| from the MATMUL unit, registered (when a pass or a job uses
        # these, s_t has been steady for a cycle or more: CHUNKS, or the scalar taking the previous job)
        pre_tshift = Signal(4)  # RMS: t, as the MAX pass would give it
        pre_maxz = Signal(32)  # ABSMAX: what the STATS pass's max(z, 0) and min(z, 0) would give the scalar,
        pre_minz = Signal(signed(33))  # which only needs max(maxz, -minz) and max(maxz, ~minz)
        amax = self.lane_absmax[s_t]
        apos = self.lane_absmax_pos.bit_select(s_t, 1)
        m.d.sync += [pre_tshift.eq(tshift_of(amax)), pre_maxz.eq(Mux(apos, amax, 0)), pre_minz.eq(Mux(apos, 0, -amax))]
        with m.If(scal.done):
            m.d.sync += rv.eq(1)

        # -- the passes ----------------------------------------------------------------------------
        kind = Signal(2)
        p_lane = Signal(range(B))
        p_tshift = Signal(4)
        left = Signal(n_w)  # elements still to issue
        rd_addr = Signal(range(depth))
        gidx = Signal(range(g_words * GAINS_PER_WORD))
        ipos = Signal(range(tpl))  # WRITE: position of the next element in its engine chunk
        # registered flags keep the issue decision one LUT deep: elements left, the last one, the first
        # of an engine chunk, a pass that feeds the engine
        more, is_last, ipos0, credit_pass = Signal(), Signal(), Signal(), Signal()
        credit_ok = Signal(init=1)
        need_credit = credit_pass & ipos0
        # an RMS STATS pass reads each gain beat once it is in the buffer (g_ready, registered: that
        # gidx's beat, one ahead, has been written, or all have; the previous element's beat plus one
        # bounds the next one's); only a prescanned STATS pass can begin before the gains are all in
        g_pass, g_ready = Signal(), Signal()
        m.d.sync += g_ready.eq(~g_pass | gains_ok | (g_widx > (gidx >> 3) + 1))
        issue = Signal()
        m.d.comb += issue.eq(more & (~need_credit | credit_ok) & g_ready)
        m.d.comb += [self.vr.addr.eq(rd_addr), self.vr.en.eq(issue),
                     g_rd.addr.eq(gidx >> 3), pipe.glane.eq(gidx[:3]), pipe.issue.eq(issue),
                     pipe.row.eq(self.vr.data), pipe.gword.eq(g_rd.data),
                     pipe.kind.eq(kind), pipe.rms.eq(rms), pipe.lane.eq(p_lane), pipe.tshift.eq(p_tshift),
                     pipe.a_shift.eq(w_a), pipe.R.eq(w_R)]
        with m.If(issue):
            m.d.sync += [left.eq(left - 1), is_last.eq(left == 2), more.eq(~is_last),
                         rd_addr.eq(rd_addr + 1), gidx.eq(gidx + 1),
                         ipos.eq(Mux(ipos == tpl - 1, 0, ipos + 1)), ipos0.eq(ipos == tpl - 1)]

        def begin(k, lane, tshift, off):
            gp = (k == Pass.STATS) & rms
            return [kind.eq(k), p_lane.eq(lane), p_tshift.eq(tshift), left.eq(L), more.eq(1),
                    is_last.eq(L == 1), rd_addr.eq(src + off), gidx.eq(goff), ipos.eq(0), ipos0.eq(1),
                    credit_pass.eq((k == Pass.WRITE) & ~heads), g_pass.eq(gp), g_ready.eq(~gp | gains_ok)]

        # -- the write side: VMEM words, engine chunks -------------------------------------------
        aux_we = Signal()
        aux_addr = Signal(range(depth))
        o_addr = Signal(range(depth))
        o_left = Signal(n_w)
        o_last = Signal()
        o_pos = Signal(range(tpl))
        o_chunk = Signal(range(p.engine.max_chunks))
        cd = Signal(8 * tpl)  # the engine chunk being gathered
        q = pipe.q
        qv = pipe.q_valid
        sq_word = Cat(w_sq.m, w_sq.e)
        lane_mask = Signal(B)
        q_word = Signal(32)
        m.d.comb += q_word.eq(q)  # sign-extended
        m.d.comb += lane_mask.eq(1 << w_t)
        with m.If(aux_we):
            m.d.comb += [self.vw.addr.eq(aux_addr), self.vw.data.eq(sq_word.replicate(B)),
                         self.vw.en.eq(lane_mask)]
        with m.Else():
            m.d.comb += [self.vw.addr.eq(o_addr), self.vw.data.eq(q_word.replicate(B)),
                         self.vw.en.eq(Mux(qv, lane_mask, 0))]
        m.d.sync += aux_we.eq(0)
        merged = Cat(*[Mux(o_pos == i, q[:8], cd[8 * i:8 * i + 8]) for i in range(tpl)])
        push = qv & ~heads & ((o_pos == tpl - 1) | o_last)
        act_word = Signal(act_layout(p.engine))
        m.d.comb += [act_word.b.eq(w_t), act_word.chunk.eq(o_chunk), act_word.data.eq(merged),
                     fifo.w_data.eq(act_word), fifo.w_en.eq(push)]
        with m.If(qv):
            m.d.sync += [o_addr.eq(o_addr + 1), o_left.eq(o_left - 1), o_last.eq(o_left == 2)]
            with m.If(push):
                m.d.sync += [cd.eq(0), o_pos.eq(0), o_chunk.eq(o_chunk + 1)]
            with m.Else():
                m.d.sync += [cd.eq(merged), o_pos.eq(o_pos + 1)]

        # engine-chunk credits: a chunk is reserved when its first element is issued
        reserved = Signal(range(ACT_FIFO + 2))
        reserved_next = Signal(range(ACT_FIFO + 3))
        m.d.comb += reserved_next.eq(reserved + (issue & need_credit) - (self.act.valid & self.act.ready))
        m.d.sync += [reserved.eq(reserved_next), credit_ok.eq(reserved_next < ACT_FIFO - 1)]

        def new_job():
            """The stats side's job into the scalar's slot; the next stats job."""
            m.d.sync += [sv.eq(1), j_t.eq(s_t), j_c.eq(s_c), j_off.eq(s_off), j_tshift.eq(Mux(rms, s_tshift, 0))]
            last_c = s_c == nch - 1
            last_t = s_t == T - 1
            m.d.sync += j_last.eq(last_c & last_t)
            with m.If(last_c):
                m.d.sync += [s_c.eq(0), s_off.eq(0), s_t.eq(s_t + 1), s_more.eq(~last_t)]
            with m.Else():
                m.d.sync += [s_c.eq(s_c + 1), s_off.eq(s_off + L)]

        # -- control -------------------------------------------------------------------------------
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [rms.eq(mode == NormMode.RMS), heads.eq(mode == NormMode.HEADS),
                                 pre_rms.eq(prescanned & (mode == NormMode.RMS)),
                                 pre_abs.eq(prescanned & (mode == NormMode.ABSMAX)),
                                 n.eq(desc.n), rem.eq(desc.n), k_big.eq(desc.k[n_w:].any()), nch.eq(0),
                                 src.eq(desc.src), dst.eq(desc.dst), aux.eq(desc.aux), T.eq(ctx.T),
                                 s_g.eq(desc.scale0), eps.eq(desc.scale1),
                                 s_t.eq(Mux(last_tok, ctx.T - 1, 0)), s_c.eq(0), s_off.eq(0), s_more.eq(1),
                                 g_addr.eq(ctx.ddr_base + desc.addr0), g_left.eq(0), g_widx.eq(0),
                                 sv.eq(0), rv.eq(0), error.eq(0), error_addr.eq(0), rd.error_clear.eq(1),
                                 self.busy.eq(1)]
                    m.d.sync += L.eq(Mux(mode == NormMode.HEADS, desc.k, desc.n))
                    with m.If(bad_desc):
                        m.d.sync += [error.eq(ErrorCode.BAD_DESC), self.done.eq(1)]
                        m.next = "END"
                    with m.Else():
                        m.next = "CHUNKS"
            with m.State("CHUNKS"):
                # nch = n / L; HEADS needs L | n (one subtraction per chunk)
                with m.If(~k_big & (rem >= L)):
                    m.d.sync += [rem.eq(rem - L), nch.eq(nch + 1)]
                with m.Elif((rem != 0) | k_big):
                    m.d.sync += [error.eq(ErrorCode.BAD_DESC), self.done.eq(1)]
                    m.next = "END"
                with m.Else():
                    beats = (g_addr[:4] + (n << 1) + BEAT_BYTES - 1) >> 4
                    m.d.sync += [goff.eq(g_addr[1:4]), g_beats.eq(beats)]
                    with m.If(rms):
                        m.d.sync += [g_cmd.eq(1), g_left.eq(beats), scal.prep.eq(1), gains_ok.eq(0)]
                    m.next = "SELECT"
            with m.State("SELECT"):
                with m.If(rv & ~pipe.write_busy):
                    # the scalar's job, once the previous write has left the pipeline (else the next job's
                    # statistics first): its constants, the scale to aux and x_scale
                    m.d.sync += [rv.eq(0), w_t.eq(q_t), w_c.eq(q_c), w_off.eq(q_off), w_tshift.eq(q_tshift),
                                 w_last.eq(q_last), w_a.eq(scal.a_shift), w_R.eq(scal.R), w_sq.eq(scal.sq),
                                 aux_we.eq(1), aux_addr.eq(aux + q_c),
                                 self.xs_we.eq(~heads), self.xs_lane.eq(q_t), self.xs_value.eq(scal.sq),
                                 o_addr.eq(dst + q_off), o_left.eq(L), o_last.eq(L == 1), o_pos.eq(0),
                                 o_chunk.eq(0), cd.eq(0)]
                    m.d.sync += begin(Pass.WRITE, q_t, q_tshift, q_off)
                    m.next = "PASS"
                with m.Elif(s_more & ~sv):
                    with m.If(pre_abs):  # the statistics are known: no pass before WRITE
                        new_job()
                        m.d.sync += [j_maxz.eq(pre_maxz), j_minz.eq(pre_minz)]
                    with m.Elif(pre_rms):  # t is known: STATS first, as the gains come in
                        m.d.sync += [pipe.clear.eq(1), s_tshift.eq(pre_tshift)]
                        m.d.sync += begin(Pass.STATS, s_t, pre_tshift, s_off)
                        m.next = "PASS"
                    with m.Else():
                        m.d.sync += pipe.clear.eq(1)
                        m.d.sync += begin(Mux(rms, Pass.MAX, Pass.STATS), s_t, 0, s_off)
                        m.next = "PASS"
            with m.State("PASS"):
                m.d.comb += self.stall.eq(more & ~g_ready)
                with m.If(is_last & issue):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(kind == Pass.MAX):
                    m.d.comb += self.stall.eq(~gains_ok & ~pipe.front_busy)
                    with m.If(~pipe.front_busy & gains_ok):
                        tsh = tshift_of(pipe.or_abs)  # bitlen(OR |h|) = bitlen(max |h|)
                        m.d.sync += [s_tshift.eq(tsh), pipe.clear.eq(1)]
                        m.d.sync += begin(Pass.STATS, s_t, tsh, s_off)
                        m.next = "PASS"
                with m.Elif(kind == Pass.STATS):
                    with m.If(~pipe.sums_busy):
                        # the statistics wait in the pipe's sums for the scalar
                        new_job()
                        m.next = "SELECT"
                with m.Elif(~pipe.front_busy):  # WRITE: its tail may drain under the next stats pass
                    with m.If(w_last):
                        m.next = "FINISH"
                    with m.Else():
                        m.next = "SELECT"
            with m.State("FINISH"):
                with m.If(~pipe.busy & (fifo.level == 0) & ~rd.busy & ~scal.busy & (g_left == 0)):
                    with m.If(rd.error):
                        m.d.sync += [error.eq(ErrorCode.AXI_READ), error_addr.eq(rd.error_addr)]
                    m.d.sync += self.done.eq(1)
                    m.next = "END"
            with m.State("END"):
                m.d.sync += self.busy.eq(0)
                m.next = "IDLE"
        return m
