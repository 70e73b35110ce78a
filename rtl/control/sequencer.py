"""The sequencer: runs a call (COUNT tokens from POSITION) by executing the program's descriptors, one op
at a time, once per block of up to B tokens.

Per descriptor it fetches 64 bytes (4 beats) from DDR_BASE + PROGRAM + 64 * index, checks the opcode,
skips a LAST_BLOCK op outside the call's last block, starts the op's unit (one-hot ``unit_start``; the
unit's ``active`` bit stays high until it reports done, and the top multiplexes shared resources by it)
and waits for its ``done``. END starts the next block at index 0, or finishes the call. While an op runs
the next descriptor is already being fetched, so consecutive ops start a few cycles apart.

Errors end the call at once (after the running op has completed): the code, the failing descriptor's
index and the DDR address the code names are held for the status registers; ``done`` rises with
``error``. ABORT is honoured when the running op completes (ErrorCode.ABORTED). A new START clears them.

Cycle counters (cleared by START, counting while busy): total; per op class (matmul, attention, vector,
head: the class of the running op); memstall (the running unit waits for DDR data, or the sequencer waits
for a descriptor); ops (descriptors executed).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..axi import AxiReader, AxiReadSignature
from .isa import DESC_BYTES, DESC_LAYOUT, Epilogue, ErrorCode, Flag, Op, OpClass, OP_CLASS, ctx_layout
from .unit import ERROR_BITS

BEATS = DESC_BYTES // 16
COUNTERS = ("total", "matmul", "attention", "vector", "head", "memstall", "ops")


class Sequencer(wiring.Component):
    """``units``: the op each unit index runs (``units[i]`` is a tuple of the Ops unit i executes)."""

    def __init__(self, *, batch: int, units: list[tuple[Op, ...]], addr_width: int = 40):
        seen = [op for ops in units for op in ops]
        missing = [op.name for op in Op if op != Op.END and op not in seen]
        if missing or len(seen) != len(set(seen)) or Op.END in seen:
            raise ValueError(f"every op but END must belong to exactly one unit (missing: {missing})")
        if not 1 <= batch <= 16:
            raise ValueError("batch must be in 1..16")
        self.batch, self.units, self.addr_width = batch, units, addr_width
        n = len(units)
        self.n_units = n
        super().__init__({
            "axi": Out(AxiReadSignature(addr_width, 128)),
            # registers
            "start": In(1), "abort": In(1),
            "ddr_base": In(addr_width), "program": In(32), "program_size": In(32), "tokens": In(32),
            "position": In(32), "count": In(32),
            # status
            "busy": Out(1), "done": Out(1), "error": Out(1),
            "error_code": Out(ERROR_BITS), "error_desc": Out(32), "error_addr": Out(addr_width),
            "done_event": Out(1), "error_event": Out(1),
            # counters
            **{f"cycles_{c}": Out(64) for c in COUNTERS},
            # units
            "desc": Out(DESC_LAYOUT), "ctx": Out(ctx_layout(addr_width)),
            "unit_start": Out(n), "active": Out(n),
            "unit_done": In(n), "unit_stall": In(n),
            "unit_error": In(data.ArrayLayout(ERROR_BITS, n)),
            "unit_error_addr": In(data.ArrayLayout(addr_width, n)),
        })

    def elaborate(self, platform):
        m = Module()
        B, aw = self.batch, self.addr_width
        n = self.n_units

        # -- call registers, latched at START ------------------------------------------------
        count = Signal(32)
        position = Signal(32)
        base = Signal(aw)
        size = Signal(32)
        tokens = Signal(32)
        prog_addr = Signal(aw)  # DDR_BASE + PROGRAM
        blk = Signal(32)  # index of the block's first token
        idx = Signal(32)  # index of the current descriptor
        abort_pending = Signal()
        # the current descriptor's address and the bytes of program from it to the end, kept
        # incrementally so that no adder chain feeds a decision
        cur_addr = Signal(aw)
        rem = Signal(33)  # PROGRAM_SIZE - 64 * idx (may go negative: bit 32)
        cur_ok = Signal()  # descriptor idx lies inside the program
        next_ok = Signal()  # descriptor idx + 1 does
        m.d.comb += [cur_ok.eq(~rem[32] & (rem[:32] >= DESC_BYTES)),
                     next_ok.eq(~rem[32] & (rem[:32] >= 2 * DESC_BYTES))]

        def goto(i_zero: bool):
            """Move to descriptor 0 (``i_zero``) or idx + 1."""
            if i_zero:
                return [idx.eq(0), cur_addr.eq(prog_addr), rem.eq(size)]
            return [idx.eq(idx + 1), cur_addr.eq(cur_addr + DESC_BYTES), rem.eq(rem - DESC_BYTES)]

        # -- descriptor fetch: one 4-beat command per descriptor, one descriptor buffered ahead --
        m.submodules.reader = rd = AxiReader(addr_width=aw, data_width=128, len_width=4, max_burst=BEATS,
                                             fifo_depth=max(4, 2 * BEATS), max_outstanding=2)
        wiring.connect(m, wiring.flipped(self.axi), rd.axi)
        fetch_next = Signal()  # the fetched / held descriptor is idx + 1 (else idx)
        fetching = Signal()
        fbuf = Signal(8 * DESC_BYTES)
        fbuf_valid = Signal()
        beat = Signal(range(BEATS))
        fetch_req = Signal()
        req_next = Signal()  # fetch idx + 1 rather than idx
        m.d.comb += [rd.cmd.payload.addr.eq(Mux(req_next, cur_addr + DESC_BYTES, cur_addr)),
                     rd.cmd.payload.beats.eq(BEATS), rd.cmd.valid.eq(fetch_req & ~fetching),
                     rd.data.ready.eq(fetching)]
        with m.If(rd.cmd.valid & rd.cmd.ready):
            m.d.sync += [fetching.eq(1), fetch_next.eq(req_next), fbuf_valid.eq(0), beat.eq(0)]
        with m.If(rd.data.valid & rd.data.ready):
            m.d.sync += fbuf.word_select(beat, 128).eq(rd.data.payload)
            m.d.sync += beat.eq(beat + 1)
            with m.If(beat == BEATS - 1):
                m.d.sync += [fetching.eq(0), fbuf_valid.eq(1)]
        err_addr_of_reader = rd.error_addr

        # -- decode of the held descriptor, registered (valid one cycle after fbuf) --------------
        d = Signal(DESC_LAYOUT)
        m.d.comb += d.as_value().eq(fbuf)
        unit_of_op = {op: u for u, ops in enumerate(self.units) for op in ops}
        dec_onehot = Signal(n)
        dec_class = Signal(2)
        dec_end = Signal()
        dec_bad = Signal()
        dec_last_block = Signal()
        dec_ready = Signal()  # the decode registers describe fbuf
        m.d.sync += dec_ready.eq(fbuf_valid & ~(rd.cmd.valid & rd.cmd.ready))
        m.d.sync += [dec_onehot.eq(0), dec_end.eq(0), dec_bad.eq(1), dec_class.eq(0),
                     dec_last_block.eq((d.flags & Flag.LAST_BLOCK).any())]
        with m.Switch(d.op):
            for op, u in unit_of_op.items():
                with m.Case(int(op)):
                    m.d.sync += [dec_onehot.eq(1 << u), dec_bad.eq(0)]
                    if op == Op.MATMUL:
                        m.d.sync += dec_class.eq(Mux(d.mode == Epilogue.TOPK, OpClass.HEAD, OpClass.MATMUL))
                    else:
                        m.d.sync += dec_class.eq(OP_CLASS[op])
            with m.Case(int(Op.END)):
                m.d.sync += [dec_end.eq(1), dec_bad.eq(0)]

        # -- the block context seen by the units ---------------------------------------------
        left = Signal(32)  # tokens from this block on
        ctx = self.ctx
        m.d.comb += [ctx.ddr_base.eq(base), ctx.tokens.eq(tokens)]

        # -- the running op's completion, registered -------------------------------------------
        cycles = {c: getattr(self, f"cycles_{c}") for c in COUNTERS}
        run_class = Signal(2)
        fin = Signal()
        fin_err = Signal(ERROR_BITS)
        fin_addr = Signal(aw)
        stall_r = Signal()
        # a unit's stall may come straight from its AXI reader's logic: register it before combining
        stall_in = Signal(n)
        m.d.sync += [fin.eq((self.unit_done & self.active).any()), stall_in.eq(self.unit_stall),
                     stall_r.eq((stall_in & self.active).any())]
        sel_err = 0
        sel_addr = 0
        for u in range(n):
            sel_err = sel_err | Mux(self.active[u] & self.unit_done[u], self.unit_error[u], 0)
            sel_addr = sel_addr | Mux(self.active[u] & self.unit_done[u], self.unit_error_addr[u], 0)
        m.d.sync += [fin_err.eq(sel_err), fin_addr.eq(sel_addr)]

        fetch_failed = Signal()  # the call ended on a descriptor fetch's read error

        def fail(code, addr):
            """Record the error; DRAIN raises done once nothing is in flight."""
            return [self.error_code.eq(code), self.error_addr.eq(addr), self.error_desc.eq(idx)]

        m.d.sync += [self.done_event.eq(0), self.error_event.eq(0), self.unit_start.eq(0)]
        with m.If(self.abort & self.busy):
            m.d.sync += abort_pending.eq(1)
        with m.If(self.busy):
            m.d.sync += cycles["total"].eq(cycles["total"] + 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [count.eq(self.count), position.eq(self.position), base.eq(self.ddr_base),
                                 prog_addr.eq(self.ddr_base + self.program), size.eq(self.program_size),
                                 tokens.eq(self.tokens), blk.eq(0), left.eq(self.count), abort_pending.eq(0), fetch_failed.eq(0),
                                 fbuf_valid.eq(0), self.busy.eq(1), self.done.eq(0), self.error.eq(0),
                                 self.error_code.eq(0), self.error_addr.eq(0), self.error_desc.eq(0),
                                 rd.error_clear.eq(1)]
                    m.d.sync += [c.eq(0) for c in cycles.values()]
                    m.next = "BLOCK"
            with m.State("BLOCK"):
                m.d.sync += rd.error_clear.eq(0)
                # a new block: its token count, first position and token index
                with m.If(count == 0):
                    m.d.sync += fail(ErrorCode.BAD_CALL, 0)
                    m.next = "DRAIN"
                with m.Else():
                    m.d.sync += [ctx.T.eq(Mux(left >= B, B, left[:5])), ctx.pos0.eq(position + blk),
                                 ctx.tok0.eq(blk), ctx.last_block.eq(left <= B), *goto(True)]
                    m.next = "NEED"
            with m.State("NEED"):
                # descriptor idx must be in fbuf: fetch it unless it is there or on its way
                have = fbuf_valid & ~fetch_next & dec_ready
                with m.If(rd.error):
                    # the reader's error_addr follows its error flag a cycle later: DRAIN takes it
                    m.d.sync += [fail(ErrorCode.AXI_READ, 0), fetch_failed.eq(1)]
                    m.next = "DRAIN"
                with m.Elif(abort_pending):
                    m.d.sync += fail(ErrorCode.ABORTED, cur_addr)
                    m.next = "DRAIN"
                with m.Elif(~cur_ok):
                    m.d.sync += fail(ErrorCode.PROGRAM_BOUNDS, cur_addr)
                    m.next = "DRAIN"
                with m.Elif(have):
                    m.next = "DECODE"
                with m.Elif(~fetching & ~fbuf_valid):
                    m.d.comb += fetch_req.eq(1)
                with m.Elif(~fetching & fbuf_valid & fetch_next):
                    m.d.comb += fetch_req.eq(1)  # holds a stale prefetch: fetch idx itself
                m.d.sync += cycles["memstall"].eq(cycles["memstall"] + 1)
            with m.State("DECODE"):
                with m.If(dec_bad):
                    m.d.sync += fail(ErrorCode.BAD_OPCODE, cur_addr)
                    m.next = "DRAIN"
                with m.Elif(dec_end):
                    m.d.sync += [blk.eq(blk + B), left.eq(left - B), fbuf_valid.eq(0)]
                    with m.If(ctx.last_block):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1), self.done_event.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "BLOCK"
                with m.Elif(dec_last_block & ~ctx.last_block):
                    m.d.sync += [*goto(False), fbuf_valid.eq(0)]
                    m.next = "NEED"
                with m.Else():
                    m.d.sync += [self.desc.eq(d), run_class.eq(dec_class), self.unit_start.eq(dec_onehot),
                                 self.active.eq(dec_onehot), fbuf_valid.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                # prefetch the next descriptor while the op runs
                m.d.comb += req_next.eq(1)
                with m.If(~fetching & ~fbuf_valid & next_ok):
                    m.d.comb += fetch_req.eq(1)
                with m.Switch(run_class):
                    for cls in OpClass:
                        with m.Case(int(cls)):
                            c = cycles[cls.name.lower()]
                            m.d.sync += c.eq(c + 1)
                with m.If(stall_r):
                    m.d.sync += cycles["memstall"].eq(cycles["memstall"] + 1)
                with m.If((self.unit_done & self.active).any()):
                    m.d.sync += self.active.eq(0)
                with m.If(fin):
                    m.d.sync += cycles["ops"].eq(cycles["ops"] + 1)
                    with m.If(fin_err == ErrorCode.BAD_DESC):
                        m.d.sync += fail(fin_err, cur_addr)  # a unit cannot know its descriptor's address
                        m.next = "DRAIN"
                    with m.Elif(fin_err != 0):
                        m.d.sync += fail(fin_err, fin_addr)
                        m.next = "DRAIN"
                    with m.Elif(abort_pending):
                        m.d.sync += fail(ErrorCode.ABORTED, cur_addr)
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += [*goto(False), fetch_next.eq(0)]
                        m.next = "NEED"
            with m.State("DRAIN"):
                # an error ended the call: let a descriptor fetch in flight finish, then report
                m.d.sync += rd.error_clear.eq(0)
                with m.If(fetch_failed):
                    m.d.sync += self.error_addr.eq(err_addr_of_reader)
                with m.If(~fetching & ~rd.busy):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1), self.error.eq(1), self.done_event.eq(1),
                                 self.error_event.eq(1)]
                    m.next = "IDLE"
        return m
