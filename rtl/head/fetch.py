"""DDR reads of the head's rescoring: for every shortlisted row, its pf scale and its int8 row.

For candidates ``i = 0 .. count - 1`` the issuer reads the row id ``r`` from the top-K selector's read
port (``cand_addr`` -> ``cand_row`` one cycle later) and asks an :class:`~ternfpga.rtl.axi.AxiReader`
for two regions back to back: the beat holding the u32 scale at ``scale_base + 4 * r``, then the
``row_beats`` beats of the row at ``row_base + r * row_bytes`` (one DSP multiply). The reader keeps up
to ``max_outstanding`` bursts in flight (two or three per candidate) and buffers their beats
(``fifo_depth``), so the DDR latency is hidden while the consumer works on earlier rows: at one beat per
cycle, 32 bursts cover ~140 cycles of latency at 128-byte rows, ~400 at 896.

``beats`` delivers every returned beat in request order, tagged: ``scale`` (the scale beat; ``sel`` is
the scale's 32-bit word in it), else a row beat with ``index`` (0 .. row_beats - 1), ``first`` and
``last``; ``row`` is the candidate's row id on all of its beats. A small ring of ``{row, sel}``
(``meta_depth``) pairs the beats with their candidates; the issuer waits while it is full.

Issue rate: one candidate every ~6 cycles (two reader commands; the next candidate's row id read,
multiply and address adds overlap them), ample for rows of several beats. ``start`` (a pulse while
idle) latches ``count``; ``row_beats`` (>= 1), ``row_bytes``, ``row_base`` and ``scale_base`` must hold
from ``start`` until the last beat has left.
``error``/``error_addr``/``error_clear`` are the reader's (sticky; the first failing burst's address).
``busy``: beats requested and not yet taken (the consumer waits on DDR when ``beats`` is not valid).
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..axi import AxiReader, AxiReadSignature

BEAT_BYTES = 16


def beat_layout(row_width: int, max_beats: int) -> data.StructLayout:
    return data.StructLayout({
        "data": 8 * BEAT_BYTES,
        "scale": 1,  # the candidate's scale beat (comes first)
        "first": 1,
        "last": 1,
        "index": range(max(max_beats, 2)),  # row beat number
        "row": row_width,
        "sel": 2,  # word of the scale beat holding the scale
    })


class RowFetch(wiring.Component):
    """Streams every candidate's scale beat and row beats (see the module docstring)."""

    def __init__(self, *, addr_width: int, row_width: int, max_k: int, max_beats: int, max_burst: int = 128,
                 fifo_depth: int = 512, max_outstanding: int = 32, meta_depth: int = 32):
        if max_k < 1 or max_beats < 1 or row_width < 1:
            raise ValueError("row fetch needs max_k >= 1, max_beats >= 1 and row_width >= 1")
        if meta_depth < 2 or meta_depth & (meta_depth - 1):
            raise ValueError(f"row fetch meta_depth {meta_depth} must be a power of two >= 2")
        self.addr_width, self.row_width, self.max_k, self.max_beats = addr_width, row_width, max_k, max_beats
        self.meta_depth = meta_depth
        self.reader = AxiReader(addr_width=addr_width, data_width=8 * BEAT_BYTES,
                                len_width=max_beats.bit_length(), max_burst=max_burst, fifo_depth=fifo_depth,
                                max_outstanding=max_outstanding)
        super().__init__({
            "start": In(1),
            "count": In(range(max_k + 1)),
            "row_beats": In(range(max_beats + 1)),
            "row_bytes": In(range(BEAT_BYTES * max_beats + 1)),
            "row_base": In(addr_width),
            "scale_base": In(addr_width),
            "cand_addr": Out(range(max(max_k, 2))),
            "cand_row": In(row_width),
            "beats": Out(stream.Signature(beat_layout(row_width, max_beats))),
            "axi": Out(AxiReadSignature(addr_width, 8 * BEAT_BYTES)),
            "error": Out(1),
            "error_addr": Out(addr_width),
            "error_clear": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        AW, RW = self.addr_width, self.row_width
        m.submodules.reader = reader = self.reader
        wiring.connect(m, reader.axi, wiring.flipped(self.axi))
        m.d.comb += [self.error.eq(reader.error), self.error_addr.eq(reader.error_addr),
                     reader.error_clear.eq(self.error_clear), self.busy.eq(reader.busy)]
        # pairing ring {row, sel}: written with a candidate's scale command, read while its beats go out;
        # a beat never comes before its entry, so only the writer checks for room
        meta_layout = data.StructLayout({"row": RW, "sel": 2})
        m.submodules.meta = meta = Memory(shape=meta_layout, depth=self.meta_depth, init=[])
        meta_w, meta_r = meta.write_port(), meta.read_port(domain="comb")
        mb = exact_log2(self.meta_depth)
        meta_wr, meta_rd = Signal(mb + 1), Signal(mb + 1)
        meta_full = Signal()
        m.d.comb += [meta_w.addr.eq(meta_wr[:mb]), meta_r.addr.eq(meta_rd[:mb]),
                     meta_full.eq((meta_wr[:mb] == meta_rd[:mb]) & (meta_wr[mb] != meta_rd[mb]))]
        with m.If(meta_w.en):
            m.d.sync += meta_wr.eq(meta_wr + 1)

        # -- issuer: an address stage works out the next candidate's addresses while the command stage
        # hands the previous one's two regions to the reader ------------------------------------------
        last_ii = Signal.like(self.count)  # count - 1
        ii = Signal(range(self.max_k + 1))  # candidate in the address stage
        row = Signal(RW)
        prod = Signal(AW)  # row * row_bytes
        saddr = Signal(AW)
        raddr = Signal(AW)
        ready = Signal()  # the address stage holds a finished candidate
        take = Signal()  # the command stage takes it
        m.d.comb += self.cand_addr.eq(ii)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [last_ii.eq(self.count - 1), ii.eq(0)]
                    with m.If(self.count != 0):
                        m.next = "READ"
            with m.State("READ"):  # cand_addr = ii now, the row id next cycle
                m.next = "ROW"
            with m.State("ROW"):
                m.d.sync += row.eq(self.cand_row)
                m.next = "MUL"
            with m.State("MUL"):  # registered operands: one DSP
                m.d.sync += [prod.eq(row * self.row_bytes), saddr.eq(self.scale_base + (row << 2))]
                m.next = "ADD"
            with m.State("ADD"):
                m.d.sync += [raddr.eq(self.row_base + prod), ready.eq(1)]
                m.next = "HOLD"
            with m.State("HOLD"):
                with m.If(take):
                    m.d.sync += [ready.eq(0), ii.eq(ii + 1)]
                    with m.If(ii == last_ii):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "READ"

        cmd = reader.cmd
        row_addr = Signal(AW)
        m.d.comb += [meta_w.data.row.eq(row), meta_w.data.sel.eq(saddr[2:4])]
        with m.FSM():
            with m.State("IDLE"):
                # the pairing entry goes in with the scale command: its beats come much later
                m.d.comb += [take.eq(ready & ~meta_full), meta_w.en.eq(take)]
                with m.If(take):
                    m.d.sync += [cmd.valid.eq(1), cmd.payload.addr.eq(saddr), cmd.payload.beats.eq(1),
                                 row_addr.eq(raddr)]
                    m.next = "SCALE"
            with m.State("SCALE"):
                with m.If(cmd.ready):
                    m.d.sync += [cmd.payload.addr.eq(row_addr), cmd.payload.beats.eq(self.row_beats)]
                    m.next = "ROW"
            with m.State("ROW"):
                with m.If(cmd.ready):
                    m.d.sync += cmd.valid.eq(0)
                    m.next = "IDLE"

        # -- beat tagging ------------------------------------------------------------------------
        in_row = Signal()  # the next beat is a row beat (else the candidate's scale beat)
        index = Signal(range(max(self.max_beats, 2)))
        left = Signal(range(max(self.max_beats, 2)))  # row beats after the current one
        first = Signal()
        is_last = Signal()  # left == 0, registered: it drives the pairing FIFO's pop
        last_index = Signal.like(left)
        single = Signal()  # one-beat rows
        with m.If(self.start):
            m.d.sync += [last_index.eq(self.row_beats - 1), single.eq(self.row_beats == 1), in_row.eq(0),
                         meta_rd.eq(meta_wr)]
        out = self.beats
        m.d.comb += [
            out.valid.eq(reader.data.valid),
            reader.data.ready.eq(out.ready),
            out.payload.data.eq(reader.data.payload),
            out.payload.scale.eq(~in_row),
            out.payload.first.eq(in_row & first),
            out.payload.last.eq(in_row & is_last),
            out.payload.index.eq(index),
            out.payload.row.eq(meta_r.data.row),
            out.payload.sel.eq(meta_r.data.sel),
        ]
        with m.If(out.valid & out.ready):
            with m.If(~in_row):
                m.d.sync += [in_row.eq(1), index.eq(0), left.eq(last_index), first.eq(1), is_last.eq(single)]
            with m.Else():
                m.d.sync += [index.eq(index + 1), left.eq(left - 1), first.eq(0), is_last.eq(left == 1)]
                with m.If(is_last):
                    m.d.sync += [in_row.eq(0), meta_rd.eq(meta_rd + 1)]
        return m
