"""The VMEM behind a unit's read and write ports, for Amaranth-simulator testbenches: a numpy array
[depth, lanes] of int64 words (stored as their low 32 bits), 1-cycle read latency, lane-masked writes,
a read and a write of one address in one cycle returning the old word (as ``rtl/vmem.py``)."""
from __future__ import annotations

import numpy as np

WORD_MASK = 0xFFFF_FFFF


def to_words(values) -> np.ndarray:
    """Signed values -> their 32-bit two's complement words."""
    return np.asarray(values, dtype=np.int64) & WORD_MASK


def from_words(words) -> np.ndarray:
    """32-bit words -> signed int64."""
    w = np.asarray(words, dtype=np.int64) & WORD_MASK
    return np.where(w >> 31, w - (1 << 32), w)


class VmemModel:
    def __init__(self, lanes: int, depth: int, read=None, write=None):
        self.lanes, self.depth = lanes, depth
        self.words = np.zeros((depth, lanes), dtype=np.int64)
        self.read, self.write = read, write
        self.reads = self.writes = 0

    def load(self, addr: int, lane: int, values) -> None:
        v = to_words(values)
        self.words[addr:addr + len(v), lane] = v

    def dump(self, addr: int, lane: int, n: int) -> np.ndarray:
        return from_words(self.words[addr:addr + n, lane])

    def _row(self, addr: int) -> int:
        out = 0
        for t in range(self.lanes):
            out |= int(self.words[addr, t]) << (32 * t)
        return out

    async def process(self, ctx):
        r, w = self.read, self.write
        while True:
            sampled = []
            if r is not None:
                sampled += [r.addr, r.en]
            if w is not None:
                sampled += [w.addr, w.en, w.data]
            vals = (await ctx.tick().sample(*sampled))[2:] if sampled else ()
            i = 0
            if r is not None:
                raddr, ren = vals[0], vals[1]
                i = 2
                if ren:
                    assert 0 <= raddr < self.depth, f"VMEM read outside 0..{self.depth - 1}: {raddr}"
                    ctx.set(r.data, self._row(raddr))  # before this edge's write: the old word
                    self.reads += 1
            if w is not None:
                waddr, wen, wdata = vals[i], vals[i + 1], vals[i + 2]
                if wen:
                    assert 0 <= waddr < self.depth, f"VMEM write outside 0..{self.depth - 1}: {waddr}"
                    for t in range(self.lanes):
                        if wen >> t & 1:
                            self.words[waddr, t] = (wdata >> (32 * t)) & WORD_MASK
                    self.writes += 1

    def attach(self, sim) -> None:
        sim.add_testbench(self.process, background=True)
