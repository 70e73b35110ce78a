"""Ternary dot products of one beat against the current activations, for every lane and vector.

Each lane ``l`` owns ``bytes_per_lane`` bytes of the beat (5 trits each) and forms, for every batch
vector ``b``, ``partial[l, b] = sum_i trit[l, i] * x[b, i]`` over the ``5 * bytes_per_lane`` activations
of the current column chunk (the same activations for all lanes). Two implementations:

* ``tree``: decode trits (ROM), pick ``x``, ``-x`` or 0 per trit (``-x`` formed once per vector and
  shared by all lanes), add with a balanced tree.
* ``lut`` (TeLLMe-style): split each byte exactly into its low three trits (``byte % 27``) and high two
  (``byte // 27``); per vector, precompute the 27 sums of ±x over the first three activations and the
  9 over the last two once for all lanes; each lane then selects two table entries and adds them.

Latency 2 cycles (decode / tables registered, then sums registered), one beat per cycle, no stalls.
docs/dot-product.md compares the two by Yosys LUTs per ternary MAC.
"""
from __future__ import annotations

from amaranth.hdl import Array, C, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .trit_decode import TRITS_PER_BYTE, decode_byte


def _tree_sum(m: Module, terms: list, width: int):
    """Balanced adder tree (pairwise) of signed terms."""
    while len(terms) > 1:
        nxt = []
        for i in range(0, len(terms) - 1, 2):
            s = Signal(signed(width))
            m.d.comb += s.eq(terms[i] + terms[i + 1])
            nxt.append(s)
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


class TreeLane(wiring.Component):
    """One lane of the ``tree`` kind: ``partial[b] = sum_i t_i * x[b, i]``, registered (latency 1).
    ``x``/``nx`` are the (shared) activations and their negations."""

    def __init__(self, tpl: int, batch: int, width: int):
        self.tpl, self.batch, self.width = tpl, batch, width
        super().__init__({
            "codes": In(data.ArrayLayout(2, tpl)),
            "x": In(data.ArrayLayout(signed(9), batch * tpl)),
            "nx": In(data.ArrayLayout(signed(9), batch * tpl)),
            "partial": Out(data.ArrayLayout(signed(width), batch)),
        })

    def elaborate(self, platform):
        m = Module()
        for b in range(self.batch):
            terms = []
            for i in range(self.tpl):
                t = Signal(signed(9), name=f"t{b}_{i}")
                nz, neg = self.codes[i][0], self.codes[i][1]
                with m.If(nz):
                    m.d.comb += t.eq(Mux(neg, self.nx[b * self.tpl + i], self.x[b * self.tpl + i]))
                terms.append(t)
            m.d.sync += self.partial[b].eq(_tree_sum(m, terms, self.width))
        return m


class LutLane(wiring.Component):
    """One lane of the ``lut`` kind: per byte, ``t3[b, j][lo_j] + t2[b, j][hi_j]``, summed over the
    lane's bytes, registered (latency 1). The tables are shared by all lanes."""

    def __init__(self, bpl: int, batch: int, width: int):
        self.bpl, self.batch, self.width = bpl, batch, width
        super().__init__({
            "lo": In(data.ArrayLayout(5, bpl)),
            "hi": In(data.ArrayLayout(4, bpl)),
            "t3": In(data.ArrayLayout(data.ArrayLayout(signed(11), 27), batch * bpl)),
            "t2": In(data.ArrayLayout(data.ArrayLayout(signed(10), 9), batch * bpl)),
            "partial": Out(data.ArrayLayout(signed(width), batch)),
        })

    def elaborate(self, platform):
        m = Module()
        for b in range(self.batch):
            terms = []
            for j in range(self.bpl):
                s = Signal(signed(self.width), name=f"s{b}_{j}")
                t3 = self.t3[b * self.bpl + j]
                t2 = self.t2[b * self.bpl + j]
                m.d.comb += s.eq(t3[self.lo[j]] + t2[self.hi[j]])
                terms.append(s)
            m.d.sync += self.partial[b].eq(_tree_sum(m, terms, self.width))
        return m


