"""The MATMUL op unit: one engine pass driven by a descriptor, its rows through the epilogue.

At ``start`` (rtl/control/unit.py contract) the unit latches the epilogue's controls (``desc.mode``,
``desc.dst``, the token lanes ``t < ctx.T``, lane ``T - 1`` for TOPK, ``desc.count``) and the engine's
base address ``ctx.ddr_base + desc.addr0``; the cycle after, it starts the engine (which latches the
rest: ``port_stride = desc.stride``, ``n_rows = desc.n``, ``k_chunks = desc.k``, ``n_groups = desc.aux``,
``w_scale = desc.scale0``, ``x_scale[b]`` = the held activation scales) and, for TOPK, pulses
``topk_clear`` with ``topk_k = desc.count`` (clamped to ``max_head_k``). With Flag.RAW the scales are
``w = pf(2**15, -15) = 1`` and ``x = pf(2**15, -31) = 2**-16``, so the engine's FX output is the raw
integer sum exactly (docs/numerics.md ``apply``).

The engine's rows go through :class:`~.epilogue.MatmulEpilogue` into the VMEM (token lanes ``>= T`` are
not written) or, for TOPK, to the head's top-K selector (``topk``, back-pressured). ``done`` when the
engine is done, the epilogue has drained and, for TOPK, ``topk_idle`` is high. ``error``:
ErrorCode.AXI_READ when the engine saw a read error, with ``error_addr`` the failing burst's address.
``stall``: the engine runs and a weight stream waits for DDR data.

``lane_absmax`` / ``lane_absmax_pos`` (per token lane: the largest ``|w|`` of the words this pass wrote
to the VMEM, and whether a word ``w >= 0`` reached it; :class:`~.epilogue.MatmulEpilogue`) are cleared
at ``start`` and kept after ``done`` until the next ``start``: NORM_QUANT with Flag.PRESCANNED reads
them instead of scanning the vector. Lanes ``>= T`` and TOPK passes write nothing and read 0.

Activations: ``act`` goes straight to the engine (the NORM_QUANT unit writes it while this unit is
idle); ``xs_we``/``xs_lane``/``xs_value`` write the per-lane activation scales held here.

Latency: the engine starts 1 cycle after ``start``; ``done`` follows the engine's last row by
``epilogue.FAST_WRITE + 3`` (7) cycles for STORE/RESIDUAL, ``epilogue.ACT_WRITE + 3`` (14) for
SILU/RELU2/GATE, and for TOPK by the selector's drain.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..accel_params import AccelParams
from ..axi import AxiReadSignature
from ..control.isa import Epilogue, ErrorCode, Flag
from ..control.unit import unit_members
from ..engine import MatmulEngine
from ..port import act_layout
from ..scale import PF_LAYOUT
from ..vmem import VmemReadSignature, VmemWriteSignature
from .epilogue import MatmulEpilogue, topk_layout

RAW_W_SCALE = {"m": 1 << 15, "e": -15}  # 1.0
RAW_X_SCALE = {"m": 1 << 15, "e": -31}  # 2**-16: with w = 1 the requantizer's shift is 0


class MatmulOp(wiring.Component):
    """Runs one MATMUL descriptor; see the module docstring."""

    def __init__(self, params: AccelParams):
        if params.addr_width != params.engine.addr_width:
            raise ValueError("the unit and its engine need one DDR address width")
        self.p = params
        ep = params.engine
        B, depth = params.batch, params.vmem_words
        members = unit_members(params.addr_width)
        members.update({f"axi{i}": Out(AxiReadSignature(ep.addr_width, 8 * ep.beat_bytes)) for i in range(ep.ports)})
        members.update({
            "act": In(stream.Signature(act_layout(ep))),
            "xs_we": In(1),
            "xs_lane": In(range(B)),
            "xs_value": In(PF_LAYOUT),
            "vr": Out(VmemReadSignature(B, depth)),
            "vw": Out(VmemWriteSignature(B, depth)),
            "topk": Out(stream.Signature(topk_layout(params))),
            "topk_clear": Out(1),
            "topk_k": Out(range(params.max_head_k + 1)),
            "topk_idle": In(1),
            "lane_absmax": Out(data.ArrayLayout(32, B)),
            "lane_absmax_pos": Out(B),
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.p
        B = p.batch
        m.submodules.engine = engine = MatmulEngine(p.engine)
        m.submodules.epilogue = epi = MatmulEpilogue(p)
        desc, ctx = self.desc, self.ctx

        # activation scales, written by the NORM_QUANT unit
        x_scale = Signal(data.ArrayLayout(PF_LAYOUT, B))
        with m.If(self.xs_we):
            m.d.sync += x_scale[self.xs_lane].eq(self.xs_value)
        wiring.connect(m, wiring.flipped(self.act), engine.act)
        for i in range(p.engine.ports):
            wiring.connect(m, wiring.flipped(getattr(self, f"axi{i}")), getattr(engine, f"axi{i}"))

        # latched at start
        mode = Signal(Epilogue)
        raw = Signal()
        dst = Signal.like(epi.dst)
        lanes = Signal(B)
        last_lane = Signal.like(epi.last_lane)
        base = Signal(p.addr_width)
        is_topk = Signal()
        with m.If(self.start):
            m.d.sync += [mode.eq(desc.mode), raw.eq((desc.flags & Flag.RAW) != 0), dst.eq(desc.dst),
                         last_lane.eq(ctx.T - 1), base.eq(ctx.ddr_base + desc.addr0),
                         is_topk.eq(desc.mode == Epilogue.TOPK),
                         self.topk_k.eq(Mux(desc.count > p.max_head_k, p.max_head_k, desc.count))]
            for t in range(B):
                m.d.sync += lanes[t].eq(ctx.T > t)
        m.d.comb += [epi.mode.eq(mode), epi.dst.eq(dst), epi.lanes.eq(lanes), epi.last_lane.eq(last_lane),
                     epi.clear.eq(self.start),
                     self.lane_absmax.eq(epi.lane_absmax), self.lane_absmax_pos.eq(epi.lane_absmax_pos)]

        # the engine: its pass registers are latched at its start (desc is steady until done)
        m.d.comb += [
            engine.base.eq(base), engine.port_stride.eq(desc.stride), engine.n_rows.eq(desc.n),
            engine.k_chunks.eq(desc.k), engine.n_groups.eq(desc.aux),
            engine.w_scale.eq(Mux(raw, PF_LAYOUT.const(RAW_W_SCALE), desc.scale0)),
        ]
        for b in range(B):
            m.d.comb += engine.x_scale[b].eq(Mux(raw, PF_LAYOUT.const(RAW_X_SCALE), x_scale[b]))
        wiring.connect(m, engine.out, epi.inp)
        wiring.connect(m, epi.vr, wiring.flipped(self.vr))
        wiring.connect(m, epi.vw, wiring.flipped(self.vw))
        wiring.connect(m, epi.topk, wiring.flipped(self.topk))

        m.d.sync += [engine.start.eq(0), self.topk_clear.eq(0), self.done.eq(0)]
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [engine.start.eq(1), self.topk_clear.eq(desc.mode == Epilogue.TOPK),
                                 self.error.eq(ErrorCode.OK), self.error_addr.eq(0)]
                    m.next = "START"
            with m.State("START"):  # the engine takes start now; its done is cleared at this edge
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.stall.eq(engine.stall)
                with m.If(engine.done):
                    m.next = "DRAIN"
            # the engine's last row left its output register before done rose, so the epilogue's idle
            # (one cycle late) already counts it
            with m.State("DRAIN"):
                with m.If(epi.idle & (~is_topk | self.topk_idle)):
                    m.d.sync += [self.done.eq(1), self.error.eq(Mux(engine.error, ErrorCode.AXI_READ, ErrorCode.OK)),
                                 self.error_addr.eq(engine.error_addr)]
                    m.next = "DONE"
            with m.State("DONE"):
                m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
