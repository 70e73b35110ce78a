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

from amaranth.hdl import Array, C, Module, Signal, signed
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
        # stage 1: trit codes per lane, x and -x per vector
        codes = []
        for lane in range(self.lanes):
            lane_codes = []
            for j in range(self.bpl):
                for code in decode_byte(m, self._byte(lane, j)):
                    r = Signal(2)
                    m.d.sync += r.eq(code.as_value())
                    lane_codes.append(r)
            codes.append(lane_codes)
        xs, nxs = [], []
        for i in range(B * tpl):
            x = Signal(signed(9))
            nx = Signal(signed(9))
            m.d.sync += [x.eq(self.x[i]), nx.eq(-self.x[i])]
            xs.append(x)
            nxs.append(nx)
        # stage 2: select and add
        for lane in range(self.lanes):
            for b in range(B):
                terms = []
                for i in range(tpl):
                    t = Signal(signed(9))
                    nz, neg = codes[lane][i][0], codes[lane][i][1]
                    with m.If(nz):
                        m.d.comb += t.eq(Array([xs[b * tpl + i], nxs[b * tpl + i]])[neg])
                    terms.append(t)
                m.d.sync += self.partial[lane * B + b].eq(_tree_sum(m, terms, W))

    def _lut(self, m: Module):
        tpl, B, W = self.tpl, self.batch, self.partial_width
        lo_rom = Array(C(v % 27, 5) for v in range(256))
        hi_rom = Array(C(min(v // 27, 8), 4) for v in range(256))
        # stage 1: per lane byte codes; per (vector, byte position) tables of signed sums
        lo, hi = {}, {}
        for lane in range(self.lanes):
            for j in range(self.bpl):
                a, h = Signal(5), Signal(4)
                m.d.sync += [a.eq(lo_rom[self._byte(lane, j)]), h.eq(hi_rom[self._byte(lane, j)])]
                lo[lane, j], hi[lane, j] = a, h
        t3, t2 = {}, {}
        for b in range(B):
            for j in range(self.bpl):
                x = [self.x[b * tpl + 5 * j + i] for i in range(5)]
                pair = {}
                for d1 in range(3):
                    for d2 in range(3):
                        s = Signal(signed(10))
                        m.d.comb += s.eq((d1 - 1) * x[1] + (d2 - 1) * x[2])
                        pair[d1, d2] = s
                entries3 = []
                for c in range(27):
                    d0, d1, d2 = c % 3, c // 3 % 3, c // 9
                    r = Signal(signed(11))
                    m.d.sync += r.eq(pair[d1, d2] + (d0 - 1) * x[0])
                    entries3.append(r)
                entries2 = []
                for c in range(9):
                    r = Signal(signed(10))
                    m.d.sync += r.eq((c % 3 - 1) * x[3] + (c // 3 - 1) * x[4])
                    entries2.append(r)
                t3[b, j], t2[b, j] = Array(entries3), Array(entries2)
        # stage 2: two lookups per byte, summed over the lane's bytes
        for lane in range(self.lanes):
            for b in range(B):
                terms = []
                for j in range(self.bpl):
                    p = Signal(signed(W))
                    m.d.comb += p.eq(t3[b, j][lo[lane, j]] + t2[b, j][hi[lane, j]])
                    terms.append(p)
                m.d.sync += self.partial[lane * B + b].eq(_tree_sum(m, terms, W))
