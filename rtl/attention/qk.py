"""Attention scores of a chunk: ``s[l] = q8[l] . k8`` for every query lane ``l`` and every key row that
streams in (docs/numerics.md "Attention", step 1).

The chunk's queries (``lanes`` rows of up to ``max_beats`` 16-byte beats) are written into a small
distributed-RAM store before the K pass (``q_we``). K rows then stream in at one beat per cycle at most;
every lane multiplies the beat by its own query beat and sums the 16 products in a systolic DSP chain:
column ``i`` (beat byte ``i``) of every lane works on a beat ``i`` cycles after column 0, so each
column's post-add takes the previous column's registered partial sum (``P_i = P_{i-1} + q_i * k_i``,
the DSP48E2 PCIN cascade pattern). Column ``i`` sees the K byte through an ``i``-cycle delay and reads
its query byte from its own RAM at the beat index delayed alike, so the query store is 16 RAMs of
``lanes`` bytes, one per column. The chain's end is accumulated over the key's beats (``k_first`` restarts
it).

Beats may come with gaps (``k_valid`` low): the chain keeps flowing and the gaps' sums are dropped.
``score_valid`` pulses :attr:`latency` cycles after a key's ``k_last`` beat entered, with the key's
scores in ``score``; they hold until the next ``score_valid``.

Per lane and beat: 16 DSP48E2 multiplies (8 x 8 signed, registered operands and product).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .common import BEAT_BYTES, COLS, delay

CHAIN_LATENCY = COLS + 2  # beat registered -> last column's partial sum registered


class QkArray(wiring.Component):
    """``lanes`` query rows of up to ``max_beats`` beats against a stream of K beats."""

    def __init__(self, *, lanes: int, max_beats: int, score_width: int):
        if lanes < 1 or max_beats < 1:
            raise ValueError(f"QkArray needs lanes >= 1 and max_beats >= 1, not {lanes}, {max_beats}")
        if score_width < 21:
            raise ValueError(f"QkArray score_width {score_width} must be >= 21 (one beat's sum)")
        self.lanes, self.max_beats, self.score_width = lanes, max_beats, score_width
        # input register, chain, accumulator, snapshot
        self.latency = 1 + CHAIN_LATENCY + 1 + 1
        super().__init__({
            "q_we": In(1),
            "q_lane": In(range(max(lanes, 2))),
            "q_beat": In(range(max(max_beats, 2))),
            "q_data": In(8 * BEAT_BYTES),
            "k_valid": In(1),
            "k_data": In(8 * BEAT_BYTES),
            "k_beat": In(range(max(max_beats, 2))),
            "k_first": In(1),
            "k_last": In(1),
            "score": Out(data.ArrayLayout(signed(score_width), lanes)),
            "score_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L, SW = self.lanes, self.score_width

        # stage 0: the beat and its tags, registered
        v0, f0, l0 = Signal(), Signal(), Signal()
        d0 = Signal(8 * BEAT_BYTES)
        b0 = Signal.like(self.k_beat)
        m.d.sync += [v0.eq(self.k_valid), f0.eq(self.k_first), l0.eq(self.k_last), d0.eq(self.k_data),
                     b0.eq(self.k_beat)]

        beat_at = [b0]  # beat index delayed by i cycles: column i's query RAM address
        for i in range(1, COLS):
            nxt = Signal.like(b0, name=f"kb_d{i}")
            m.d.sync += nxt.eq(beat_at[-1])
            beat_at.append(nxt)

        partial = [None] * L
        for i in range(COLS):
            qmem = Memory(shape=8 * L, depth=max(self.max_beats, 2), init=[])
            m.submodules[f"q{i}"] = qmem
            wr = qmem.write_port(granularity=8)
            rd = qmem.read_port(domain="comb")
            m.d.comb += [wr.addr.eq(self.q_beat), wr.data.eq(self.q_data.word_select(i, 8).replicate(L)),
                         wr.en.eq(Mux(self.q_we, 1 << self.q_lane, 0)), rd.addr.eq(beat_at[i])]
            kbyte = delay(m, d0.word_select(i, 8), i, f"kbyte{i}")
            kreg = Signal(signed(8), name=f"kreg{i}")
            m.d.sync += kreg.eq(kbyte)
            width = ((i + 1) << 14).bit_length() + 1
            for lane in range(L):
                qreg = Signal(signed(8), name=f"qreg{lane}_{i}")
                prod = Signal(signed(16), name=f"prod{lane}_{i}")
                p = Signal(signed(width), name=f"p{lane}_{i}")
                m.d.sync += [qreg.eq(rd.data.word_select(lane, 8)), prod.eq(qreg * kreg)]
                m.d.sync += p.eq(prod if partial[lane] is None else partial[lane] + prod)
                partial[lane] = p

        # the chain's end for a beat entering stage 0 at cycle c is registered at c + CHAIN_LATENCY
        v_end = delay(m, v0, CHAIN_LATENCY, "v_end")
        f_end = delay(m, f0, CHAIN_LATENCY, "f_end")
        l_end = delay(m, l0, CHAIN_LATENCY, "l_end")
        acc = [Signal(signed(SW), name=f"acc{lane}") for lane in range(L)]
        with m.If(v_end):
            for lane in range(L):
                m.d.sync += acc[lane].eq(Mux(f_end, 0, acc[lane]) + partial[lane])
        key_end = Signal()
        m.d.sync += [key_end.eq(v_end & l_end), self.score_valid.eq(key_end)]
        with m.If(key_end):
            m.d.sync += [self.score[lane].eq(acc[lane]) for lane in range(L)]
        return m
