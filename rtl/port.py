"""One weight stream of the engine: AXI reader -> trit dot products -> accumulators -> requantizer.

The port owns every ``ports``-th row group of the matrix (``lanes`` rows each) and reads its packed
region (quant/layout.py) as one sequential stream: per group, ``k_chunks`` beats, each carrying
``5 * bytes_per_lane`` columns for all ``lanes`` rows. For every beat it reads the matching column
chunk of the ``batch`` activation vectors from its on-chip copy of the activations, adds the lane
dot products into ``lanes x batch`` accumulators, and after the group's last beat hands the sums to a
drain that feeds the requantizer one row (all vectors) per cycle while the next group accumulates.

Throughput: one beat per cycle, unless a group's last beat arrives while the previous group is still
draining: a group needs ``k_chunks >= lanes + 4`` beats to hide its drain (and the engine's one-row-per-
cycle merge needs ``k_chunks >= lanes * ports`` when every port runs). Latency from a beat to its
accumulation: 4 cycles (activation read, decode, dot, accumulate).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .axi import AxiReadSignature
from .axi.reader import AxiReader
from .dot import DotArray
from .params import EngineParams
from .requant import Requant


def act_layout(p: EngineParams) -> data.StructLayout:
    """One activation write: vector ``b``, column chunk ``chunk``, its ``5 * bpl`` int8 values."""
    return data.StructLayout({"b": range(p.batch), "chunk": range(p.max_chunks), "data": 8 * p.trits_per_lane})


def out_layout(p: EngineParams) -> data.StructLayout:
    return data.StructLayout({"row": p.row_width, "value": data.ArrayLayout(signed(32), p.batch)})


class EnginePort(wiring.Component):
    """Port ``index`` of an engine with parameters ``params``.

    Latched when ``start`` is pulsed: ``base`` (byte address of this port's region), ``k_chunks`` (beats
    per row group; 0 makes an empty pass), ``n_groups`` (row groups of this port), ``n_rows`` (rows of the
    matrix; padding rows are not emitted). ``m`` and ``shift`` (per-vector requantization, from
    :class:`ScaleCombine`) must stay put while ``busy``.
    ``act``: activation writes (no back-pressure; write before ``start``).
    ``out``: requantized rows. ``error``: an AXI read error happened in this pass; ``error_addr``: the
    address of the first burst that failed (one cycle after ``error`` rises). ``stall``: beats are
    still expected but the reader has none (waiting for DDR).
    """

    def __init__(self, params: EngineParams, index: int):
        if not 0 <= index < params.ports:
            raise ValueError(f"port index {index} outside 0..{params.ports - 1}")
        self.p, self.index = params, index
        self.groups_max = params.max_groups
        super().__init__({
            "axi": Out(AxiReadSignature(params.addr_width, 8 * params.beat_bytes)),
            "start": In(1),
            "base": In(params.addr_width),
            "k_chunks": In(range(params.max_chunks + 1)),
            "n_groups": In(range(self.groups_max + 1)),
            "n_rows": In(range(params.max_n + 1)),
            "m": In(data.ArrayLayout(16, params.batch)),
            "shift": In(data.ArrayLayout(signed(8), params.batch)),
            "act": In(stream.Signature(act_layout(params), always_ready=True)),
            "out": Out(stream.Signature(out_layout(params))),
            "busy": Out(1),
            "error": Out(1),
            "error_addr": Out(params.addr_width),
            "stall": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        B, L, tpl = p.batch, p.lanes, p.trits_per_lane
        len_width = (p.max_chunks * self.groups_max).bit_length()
        beats_total = Signal(len_width)
        # the pass registers, latched at start (the host may prepare the next pass meanwhile)
        k_chunks = Signal.like(self.k_chunks)
        n_groups = Signal.like(self.n_groups)
        n_rows = Signal.like(self.n_rows)

        m.submodules.reader = reader = AxiReader(addr_width=p.addr_width, data_width=8 * p.beat_bytes,
                                                 len_width=len_width, max_burst=p.max_burst,
                                                 fifo_depth=p.fifo_depth)
        wiring.connect(m, wiring.flipped(self.axi), reader.axi)
        m.d.comb += [self.error.eq(reader.error), self.error_addr.eq(reader.error_addr),
                     reader.error_clear.eq(self.start)]

        # activations: one word of B x 5*bpl int8 per column chunk, written per vector
        m.submodules.act_mem = act_mem = Memory(shape=8 * tpl * B, depth=p.max_chunks, init=[])
        wr = act_mem.write_port(granularity=8 * tpl)
        rd = act_mem.read_port(transparent_for=())
        m.d.comb += [wr.addr.eq(self.act.payload.chunk), wr.data.eq(self.act.payload.data.replicate(B))]
        for b in range(B):
            m.d.comb += wr.en[b].eq(self.act.valid & (self.act.payload.b == b))

        # -- issue: request the region, then accept beats -------------------------------------------
        running = Signal()  # beats still to be accepted
        cmd_pending = Signal()
        chunk = Signal(range(p.max_chunks + 1))
        group = Signal(range(self.groups_max + 1))
        reserved = Signal()  # the drain buffer is promised to the group whose last beat was accepted
        groups_drained = Signal(range(self.groups_max + 1))
        is_last = Signal()  # chunk == k_chunks - 1, kept in a register (it gates the reader's ready)
        work = (self.n_groups != 0) & (self.k_chunks != 0)  # k_chunks == 0 or n_groups == 0: empty pass
        with m.If(self.start):
            m.d.sync += [beats_total.eq(self.k_chunks * self.n_groups), cmd_pending.eq(work), running.eq(work),
                         chunk.eq(0), group.eq(0), groups_drained.eq(0), reserved.eq(0),
                         is_last.eq(self.k_chunks == 1), k_chunks.eq(self.k_chunks),
                         n_groups.eq(Mux(work, self.n_groups, 0)), n_rows.eq(self.n_rows)]
        base = Signal.like(self.base)
        with m.If(self.start):
            m.d.sync += base.eq(self.base)
        m.d.comb += [reader.cmd.payload.addr.eq(base), reader.cmd.payload.beats.eq(beats_total),
                     reader.cmd.valid.eq(cmd_pending)]
        with m.If(reader.cmd.valid & reader.cmd.ready):
            m.d.sync += cmd_pending.eq(0)

        accept = Signal()
        m.d.comb += self.stall.eq(running & ~reader.data.valid)
        m.d.comb += [reader.data.ready.eq(running & ~(is_last & reserved)),
                     accept.eq(reader.data.valid & reader.data.ready),
                     rd.addr.eq(chunk), rd.en.eq(accept)]
        with m.If(accept):
            with m.If(is_last):
                m.d.sync += [chunk.eq(0), group.eq(group + 1), reserved.eq(1), is_last.eq(k_chunks == 1)]
                with m.If(group == n_groups - 1):
                    m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += [chunk.eq(chunk + 1), is_last.eq(chunk == k_chunks - 2)]

        # -- compute: beat and activations (1 cycle later, from the memory) -> dot array (2 cycles) --
        beat_r = Signal(8 * p.beat_bytes)
        v_r = Signal()
        m.d.sync += [v_r.eq(accept), beat_r.eq(reader.data.payload)]
        # flags travel beside the data: first/last beat of a group, and the group index
        flags = data.StructLayout({"first": 1, "last": 1, "group": range(self.groups_max + 1)})
        f0 = Signal(flags)
        m.d.comb += [f0.first.eq(chunk == 0), f0.last.eq(is_last), f0.group.eq(group)]
        delay = [Signal(flags, name=f"flags{i}") for i in range(3)]
        m.d.sync += [delay[0].eq(f0), delay[1].eq(delay[0]), delay[2].eq(delay[1])]

        m.submodules.dot = dot = DotArray(lanes=L, bytes_per_lane=p.bytes_per_lane, batch=B, kind=p.dot)
        m.d.comb += [dot.beat.eq(beat_r), dot.x.eq(rd.data), dot.valid.eq(v_r)]
        fl = delay[2]

        # -- accumulate; the last beat of a group moves the sums into the drain buffer ---------------
        AW = p.acc_width
        acc = [Signal(signed(AW), name=f"acc{i}") for i in range(L * B)]
        shadow = [Signal(signed(AW), name=f"shadow{i}") for i in range(L * B)]
        shadow_valid = Signal()
        shadow_group = Signal(range(self.groups_max + 1))
        drain_lane = Signal(range(L))
        for i in range(L * B):
            nxt = Signal(signed(AW), name=f"nxt{i}")
            m.d.comb += nxt.eq(dot.partial[i] + Mux(fl.first, 0, acc[i]))
            with m.If(dot.partial_valid):
                m.d.sync += acc[i].eq(nxt)
                with m.If(fl.last):
                    m.d.sync += shadow[i].eq(nxt)
        with m.If(dot.partial_valid & fl.last):
            m.d.sync += [shadow_valid.eq(1), shadow_group.eq(fl.group), drain_lane.eq(0)]

        # -- drain: one row (all vectors) per cycle into the requantizer, shifting the buffer --------
        m.submodules.requant = rq = Requant(batch=B, acc_width=AW, row_width=p.row_width)
        m.d.comb += [rq.m.eq(self.m), rq.shift.eq(self.shift)]
        wiring.connect(m, rq.out, wiring.flipped(self.out))
        row = Signal(range(p.max_n + L * p.ports))
        m.d.comb += row.eq((shadow_group * p.ports + self.index) * L + drain_lane)
        real = row < n_rows
        m.d.comb += [rq.inp.payload.row.eq(row), rq.inp.valid.eq(shadow_valid & real)]
        for b in range(B):
            m.d.comb += rq.inp.payload.acc[b].eq(shadow[b])
        step = shadow_valid & (~real | rq.inp.ready)
        with m.If(step):
            for i in range(L * B - B):
                m.d.sync += shadow[i].eq(shadow[i + B])
            m.d.sync += drain_lane.eq(drain_lane + 1)
            with m.If(drain_lane == L - 1):
                m.d.sync += [shadow_valid.eq(0), reserved.eq(0), groups_drained.eq(groups_drained + 1)]

        # registered (it feeds the engine's done logic); start counts as busy so it never lags behind
        m.d.sync += self.busy.eq(self.start | cmd_pending | running | v_r | (groups_drained != n_groups) |
                                 ~rq.idle | reader.busy)
        return m
