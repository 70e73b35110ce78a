"""The HEAD op unit: exact int8 rescoring of the top-K shortlist, its ordering, and the result in DDR
(docs/numerics.md "Output head"; ``sim/isa_model.py`` ``op_head``).

Before this op a MATMUL with the TOPK epilogue left the shortlist in the top-K selector; the top level
connects its read port (``cand_addr`` -> ``cand_data`` one cycle later, entries unordered) and ``count``
(``cand_count``). For the block's last token lane ``t = T - 1``, with ``n = desc.n``:

- ``x8 = VMEM[src .. src + n)`` (int8 in the words' low bytes) goes into an on-chip buffer of
  ``n / 16`` beats, ``S_x = VMEM[aux]`` (a pf word), one VMEM read per cycle (``n + 1`` cycles);
- for each candidate row ``r`` (:class:`~.fetch.RowFetch`): the pf ``S_r`` at ``addr1 + 4 r`` and the
  int8 row at ``addr0 + r n`` (addresses from ``ctx.ddr_base``), requested back to back so DDR latency
  hides behind the work on earlier rows; the reads start with the op, beside the ``x8`` load;
- ``dot = sum(row * x8)`` at one beat per cycle (:class:`~.dot8.Int8Dot`), then
  ``logit = sat32(apply(dot, mul(S_r, S_x), 16))`` (``rtl/pf`` ``PfMul`` and ``Apply``, pipelined);
- :class:`~.rank.RankWriter` sorts the ``{row, logit}`` by (logit descending, row ascending) in a heap
  and writes ``count`` entries ``{u32 row, i32 logit}``, best first, to ``addr2`` (4 KiB aligned).

Errors (rtl/control/unit.py contract): BAD_DESC (``error_addr`` 0) when ``n`` is 0, not a multiple of 16
or above ``max_hidden``; AXI_READ with the failing burst's address after every requested beat was taken
(nothing is written then); AXI_WRITE with the failing burst's address after every B response.
``stall``: the dot product waits for a DDR beat. ``count == 0`` finishes at once without a DDR access.

Cycles: ~max(n, DDR latency) + count * (n / 16 + 1) + the sort (count pops of at most
``2 log2(max_head_k) + 2`` cycles) + the write's tail. Measured (Amaranth simulator, AccelParams()
defaults, K = 256, n = 896, fixed 100-cycle read and B latency, no stalls): 19,240 cycles from start to
done -- x8 loaded after 902, rescoring done after 15,514 (one beat per cycle), sort and write 3,726.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..accel_params import BEAT_BYTES, AccelParams
from ..axi.signature import AxiReadSignature, AxiWriteSignature
from ..control.isa import PF_LAYOUT, ErrorCode
from ..control.unit import unit_members
from ..matmul.epilogue import topk_layout
from ..pf import Apply, PfMul
from ..vmem import WORD_BITS, VmemReadSignature
from .dot8 import Int8Dot
from .fetch import RowFetch
from .rank import RankWriter

FX_FRAC = 16


def dot_width(max_hidden: int) -> int:
    """Signed width of an int8 x int8 dot of ``max_hidden`` terms (|term| <= 2**14)."""
    return (max_hidden << 14).bit_length() + 1


def _delay(m: Module, sig, cycles: int, name: str):
    for i in range(cycles):
        nxt = Signal.like(sig, name=f"{name}_d{i}")
        m.d.sync += nxt.eq(sig)
        sig = nxt
    return sig


class HeadOp(wiring.Component):
    """Runs one HEAD descriptor; see the module docstring."""

    def __init__(self, params: AccelParams):
        self.p = params
        B, depth, AW = params.batch, params.vmem_words, params.addr_width
        self.row_width = params.engine.row_width
        self.max_beats = params.max_hidden // BEAT_BYTES
        members = unit_members(AW)
        members.update({
            "axi": Out(AxiReadSignature(AW, 8 * BEAT_BYTES)),
            "axiw": Out(AxiWriteSignature(AW, 8 * BEAT_BYTES)),
            "vr": Out(VmemReadSignature(B, depth)),
            "cand_addr": Out(range(max(params.max_head_k, 2))),
            "cand_data": In(topk_layout(params)),
            "cand_count": In(range(params.max_head_k + 1)),
        })
        super().__init__(members)
        self.fetch = RowFetch(addr_width=AW, row_width=self.row_width, max_k=params.max_head_k,
                              max_beats=self.max_beats)
        self.dot = Int8Dot(BEAT_BYTES, dot_width(params.max_hidden))
        self.smul = PfMul()
        self.apply = Apply(self.dot.acc_width, FX_FRAC)
        self.rank = RankWriter(addr_width=AW, row_width=self.row_width, max_k=params.max_head_k)

    def elaborate(self, platform):
        m = Module()
        p = self.p
        B, AW = p.batch, p.addr_width
        desc, ctx = self.desc, self.ctx
        m.submodules.fetch = fetch = self.fetch
        m.submodules.dot = dot = self.dot
        m.submodules.smul = smul = self.smul
        m.submodules.apply = apply = self.apply
        m.submodules.rank = rank = self.rank
        wiring.connect(m, fetch.axi, wiring.flipped(self.axi))
        wiring.connect(m, rank.axi, wiring.flipped(self.axiw))

        # -- latched at start ----------------------------------------------------------------------
        n = Signal(range(p.max_hidden + 1))
        last_lane = Signal(range(max(B, 2)))
        bad = Signal()
        count = Signal.like(self.cand_count)
        row_base, scale_base, out_base = Signal(AW), Signal(AW), Signal(AW)
        with m.If(self.start):
            m.d.sync += [
                n.eq(desc.n), last_lane.eq(ctx.T - 1), count.eq(self.cand_count),
                bad.eq((desc.n[:4] != 0) | (desc.n > p.max_hidden) | (desc.n == 0)),
                row_base.eq(ctx.ddr_base + desc.addr0), scale_base.eq(ctx.ddr_base + desc.addr1),
                out_base.eq(ctx.ddr_base + desc.addr2),
            ]
        m.d.comb += [
            fetch.error_clear.eq(self.start), rank.clear.eq(self.start),
            fetch.count.eq(count), fetch.row_beats.eq(n >> 4), fetch.row_bytes.eq(n),
            fetch.row_base.eq(row_base), fetch.scale_base.eq(scale_base),
            self.cand_addr.eq(fetch.cand_addr), fetch.cand_row.eq(self.cand_data.row),
            rank.count.eq(count), rank.addr.eq(out_base),
        ]

        # -- x8 and S_x from VMEM lane T - 1: S_x first, then n elements -----------------------------
        m.submodules.xbuf = xbuf = Memory(shape=8 * BEAT_BYTES, depth=max(self.max_beats, 2), init=[])
        xw_port, xr_port = xbuf.write_port(), xbuf.read_port(transparent_for=())
        load = Signal()  # pulse: start the load
        reads_left = Signal(range(p.max_hidden + 2))
        read_aux = Signal()
        vaddr = Signal.like(self.vr.addr)
        m.d.comb += [self.vr.en.eq(reads_left != 0), self.vr.addr.eq(Mux(read_aux, desc.aux, vaddr))]
        with m.If(load):
            m.d.sync += [reads_left.eq(n + 1), read_aux.eq(1), vaddr.eq(desc.src)]
        with m.Elif(reads_left != 0):
            m.d.sync += [reads_left.eq(reads_left - 1), read_aux.eq(0)]
            with m.If(~read_aux):
                m.d.sync += vaddr.eq(vaddr + 1)
        got, got_aux = Signal(), Signal()  # the VMEM word of last cycle's read is on vr.data now
        m.d.sync += [got.eq(self.vr.en), got_aux.eq(read_aux)]
        word = Signal(WORD_BITS)
        m.d.comb += word.eq(self.vr.data.word_select(last_lane, WORD_BITS) if B > 1 else self.vr.data)
        s_x = Signal(PF_LAYOUT)
        xword = Signal(8 * BEAT_BYTES)  # bytes shift in from the top: element 16 j + i ends in byte i
        xbyte = Signal(4)
        xbeat = Signal(range(max(self.max_beats, 2)))
        shifted = Cat(xword[8:], word[:8])
        m.d.comb += [xw_port.addr.eq(xbeat), xw_port.data.eq(shifted), xw_port.en.eq(got & ~got_aux & (xbyte == 15))]
        with m.If(load):
            m.d.sync += [xbyte.eq(0), xbeat.eq(0)]
        with m.Elif(got):
            with m.If(got_aux):
                m.d.sync += s_x.eq(word)
            with m.Else():
                m.d.sync += [xword.eq(shifted), xbyte.eq(xbyte + 1)]
                with m.If(xbyte == 15):
                    m.d.sync += xbeat.eq(xbeat + 1)
        x_ready = Signal()  # every x8 beat is in the buffer
        running = Signal()
        m.d.sync += x_ready.eq(running & ~load & (reads_left == 0) & ~got)

        # -- rescoring: beats -> dot; S_r x S_x; apply ---------------------------------------------
        beat = fetch.beats.payload
        take = Signal()
        m.d.comb += [fetch.beats.ready.eq(x_ready), take.eq(fetch.beats.valid & x_ready),
                     xr_port.addr.eq(beat.index)]
        s_r = Signal(PF_LAYOUT)  # the current candidate's scale; it changes after its last row beat
        with m.If(take & beat.scale):
            m.d.sync += s_r.eq(beat.data.word_select(beat.sel, WORD_BITS))
        w1 = Signal(8 * BEAT_BYTES)
        v1, first1, last1 = Signal(), Signal(), Signal()
        row1 = Signal(self.row_width)
        m.d.sync += [v1.eq(take & ~beat.scale), first1.eq(beat.first), last1.eq(beat.last),
                     w1.eq(beat.data), row1.eq(beat.row)]
        m.d.comb += [dot.valid.eq(v1), dot.first.eq(first1), dot.last.eq(last1), dot.w.eq(w1),
                     dot.x.eq(xr_port.data),
                     # in the cycle of a row's last beat s_r is still that row's scale
                     smul.a.eq(s_r), smul.b.eq(s_x)]
        assert dot.latency >= PfMul.latency
        scale = _delay(m, smul.o, dot.latency - PfMul.latency, "scale")
        m.d.comb += [apply.x.eq(dot.dot), apply.s.eq(scale)]
        m.d.comb += [
            rank.inp.valid.eq(_delay(m, dot.out_valid, apply.latency, "logit_valid")),
            rank.inp.payload.row.eq(_delay(m, row1, dot.latency + apply.latency, "row")),
            rank.inp.payload.logit.eq(apply.o),
        ]

        # -- control -------------------------------------------------------------------------------
        m.d.sync += [self.done.eq(0), fetch.start.eq(0), load.eq(0), rank.go.eq(0)]

        def finish(code, addr=0):
            m.d.sync += [self.done.eq(1), self.error.eq(code), self.error_addr.eq(addr)]
            m.next = "DONE"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(bad):
                    finish(ErrorCode.BAD_DESC)
                with m.Elif(count == 0):
                    finish(ErrorCode.OK)
                with m.Else():
                    m.d.sync += [fetch.start.eq(1), load.eq(1)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [running.eq(1), self.stall.eq(x_ready & ~fetch.beats.valid & fetch.busy)]
                with m.If(rank.pushed):  # every candidate rescored, so every requested beat taken
                    with m.If(fetch.error):
                        finish(ErrorCode.AXI_READ, fetch.error_addr)
                    with m.Else():
                        m.d.sync += rank.go.eq(1)
                        m.next = "WRITE"
            with m.State("WRITE"):
                with m.If(rank.done):
                    finish(Mux(rank.error, ErrorCode.AXI_WRITE, ErrorCode.OK), rank.error_addr)
            with m.State("DONE"):
                m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
