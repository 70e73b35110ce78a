"""The ternary matmul engine: ``Y = W . X`` for ``batch`` int8 vectors, W streamed once per pass.

``ports`` :class:`EnginePort` s run in parallel, each with its own AXI4 read master on its own packed
region of W (quant/layout.py: row group g belongs to port g mod ports), so the engine consumes
``ports`` beats (``ports x 128`` bits on the KV260) per cycle. Activations live on chip (each port holds
a copy). Per pass the host:

1. writes the activations through ``act`` (vector ``b``, column chunk, ``5 * bytes_per_lane`` int8),
2. sets ``base`` (address of the tensor's packed section), ``port_stride`` (bytes between port
   regions), ``n_rows``, ``k_chunks`` (beats per row group), ``n_groups`` (row groups per port),
   ``w_scale`` (the tensor's pf) and ``x_scale[b]`` (each vector's pf),
3. pulses ``start`` (ignored while ``busy``); every register above is latched then, so the host may
   prepare the next pass at once. ``busy`` rises, FX rows stream out of ``out`` (any row order, all
   vectors of a row together), and ``done`` is set when the last row has left. ``error`` (cleared by
   ``start``) reports an AXI read error (SLVERR/DECERR) seen during the pass; the pass still completes.
   ``act`` is not ready while ``busy``.

Latency: about 9 cycles from ``start`` to the first read request, the memory latency, then one beat
per port per cycle while row groups have at least ``lanes * ports`` beats (the output merge carries
one row per cycle); the last 16 rows of each port drain after the last beat.

Every output equals ``sim/golden/matvec.py`` bit for bit (docs/numerics.md, "Linear layers").
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import AxiReadSignature
from .params import EngineParams
from .port import EnginePort, act_layout, out_layout
from .requant import max_shift
from .scale import PF_LAYOUT, ScaleCombine

SCALE_LATENCY = 3  # ScaleCombine's pipeline


class MatmulEngine(wiring.Component):
    """``ports`` weight streams, one output stream; see the module docstring for a pass."""

    def __init__(self, params: EngineParams | None = None):
        self.p = p = params or EngineParams()
        members = {f"axi{i}": Out(AxiReadSignature(p.addr_width, 8 * p.beat_bytes)) for i in range(p.ports)}
        members.update({
            # always accepted (ready is tied high); a plain stream so that it is a Verilog port
            "act": In(stream.Signature(act_layout(p))),
            "out": Out(stream.Signature(out_layout(p))),
            "start": In(1),
            "base": In(p.addr_width),
            "port_stride": In(p.addr_width),
            "n_rows": In(range(p.max_n + 1)),
            "k_chunks": In(range(p.max_chunks + 1)),
            "n_groups": In(range(p.max_groups + 1)),
            "w_scale": In(PF_LAYOUT),
            "x_scale": In(data.ArrayLayout(PF_LAYOUT, p.batch)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_addr": Out(p.addr_width),
            "stall": Out(1),
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.p
        ports = [EnginePort(p, i) for i in range(p.ports)]
        m.submodules.scale = scale = ScaleCombine(p.batch, max_shift(p.acc_width))
        # the pass registers are latched at start; start is ignored while busy
        w_scale = Signal.like(self.w_scale)
        x_scale = Signal.like(self.x_scale)
        base = Signal.like(self.base)
        stride = Signal.like(self.port_stride)
        n_rows = Signal.like(self.n_rows)
        k_chunks = Signal.like(self.k_chunks)
        n_groups = Signal.like(self.n_groups)
        accept_start = Signal()
        m.d.comb += [accept_start.eq(self.start & ~self.busy), scale.w.eq(w_scale), scale.x.eq(x_scale)]
        with m.If(accept_start):
            m.d.sync += [w_scale.eq(self.w_scale), x_scale.eq(self.x_scale), base.eq(self.base),
                         stride.eq(self.port_stride), n_rows.eq(self.n_rows), k_chunks.eq(self.k_chunks),
                         n_groups.eq(self.n_groups)]

        # start: wait for the scale products, then start every port with its region address
        pending = Signal(range(SCALE_LATENCY + 3))
        go = Signal()
        with m.If(accept_start):
            m.d.sync += [pending.eq(SCALE_LATENCY + 2), self.done.eq(0)]
        with m.Elif(pending != 0):
            m.d.sync += pending.eq(pending - 1)
        m.d.comb += go.eq(pending == 1)
        running = Signal()
        with m.If(go):
            m.d.sync += running.eq(1)

        m.d.comb += self.act.ready.eq(~self.busy)  # activations only change between passes
        outs = []
        errors = []
        busies = []
        stalls = []
        for i, port in enumerate(ports):
            m.submodules[f"port{i}"] = port
            wiring.connect(m, wiring.flipped(getattr(self, f"axi{i}")), port.axi)
            m.d.comb += [
                port.start.eq(go), port.k_chunks.eq(k_chunks), port.n_groups.eq(n_groups),
                port.n_rows.eq(n_rows), port.m.eq(scale.m), port.shift.eq(scale.shift),
                port.act.payload.eq(self.act.payload), port.act.valid.eq(self.act.valid),
            ]
            port_base = Signal(p.addr_width, name=f"base{i}")
            m.d.sync += port_base.eq(base + stride * i)
            m.d.comb += port.base.eq(port_base)
            outs.append(port.out)
            errors.append(port.error)
            busies.append(port.busy)
            stalls.append(port.stall)

        # round-robin merge of the port outputs into one registered stream
        turn = Signal(range(p.ports))
        pick = Signal(range(p.ports))
        any_valid = Signal()
        for k in reversed(range(p.ports)):  # lowest rotated index wins
            idx = Signal(range(p.ports), name=f"rr{k}")
            m.d.comb += idx.eq(_mod_add(turn, k, p.ports))
            with m.If(_valid_at(outs, idx)):
                m.d.comb += [pick.eq(idx), any_valid.eq(1)]
        take = Signal()
        m.d.comb += take.eq(any_valid & (~self.out.valid | self.out.ready))
        for i, o in enumerate(outs):
            m.d.comb += o.ready.eq(take & (pick == i))
        with m.If(take):
            m.d.sync += [self.out.valid.eq(1), turn.eq(_mod_add(pick, 1, p.ports))]
            with m.Switch(pick):
                for i, o in enumerate(outs):
                    with m.Case(i):
                        m.d.sync += self.out.payload.eq(o.payload)
        with m.Elif(self.out.ready):
            m.d.sync += self.out.valid.eq(0)

        ports_busy = Signal()
        m.d.comb += ports_busy.eq(_any(busies))
        m.d.comb += self.busy.eq((pending != 0) | running | self.out.valid)
        with m.If(running & ~go & ~ports_busy & ~self.out.valid):
            m.d.sync += [running.eq(0), self.done.eq(1)]
        # sticky for the pass: cleared by start, set by any port's read error. The address is the first
        # failing port's (the lowest index when several fail in one cycle), copied from that port
        # every cycle: a port's error_addr settles one cycle after its error, long before done.
        err_port = Signal(range(p.ports))
        with m.If(accept_start):
            m.d.sync += self.error.eq(0)
        with m.Elif(running & _any(errors) & ~self.error):
            m.d.sync += self.error.eq(1)
            for i in reversed(range(p.ports)):
                with m.If(errors[i]):
                    m.d.sync += err_port.eq(i)
        with m.Switch(err_port):
            for i, port in enumerate(ports):
                with m.Case(i):
                    m.d.sync += self.error_addr.eq(Mux(self.error, port.error_addr, 0))
        # registered: it only feeds counters
        m.d.sync += self.stall.eq(running & _any(stalls))
        return m



def _any(sigs):
    out = 0
    for s in sigs:
        out = out | s
    return out


def _valid_at(outs, idx):
    v = 0
    for i, o in enumerate(outs):
        v = v | (o.valid & (idx == i))
    return v


def _mod_add(x, k: int, n: int):
    """``(x + k) mod n`` for a signal ``x < n`` and a constant ``0 <= k < n``."""
    s = x + k
    return Mux(s >= n, s - n, s)
