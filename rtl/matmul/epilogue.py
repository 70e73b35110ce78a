"""The matmul epilogue: engine output rows (all ``B`` token lanes of row ``r`` at once) into the VMEM, or
lane ``last_lane`` of each row towards the head's top-K selector.

Per row ``r`` with FX values ``y[t]``, for the token lanes set in ``lanes`` (the others keep their word),
``mode`` (an :class:`~ternfpga.rtl.control.isa.Epilogue`) writes VMEM word ``dst + r``:

- STORE ``y``; RESIDUAL ``sat32(old + y)`` (``old``: the word read for this row),
- SILU / RELU2 ``act(y)``; GATE ``sat32(rshift_round(old * y, 16))`` (:class:`~.act.ActLane` per lane),
- TOPK: no VMEM access; ``{r, y[last_lane]}`` leaves on ``topk`` (saturated to the selector's value
  width, which keeps the order; the head runs this pass with Flag.RAW, whose sums always fit).

The VMEM modes never back-pressure (``inp.ready`` is 1): rows go through a fixed pipeline. A row is
registered with its word address (cycle 1), the VMEM read of the read-modify-write modes is issued then
and its word arrives in cycle 2; STORE/RESIDUAL write in cycle 4, the ActLane modes in cycle
``3 + act.LATENCY``. Rows are unique within a pass, so a row's read never races an earlier row's write.
TOPK rows pass one register slice, so ``inp.ready`` follows ``topk.ready`` through one gate.

``mode``, ``dst``, ``lanes`` and ``last_lane`` must be steady while rows are in flight. ``idle`` (one
cycle late): no row was in the pipeline in the previous cycle; once no more rows come, it means every
VMEM write has been made and every top-K row handed over.

Per token lane ``t``, ``lane_absmax[t]`` is the largest ``|w|`` of the words ``w`` written to lane ``t``
since ``clear`` (``|-2**31| = 2**31``, as NORM_QUANT's own pass takes it; 0 when none) and
``lane_absmax_pos[t]`` says whether a word ``w >= 0`` reached it (absmax quantization rounds half up,
so a vector's int8 values depend on the sign of its extreme, not only on its magnitude: NqScalar ``M'``).
The pair is the maximum of ``2|w| + (w >= 0)``: the magnitude is registered the cycle after the write,
the maximum the cycle after that, so it is final in the cycle ``idle`` (one cycle late) rises. NORM_QUANT
takes it with Flag.PRESCANNED instead of a pass over the vector.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..accel_params import AccelParams
from ..control.isa import Epilogue
from ..port import out_layout
from ..vmem import WORD_BITS, VmemReadSignature, VmemWriteSignature
from . import act
from .act import ActLane, ActMode

FAST_WRITE = 4  # cycle of a STORE/RESIDUAL write after the row leaves the engine
ACT_WRITE = 3 + act.LATENCY  # cycle of a SILU/RELU2/GATE write


def topk_layout(params: AccelParams) -> data.StructLayout:
    """What the epilogue hands the top-K selector: the row and its (raw) score."""
    return data.StructLayout({"row": params.engine.row_width, "value": signed(params.engine.acc_width)})


class MatmulEpilogue(wiring.Component):
    """Engine rows -> VMEM words of every lane / top-K rows; see the module docstring."""

    def __init__(self, params: AccelParams):
        self.p = params
        B, depth = params.batch, params.vmem_words
        super().__init__({
            "inp": In(stream.Signature(out_layout(params.engine))),
            "mode": In(Epilogue),
            "dst": In(range(max(depth, 2))),
            "lanes": In(B),
            "last_lane": In(range(B)),
            "vr": Out(VmemReadSignature(B, depth)),
            "vw": Out(VmemWriteSignature(B, depth)),
            "topk": Out(stream.Signature(topk_layout(params))),
            "idle": Out(1),
            "clear": In(1),
            "lane_absmax": Out(data.ArrayLayout(WORD_BITS, B)),
            "lane_absmax_pos": Out(B),
        })

    def elaborate(self, platform):
        m = Module()
        B = self.p.batch
        AW = len(self.vr.addr)
        mode = self.mode
        is_topk = Signal()
        is_rmw = Signal()  # reads the old word
        is_fast = Signal()  # STORE / RESIDUAL
        m.d.comb += [is_topk.eq(mode == Epilogue.TOPK),
                     is_rmw.eq((mode == Epilogue.RESIDUAL) | (mode == Epilogue.GATE)),
                     is_fast.eq((mode == Epilogue.STORE) | (mode == Epilogue.RESIDUAL))]
        row = self.inp.payload.row
        y_in = self.inp.payload.value

        # -- TOPK: one register slice ----------------------------------------------------------------
        tk = self.topk
        take_topk = Signal()
        m.d.comb += [self.inp.ready.eq(~is_topk | ~tk.valid | tk.ready),
                     take_topk.eq(self.inp.valid & is_topk & (~tk.valid | tk.ready))]
        VW = len(tk.payload.value)
        pick = Signal(signed(32))
        m.d.comb += pick.eq(y_in[self.last_lane])
        high = pick[VW - 1:]
        fits = high.all() | ~high.any()
        with m.If(take_topk):
            m.d.sync += [tk.valid.eq(1), tk.payload.row.eq(row),
                         tk.payload.value.eq(Mux(fits, pick, Mux(pick[31], -(1 << (VW - 1)), (1 << (VW - 1)) - 1)))]
        with m.Elif(tk.ready):
            m.d.sync += tk.valid.eq(0)

        # -- VMEM modes: 1: word address; the read-modify-write modes read the old word ---------------
        v1 = Signal()
        addr1 = Signal(AW)
        y1 = Signal.like(y_in)
        m.d.sync += [v1.eq(self.inp.valid & ~is_topk), addr1.eq(self.dst + row), y1.eq(y_in)]
        m.d.comb += [self.vr.addr.eq(addr1), self.vr.en.eq(v1 & is_rmw)]
        # 2: the old word is on vr.data (this cycle only)
        v2 = Signal()
        addr2 = Signal(AW)
        y2 = Signal.like(y_in)
        m.d.sync += [v2.eq(v1), addr2.eq(addr1), y2.eq(y1)]
        old = [self.vr.data.word_select(t, WORD_BITS) for t in range(B)]

        # STORE / RESIDUAL: 3: the 33-bit sum (or y), 4: saturated into the write register
        v3 = Signal()
        addr3 = Signal(AW)
        sums = [Signal(signed(WORD_BITS + 1), name=f"sum{t}") for t in range(B)]
        m.d.sync += [v3.eq(v2 & is_fast), addr3.eq(addr2)]
        for t in range(B):
            m.d.sync += sums[t].eq(Mux(mode == Epilogue.RESIDUAL, old[t].as_signed() + y2[t], y2[t]))

        # SILU / RELU2 / GATE: one ActLane per token lane, the address alongside
        lanes = [ActLane() for _ in range(B)]
        act_mode = Signal(ActMode)
        with m.Switch(mode):
            with m.Case(Epilogue.SILU):
                m.d.comb += act_mode.eq(ActMode.SILU)
            with m.Case(Epilogue.RELU2):
                m.d.comb += act_mode.eq(ActMode.RELU2)
            with m.Default():
                m.d.comb += act_mode.eq(ActMode.GATE)
        act_valid = v2 & ~is_fast
        for t, lane in enumerate(lanes):
            m.submodules[f"lane{t}"] = lane
            m.d.comb += [lane.mode.eq(act_mode), lane.valid.eq(act_valid), lane.x.eq(y2[t]),
                         lane.a.eq(old[t].as_signed())]
        act_v = [Signal(name=f"act_v{i}") for i in range(act.LATENCY)]
        act_addr = [Signal(AW, name=f"act_addr{i}") for i in range(act.LATENCY)]
        m.d.sync += [act_v[0].eq(act_valid), act_addr[0].eq(addr2)]
        for i in range(1, act.LATENCY):
            m.d.sync += [act_v[i].eq(act_v[i - 1]), act_addr[i].eq(act_addr[i - 1])]

        # the write register: one source per op (the mode is fixed), so the two never collide
        fast = v3
        m.d.sync += [self.vw.addr.eq(Mux(fast, addr3, act_addr[-1])),
                     self.vw.en.eq(Mux(fast | act_v[-1], self.lanes, 0))]
        for t in range(B):
            s = sums[t]
            sat = Mux(s[WORD_BITS] == s[WORD_BITS - 1], s[:WORD_BITS], Mux(s[WORD_BITS], 1 << (WORD_BITS - 1),
                                                                           (1 << (WORD_BITS - 1)) - 1))
            m.d.sync += self.vw.data.word_select(t, WORD_BITS).eq(Mux(fast, sat, lanes[t].out))
        wv = Signal()
        m.d.sync += wv.eq(fast | act_v[-1])

        # -- the max |w| per lane of the words written (see the module docstring) --------------------
        for t in range(B):
            w = self.vw.data.word_select(t, WORD_BITS).as_signed()
            wrote = Signal(name=f"wrote{t}")
            mag = Signal(WORD_BITS, name=f"mag{t}")  # |w|, 2**31 for -2**31
            pos = Signal(name=f"pos{t}")
            m.d.sync += [wrote.eq(self.vw.en[t]), mag.eq(Mux(w[-1], -w, w)), pos.eq(~w[-1])]
            best = Cat(self.lane_absmax_pos[t], self.lane_absmax[t])
            with m.If(self.clear):
                m.d.sync += best.eq(0)
            with m.Elif(wrote & (Cat(pos, mag) > best)):
                m.d.sync += best.eq(Cat(pos, mag))

        busy = self.inp.valid | tk.valid | v1 | v2 | v3 | wv
        for v in act_v:
            busy = busy | v
        m.d.sync += self.idle.eq(~busy)
        return m
