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

        # -- call registers, latched at START ------------------------------------------------
        count = Signal(32)
        position = Signal(32)
        base = Signal(aw)
        program = Signal(32)
        size = Signal(32)
        tokens = Signal(32)
        blk = Signal(32)  # index of the block's first token
        idx = Signal(32)  # descriptor index in the program
        abort_pending = Signal()

        # -- descriptor fetch: one 4-beat command per descriptor, one descriptor buffered ahead --
        m.submodules.reader = rd = AxiReader(addr_width=aw, data_width=128, len_width=4, max_burst=BEATS,
                                             fifo_depth=2 * BEATS if 2 * BEATS >= 4 else 4, max_outstanding=2)
        wiring.connect(m, wiring.flipped(self.axi), rd.axi)
        fetch_idx = Signal(32)  # the descriptor being fetched / held in fbuf
        fetching = Signal()
        fbuf = Signal(8 * DESC_BYTES)
        fbuf_valid = Signal()
        beat = Signal(range(BEATS))
        fetch_req = Signal()
        req_idx = Signal(32)
        fetch_off = Signal(32)
        m.d.comb += fetch_off.eq(program + (req_idx << 6))
        m.d.comb += [rd.cmd.payload.addr.eq(base + fetch_off), rd.cmd.payload.beats.eq(BEATS),
                     rd.cmd.valid.eq(fetch_req & ~fetching), rd.data.ready.eq(fetching)]
        with m.If(rd.cmd.valid & rd.cmd.ready):
            m.d.sync += [fetching.eq(1), fetch_idx.eq(req_idx), fbuf_valid.eq(0), beat.eq(0)]
        with m.If(rd.data.valid & rd.data.ready):
            m.d.sync += fbuf.word_select(beat, 128).eq(rd.data.payload)
            m.d.sync += beat.eq(beat + 1)
            with m.If(beat == BEATS - 1):
                m.d.sync += [fetching.eq(0), fbuf_valid.eq(1)]
        fetch_err = Signal()  # a read error seen while fetching (sticky until START)
        fetch_err_addr = Signal(aw)
        m.d.comb += [fetch_err.eq(rd.error), fetch_err_addr.eq(rd.error_addr) if hasattr(rd, "error_addr") else
                     fetch_err_addr.eq(0)]

        # is descriptor i inside [PROGRAM, PROGRAM + PROGRAM_SIZE)?
        def in_bounds(i):
            return (i << 6) + DESC_BYTES <= size

        # -- the block context seen by the units ---------------------------------------------
        left = Signal(32)
        m.d.comb += left.eq(count - blk)
        ctx = self.ctx
        T_next = Signal(5)
        m.d.comb += T_next.eq(Mux(left >= B, B, left[:5]))
        m.d.comb += [ctx.ddr_base.eq(base), ctx.tokens.eq(tokens)]

        desc = self.desc
        unit_of_op = {op: u for u, ops in enumerate(self.units) for op in ops}
        n = self.n_units
        unit = Signal(range(max(n, 2)))
        op_class = Signal(2)
        valid_op = Signal()
        d = Signal(DESC_LAYOUT)  # fbuf viewed as a descriptor
        m.d.comb += d.as_value().eq(fbuf)
        with m.Switch(d.op):
            for op, u in unit_of_op.items():
                with m.Case(int(op)):
                    m.d.comb += [unit.eq(u), valid_op.eq(1)]
                    cls = OP_CLASS[op]
                    if op == Op.MATMUL:
                        m.d.comb += op_class.eq(Mux(d.mode == Epilogue.TOPK, OpClass.HEAD, OpClass.MATMUL))
                    else:
                        m.d.comb += op_class.eq(cls)
            with m.Case(int(Op.END)):
                m.d.comb += valid_op.eq(1)

        run_class = Signal(2)
        run_unit = Signal(range(max(n, 2)))
        cycles = {c: getattr(self, f"cycles_{c}") for c in COUNTERS}
        done_now = Signal()
        m.d.comb += done_now.eq((self.unit_done & self.active).any())
        err_now = Signal(ERROR_BITS)
        err_addr_now = Signal(aw)
        for u in range(n):
            with m.If(self.active[u]):
                m.d.comb += [err_now.eq(self.unit_error[u]), err_addr_now.eq(self.unit_error_addr[u])]

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
                                 program.eq(self.program), size.eq(self.program_size), tokens.eq(self.tokens),
                                 blk.eq(0), idx.eq(0), abort_pending.eq(0), fbuf_valid.eq(0),
                                 self.busy.eq(1), self.done.eq(0), self.error.eq(0),
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
                    m.d.sync += [ctx.T.eq(T_next), ctx.pos0.eq(position + blk), ctx.tok0.eq(blk),
                                 ctx.last_block.eq(left <= B), idx.eq(0)]
                    m.next = "NEED"
            with m.State("NEED"):
                # descriptor idx must be in fbuf; fetch it unless it is there or on its way
                m.d.comb += req_idx.eq(idx)
                with m.If(fetch_err):
                    m.d.sync += fail(ErrorCode.AXI_READ, fetch_err_addr)
                    m.next = "DRAIN"
                with m.Elif(abort_pending):
                    m.d.sync += fail(ErrorCode.ABORTED, base + program + (idx << 6))
                    m.next = "DRAIN"
                with m.Elif(~in_bounds(idx)):
                    m.d.sync += fail(ErrorCode.PROGRAM_BOUNDS, base + program + (idx << 6))
                    m.next = "DRAIN"
                with m.Elif(fbuf_valid & (fetch_idx == idx) & ~fetching):
                    m.next = "DECODE"
                with m.Elif(~fetching):
                    m.d.comb += fetch_req.eq(1)
                with m.If(fetching):
                    m.d.sync += cycles["memstall"].eq(cycles["memstall"] + 1)
            with m.State("DECODE"):
                skip = (d.flags & Flag.LAST_BLOCK).any() & ~ctx.last_block
                with m.If(~valid_op):
                    m.d.sync += fail(ErrorCode.BAD_OPCODE, base + program + (idx << 6))
                    m.next = "DRAIN"
                with m.Elif(d.op == Op.END):
                    m.d.sync += [blk.eq(blk + B), fbuf_valid.eq(0)]
                    with m.If(ctx.last_block):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1), self.done_event.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "BLOCK"
                with m.Elif(skip):
                    m.d.sync += idx.eq(idx + 1)
                    m.next = "NEED"
                with m.Else():
                    m.d.sync += [desc.eq(d), run_unit.eq(unit), run_class.eq(op_class),
                                 self.unit_start.eq(1 << unit), self.active.eq(1 << unit)]
                    m.next = "RUN"
            with m.State("RUN"):
                # prefetch the next descriptor while the op runs
                m.d.comb += req_idx.eq(idx + 1)
                with m.If(~fetching & ~(fbuf_valid & (fetch_idx == idx + 1)) & in_bounds(idx + 1)):
                    m.d.comb += fetch_req.eq(1)
                with m.Switch(run_class):
                    for cls in OpClass:
                        with m.Case(int(cls)):
                            c = cycles[cls.name.lower()]
                            m.d.sync += c.eq(c + 1)
                with m.If((self.unit_stall & self.active).any()):
                    m.d.sync += cycles["memstall"].eq(cycles["memstall"] + 1)
                with m.If(done_now):
                    m.d.sync += [self.active.eq(0), cycles["ops"].eq(cycles["ops"] + 1)]
                    with m.If(err_now != 0):
                        m.d.sync += fail(err_now, err_addr_now)
                        m.next = "DRAIN"
                    with m.Elif(abort_pending | self.abort):
                        m.d.sync += fail(ErrorCode.ABORTED, base + program + (idx << 6))
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += idx.eq(idx + 1)
                        m.next = "NEED"
            with m.State("DRAIN"):
                # an error ended the call: let a descriptor fetch in flight finish, then report
                with m.If(~fetching & ~rd.busy):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1), self.error.eq(1), self.done_event.eq(1),
                                 self.error_event.eq(1)]
                    m.next = "IDLE"
        return m