class DotArray(wiring.Component):
    """``lanes`` x ``batch`` ternary dot products per cycle (see module docstring).

    ``beat``: the weight beat (byte 0 = bits 7:0; lane l = bytes ``l*bpl .. l*bpl+bpl-1``).
    ``x``: activations, ``x[b * 5*bpl + i]`` is vector b's activation for column i of the chunk.
    ``valid``: the inputs are a real beat. ``partial[l * batch + b]`` and ``partial_valid`` follow 2
    cycles later.
    """

    def __init__(self, *, lanes: int = 16, bytes_per_lane: int = 1, batch: int = 1, kind: str = "tree"):
        if lanes < 1 or bytes_per_lane < 1 or batch < 1:
            raise ValueError("lanes, bytes_per_lane and batch must be >= 1")
        if kind not in ("tree", "lut"):
            raise ValueError(f"kind must be 'tree' or 'lut', not {kind!r}")
        self.lanes, self.bpl, self.batch, self.kind = lanes, bytes_per_lane, batch, kind
        self.tpl = TRITS_PER_BYTE * bytes_per_lane
        self.partial_width = (127 * self.tpl).bit_length() + 1
        super().__init__({
            "beat": In(8 * lanes * bytes_per_lane),
            "x": In(data.ArrayLayout(signed(8), batch * self.tpl)),
            "valid": In(1),
            "partial": Out(data.ArrayLayout(signed(self.partial_width), lanes * batch)),
            "partial_valid": Out(1),
        })

    def _byte(self, lane: int, j: int):
        k = lane * self.bpl + j
        return self.beat[8 * k: 8 * k + 8]

    def elaborate(self, platform):
        m = Module()
        v1 = Signal()
        m.d.sync += [v1.eq(self.valid), self.partial_valid.eq(v1)]
        if self.kind == "tree":
            self._tree(m)
        else:
            self._lut(m)
        return m

    def _tree(self, m: Module):
        tpl, B, W = self.tpl, self.batch, self.partial_width
        # stage 1: trit codes per lane; x and -x per vector (shared by every lane)
        xs = Signal(data.ArrayLayout(signed(9), B * tpl))
        nxs = Signal(data.ArrayLayout(signed(9), B * tpl))
        for i in range(B * tpl):
            m.d.sync += [xs[i].eq(self.x[i]), nxs[i].eq(-self.x[i])]
        for lane in range(self.lanes):
            m.submodules[f"lane{lane}"] = unit = TreeLane(tpl, B, W)
            k = 0
            for j in range(self.bpl):
                for code in decode_byte(m, self._byte(lane, j)):
                    m.d.sync += unit.codes[k].eq(code.as_value())
                    k += 1
            m.d.comb += [unit.x.eq(xs), unit.nx.eq(nxs)]
            # stage 2 (inside the lane): select and add
            for b in range(B):
                m.d.comb += self.partial[lane * B + b].eq(unit.partial[b])

    def _lut(self, m: Module):
        tpl, B, W = self.tpl, self.batch, self.partial_width
        lo_rom = Array(C(v % 27, 5) for v in range(256))
        hi_rom = Array(C(v // 27 % 9, 4) for v in range(256))  # base-3 digits, like the trit ROM
        # stage 1: per (vector, byte position) tables of signed sums, shared by every lane
        t3 = Signal(data.ArrayLayout(data.ArrayLayout(signed(11), 27), B * self.bpl))
        t2 = Signal(data.ArrayLayout(data.ArrayLayout(signed(10), 9), B * self.bpl))
        for b in range(B):
            for j in range(self.bpl):
                x = [self.x[b * tpl + 5 * j + i] for i in range(5)]
                pair = {}
                for d1 in range(3):
                    for d2 in range(3):
                        s = Signal(signed(10), name=f"pair{b}_{j}_{d1}{d2}")
                        m.d.comb += s.eq((d1 - 1) * x[1] + (d2 - 1) * x[2])
                        pair[d1, d2] = s
                for c in range(27):
                    d0, d1, d2 = c % 3, c // 3 % 3, c // 9
                    m.d.sync += t3[b * self.bpl + j][c].eq(pair[d1, d2] + (d0 - 1) * x[0])
                for c in range(9):
                    m.d.sync += t2[b * self.bpl + j][c].eq((c % 3 - 1) * x[3] + (c // 3 - 1) * x[4])
        for lane in range(self.lanes):
            m.submodules[f"lane{lane}"] = unit = LutLane(self.bpl, B, W)
            for j in range(self.bpl):
                byte = self._byte(lane, j)
                m.d.sync += [unit.lo[j].eq(lo_rom[byte]), unit.hi[j].eq(hi_rom[byte])]
            m.d.comb += [unit.t3.eq(t3), unit.t2.eq(t2)]
            # stage 2 (inside the lane): two lookups per byte, summed
            for b in range(B):
                m.d.comb += self.partial[lane * B + b].eq(unit.partial[b])
