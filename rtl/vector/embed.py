"""The EMBED op unit: token ids -> FX rows of the embedding in VMEM (docs/numerics.md "Embedding").

For every token lane ``t`` of the block (only ``T - 1`` with ``Flag.LAST_TOKEN``) the token id is the
u32 at ``ddr_base + tokens + 4 * (tok0 + t)``; its int8 row of ``n`` (= hidden, a multiple of 16) bytes
lies at ``ddr_base + addr0 + id * n`` and its pf scale at ``ddr_base + addr1 + 4 * id``, and
``VMEM[dst + i]`` (lane ``t``) becomes ``sat32(apply(e8[i], S_row, 16))`` (``fixed.requant``).

Flow: one read fetches the beats holding every id of the block (unpacked one id per cycle and checked
against the vocabulary ``k``); then an issue process requests, per token, the beat holding its scale and
the row's beats, while a process behind the reader takes the scale beat and feeds the row's bytes into a
pipelined :class:`~ternfpga.rtl.pf.Apply` at one element per cycle (the next tokens' reads are already
on their way, so rows follow each other without a gap once the first has arrived).

Errors: a descriptor beyond the maxima (``n`` zero, above ``max_hidden`` or not a multiple of 16; ``k``
zero or above ``max_vocab``) is ``BAD_DESC`` at once (``error_addr`` 0: the unit does not know the
descriptor's address). An id >= ``k``: ``BAD_TOKEN`` with the id's byte address; no row is read. An AXI
read error: no further request is issued, every requested beat is taken, then ``AXI_READ`` with the
failing burst's address.

Cycles per token: ``n`` + 1 (the scale beat) once the data is there; per op about 10 cycles plus the
id read's DDR latency plus the first row's.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out
from amaranth.utils import bits_for

from ..accel_params import BEAT_BYTES, AccelParams
from ..axi import AxiReader, AxiReadSignature
from ..control.isa import PF_LAYOUT, ErrorCode, Flag
from ..control.unit import unit_members
from ..pf import Apply
from ..vmem import VmemWriteSignature

BEAT_BITS = 8 * BEAT_BYTES


class EmbedOp(wiring.Component):
    """The EMBED unit for accelerator parameters ``params`` (see the module docstring)."""

    def __init__(self, params: AccelParams):
        if not isinstance(params, AccelParams):
            raise TypeError("EmbedOp needs an AccelParams")
        self.p = params
        aw = params.addr_width
        super().__init__({
            **unit_members(aw),
            "axi": Out(AxiReadSignature(aw, BEAT_BITS)),
            "vw": Out(VmemWriteSignature(params.batch, params.vmem_words)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        B, aw = p.batch, p.addr_width
        depth = p.vmem_words
        id_w = bits_for(p.max_vocab - 1)  # a checked id
        n_w = bits_for(p.max_hidden)
        row_beats_max = p.max_hidden // BEAT_BYTES
        id_beats_max = (BEAT_BYTES - 4 + 4 * B + BEAT_BYTES - 1) // BEAT_BYTES
        len_w = bits_for(max(row_beats_max, id_beats_max))

        m.submodules.reader = rd = AxiReader(addr_width=aw, data_width=BEAT_BITS, len_width=len_w,
                                             max_burst=16, fifo_depth=64, max_outstanding=4)
        wiring.connect(m, wiring.flipped(self.axi), rd.axi)
        m.submodules.apply = ap = Apply(x_width=8, frac=16)
        # one beat register after the reader: its ready is a flip-flop, so none of the logic below
        # reaches into the reader's FIFO (one beat per two cycles at most: rows take 16 per beat)
        buf = Signal(BEAT_BITS)
        buf_v = Signal()
        take = Signal()  # the beat in buf is used up this cycle
        m.d.comb += rd.data.ready.eq(~buf_v)
        with m.If(rd.data.valid & ~buf_v):
            m.d.sync += [buf.eq(rd.data.payload), buf_v.eq(1)]
        with m.If(take):
            m.d.sync += buf_v.eq(0)
        idle_rd = ~rd.busy & ~buf_v

        desc, ctx = self.desc, self.ctx
        # -- the op's registers, latched at start ----------------------------------------------
        n = Signal(n_w)
        beats_row = Signal(range(row_beats_max + 1))
        vocab = Signal(32)
        dst = Signal(range(max(depth, 2)))
        T = Signal(range(B + 1))
        t_first = Signal(range(B))
        cnt = Signal(range(B + 1))  # tokens to embed
        row_base = Signal(aw)  # ddr_base + addr0
        scale_base = Signal(aw)  # ddr_base + addr1
        ids_addr = Signal(aw)  # byte address of the first id
        ids = Signal(data.ArrayLayout(id_w, B))  # by token index j (lane t_first + j)

        bad_desc = Signal()
        m.d.comb += bad_desc.eq((desc.n == 0) | (desc.n > p.max_hidden) | desc.n[:4].any()
                                | (desc.k == 0) | (desc.k > p.max_vocab))
        last_tok = (desc.flags & Flag.LAST_TOKEN).any()

        error = Signal(len(self.error))
        error_addr = Signal(aw)
        m.d.comb += [self.error.eq(error), self.error_addr.eq(error_addr)]
        m.d.sync += [self.done.eq(0), rd.error_clear.eq(0)]

        # the id read: beats holding ids j = 0..cnt-1 (word position of id j: (word0 + j) % 4)
        id_j = Signal(range(B + 1))
        id_pos = Signal(2)
        id_word = Signal(32)
        m.d.comb += id_word.eq(buf.word_select(id_pos, 32))
        bad_tok = Signal()
        bad_addr = Signal(aw)
        id_addr = Signal(aw)  # address of id j

        # issue process state
        iss_j = Signal(range(B + 1))
        iss_run = Signal()
        cmd_valid = Signal()
        cmd_addr = Signal(aw)
        cmd_beats = Signal(len_w)
        cmd_seen = Signal()  # a command was accepted last cycle (the reader's busy lags it)
        m.d.comb += [rd.cmd.valid.eq(cmd_valid), rd.cmd.payload.addr.eq(cmd_addr),
                     rd.cmd.payload.beats.eq(cmd_beats)]
        m.d.sync += cmd_seen.eq(rd.cmd.valid & rd.cmd.ready)
        with m.If(rd.cmd.valid & rd.cmd.ready):
            m.d.sync += cmd_valid.eq(0)

        # process state: per token the scale beat, then the row's beats, one byte per cycle
        pr_j = Signal(range(B + 1))
        pr_run = Signal()
        pr_scale = Signal()  # waiting for the token's scale beat
        scale = Signal(PF_LAYOUT)
        beat = Signal(BEAT_BITS)
        have = Signal()  # beat holds unsent bytes
        byte_i = Signal(4)
        elem = Signal(range(max(depth, 2)))  # VMEM address of the next element
        beats_left = Signal(range(row_beats_max + 1))
        more = Signal()  # beats_left != 0
        lane = Signal(range(B))
        drain = Signal()  # after an error: take every beat, compute nothing

        # the element pipeline beside Apply: valid and VMEM address
        L = ap.latency
        pv = Signal(L)
        pa = [Signal(range(max(depth, 2)), name=f"pa{i}") for i in range(L)]  # VMEM address
        pl = [Signal(range(B), name=f"pl{i}") for i in range(L)]  # lane
        feed = Signal()
        m.d.comb += [ap.x.eq(beat.word_select(byte_i, 8).as_signed()), ap.s.eq(scale)]
        m.d.sync += [pv.eq(Cat(feed, pv[:-1])), pa[0].eq(elem), pl[0].eq(lane)]
        m.d.sync += [pa[i].eq(pa[i - 1]) for i in range(1, L)]
        m.d.sync += [pl[i].eq(pl[i - 1]) for i in range(1, L)]
        m.d.comb += [self.vw.addr.eq(pa[-1]), self.vw.data.eq(ap.o.replicate(B)),
                     self.vw.en.eq(Mux(pv[-1], 1 << pl[-1], 0))]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [n.eq(desc.n), beats_row.eq(desc.n[4:]), vocab.eq(desc.k), dst.eq(desc.dst),
                                 T.eq(ctx.T), t_first.eq(Mux(last_tok, ctx.T - 1, 0)),
                                 cnt.eq(Mux(last_tok, 1, ctx.T)),
                                 row_base.eq(ctx.ddr_base + desc.addr0),
                                 scale_base.eq(ctx.ddr_base + desc.addr1),
                                 ids_addr.eq(ctx.ddr_base + ctx.tokens),
                                 error.eq(0), error_addr.eq(0), bad_tok.eq(0), rd.error_clear.eq(1),
                                 self.busy.eq(1)]
                    with m.If(bad_desc):
                        m.d.sync += [error.eq(ErrorCode.BAD_DESC), self.done.eq(1)]
                        m.next = "END"
                    with m.Else():
                        m.next = "ADDR"
            with m.State("ADDR"):
                # ids_addr += 4 * (tok0 + t_first)
                m.d.sync += ids_addr.eq(ids_addr + ((ctx.tok0 + t_first) << 2))
                m.next = "IDS_CMD"
            with m.State("IDS_CMD"):
                m.d.sync += [cmd_valid.eq(1), cmd_addr.eq(ids_addr),
                             cmd_beats.eq((ids_addr[:4] + (cnt << 2) + (BEAT_BYTES - 1)) >> 4),
                             id_j.eq(0), id_pos.eq(ids_addr[2:4]), id_addr.eq(ids_addr)]
                m.next = "IDS"
            with m.State("IDS"):
                # one id per cycle; the beat is taken after its last id
                m.d.comb += self.stall.eq(~buf_v)
                last_id = id_j == cnt - 1
                m.d.comb += take.eq(buf_v & ((id_pos == 3) | last_id))
                with m.If(buf_v):
                    m.d.sync += [ids[id_j].eq(id_word[:id_w]), id_j.eq(id_j + 1), id_pos.eq(id_pos + 1),
                                 id_addr.eq(id_addr + 4)]
                    with m.If(~bad_tok & (id_word >= vocab)):
                        m.d.sync += [bad_tok.eq(1), bad_addr.eq(id_addr)]
                    with m.If(last_id):
                        m.next = "CHECK"
            with m.State("CHECK"):
                # the id beats have arrived: a read error or a bad id ends the op here
                with m.If(rd.error):
                    m.d.sync += [error.eq(ErrorCode.AXI_READ), error_addr.eq(rd.error_addr)]
                    m.next = "FINISH"
                with m.Elif(bad_tok):
                    m.d.sync += [error.eq(ErrorCode.BAD_TOKEN), error_addr.eq(bad_addr)]
                    m.next = "FINISH"
                with m.Else():
                    m.d.sync += [iss_j.eq(0), iss_run.eq(1), pr_j.eq(0), pr_run.eq(1),
                                 pr_scale.eq(1), have.eq(0), drain.eq(0), elem.eq(dst)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(~iss_run & ~pr_run & ~cmd_valid & ~cmd_seen & idle_rd & ~pv.any()):
                    with m.If(rd.error):
                        m.d.sync += [error.eq(ErrorCode.AXI_READ), error_addr.eq(rd.error_addr)]
                    m.d.sync += [self.done.eq(1)]
                    m.next = "END"
            with m.State("FINISH"):
                with m.If(idle_rd):
                    m.d.sync += self.done.eq(1)
                    m.next = "END"
            with m.State("END"):
                m.d.sync += self.busy.eq(0)
                m.next = "IDLE"

        # -- issue: per token, the beat holding its scale, then its row -------------------------
        prod = Signal(id_w + n_w)
        iss_id = Signal(id_w)
        m.d.comb += iss_id.eq(ids[iss_j])
        m.d.sync += prod.eq(iss_id * n)  # a DSP; registered a cycle before its use
        with m.FSM(name="issue"):
            with m.State("WAIT"):
                with m.If(iss_run):
                    m.next = "MUL"
            with m.State("MUL"):
                m.next = "SCALE"  # prod settles
            with m.State("SCALE"):
                with m.If(rd.error):  # stop requesting
                    m.d.sync += iss_run.eq(0)
                    m.next = "WAIT"
                with m.Elif(~cmd_valid):
                    m.d.sync += [cmd_valid.eq(1), cmd_addr.eq(scale_base + (iss_id << 2)), cmd_beats.eq(1)]
                    m.next = "ROW"
            with m.State("ROW"):
                with m.If(~cmd_valid):
                    m.d.sync += [cmd_valid.eq(1), cmd_addr.eq(row_base + prod), cmd_beats.eq(beats_row),
                                 iss_j.eq(iss_j + 1)]
                    with m.If(iss_j == cnt - 1):
                        m.d.sync += iss_run.eq(0)
                        m.next = "WAIT"
                    with m.Else():
                        m.next = "MUL"

        # -- process: scale beat, then the row's bytes into Apply -------------------------------
        pr_id = Signal(id_w)
        m.d.comb += pr_id.eq(ids[pr_j])
        scale_word = Signal(32)
        m.d.comb += scale_word.eq(buf.word_select(scale_base[2:4] + pr_id[:2], 32))
        last_byte = byte_i == BEAT_BYTES - 1
        with m.If(rd.error):
            m.d.sync += drain.eq(1)
        with m.If(pr_run):
            m.d.comb += self.stall.eq(~buf_v & (pr_scale | ~have | last_byte) & ~drain)
            with m.If(drain):
                # an error: take whatever was requested, compute nothing further
                m.d.comb += [take.eq(buf_v), feed.eq(0)]
                with m.If(~iss_run & ~cmd_valid & ~cmd_seen & idle_rd):
                    m.d.sync += pr_run.eq(0)
            with m.Elif(pr_scale):
                m.d.comb += take.eq(buf_v)
                with m.If(buf_v):
                    m.d.sync += [scale.eq(scale_word), pr_scale.eq(0), beats_left.eq(beats_row), more.eq(1),
                                 lane.eq(t_first + pr_j)]
            with m.Else():
                # send byte byte_i of the held beat; load the next beat when the held one is spent
                need = ~have | last_byte
                m.d.comb += [feed.eq(have), take.eq(need & more & buf_v)]
                with m.If(have):
                    m.d.sync += [byte_i.eq(byte_i + 1), elem.eq(elem + 1)]
                with m.If(need):
                    with m.If(more & buf_v):
                        m.d.sync += [beat.eq(buf), have.eq(1), byte_i.eq(0),
                                     beats_left.eq(beats_left - 1), more.eq(beats_left != 1)]
                    with m.Else():
                        m.d.sync += have.eq(0)
                        with m.If(~more & have):  # the row's last byte goes out now
                            m.d.sync += [pr_j.eq(pr_j + 1), pr_scale.eq(1), elem.eq(dst)]
                            with m.If(pr_j == cnt - 1):
                                m.d.sync += pr_run.eq(0)
        with m.If(self.start):
            m.d.sync += [pr_run.eq(0), iss_run.eq(0), cmd_valid.eq(0)]
        return m
