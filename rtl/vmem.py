"""The vector memory (VMEM): every activation of the running block, one 32-bit word per element and
token lane (``rtl/vmem_plan.py`` says where each vector lives).

A word address ``a`` holds ``lanes`` words side by side, word ``t`` for token lane ``t``: a unit that
handles one token reads the whole row and picks its lane; the matmul epilogue writes one output row of
every token at once. One read port and one write port (a simple dual-port BRAM/URAM), shared by the
units one op at a time.

Read: ``addr`` and ``en`` in cycle N, ``data`` valid in cycle N+1 (only then: the port is shared, so it
may change afterwards). Write: ``addr``, ``data`` and the lane mask ``en`` in one cycle. A read and a
write of the same address in one cycle return the old word.
"""
from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

WORD_BITS = 32


class VmemReadSignature(wiring.Signature):
    """A read port, seen from the unit that reads."""

    def __init__(self, lanes: int, depth: int):
        self.lanes, self.depth = lanes, depth
        super().__init__({"addr": Out(range(max(depth, 2))), "en": Out(1), "data": In(WORD_BITS * lanes)})

    def __eq__(self, other):
        return type(other) is type(self) and (other.lanes, other.depth) == (self.lanes, self.depth)


class VmemWriteSignature(wiring.Signature):
    """A write port, seen from the unit that writes; ``en`` is one bit per token lane."""

    def __init__(self, lanes: int, depth: int):
        self.lanes, self.depth = lanes, depth
        super().__init__({"addr": Out(range(max(depth, 2))), "en": Out(lanes), "data": Out(WORD_BITS * lanes)})

    def __eq__(self, other):
        return type(other) is type(self) and (other.lanes, other.depth) == (self.lanes, self.depth)


class Vmem(wiring.Component):
    """``depth`` rows of ``lanes`` 32-bit words; one read port ``r`` and one write port ``w``."""

    def __init__(self, lanes: int, depth: int):
        if lanes < 1 or depth < 1:
            raise ValueError("VMEM needs lanes >= 1 and depth >= 1")
        self.lanes, self.depth = lanes, depth
        super().__init__({"r": In(VmemReadSignature(lanes, depth)), "w": In(VmemWriteSignature(lanes, depth))})

    def elaborate(self, platform):
        m = Module()
        # UltraRAM: ~29k words x B lanes at the default maxima would take most of the BRAM36s
        m.submodules.mem = mem = Memory(shape=WORD_BITS * self.lanes, depth=self.depth, init=[],
                                        attrs={"ram_style": "ultra"})
        wr = mem.write_port(granularity=WORD_BITS)
        rd = mem.read_port(transparent_for=())
        m.d.comb += [rd.addr.eq(self.r.addr), rd.en.eq(self.r.en), self.r.data.eq(rd.data),
                     wr.addr.eq(self.w.addr), wr.data.eq(self.w.data), wr.en.eq(self.w.en)]
        return m
