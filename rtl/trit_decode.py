"""Trit decoding: base-3 bytes (5 trits each) to per-trit codes.

Byte ``v = sum_{i<5} (t_i + 1) * 3**i`` (0..242, t_0 = lowest column) becomes five 2-bit codes
``{nz, neg}`` (+1 = nz, -1 = nz|neg, 0 = neither). One byte is an 8-input function per output bit:
a small ROM in LUTs, no arithmetic. :class:`TritDecoder` decodes a whole beat per cycle.
"""
from __future__ import annotations

from amaranth.hdl import Array, C, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

TRIT = data.StructLayout({"nz": 1, "neg": 1})
TRITS_PER_BYTE = 5


def byte_to_trits(v: int) -> list[int]:
    """Reference decoding of one byte (values above 242 are not produced by the packer; they decode
    as their base-3 digits modulo 3 like the ROM does)."""
    out = []
    for _ in range(TRITS_PER_BYTE):
        out.append(v % 3 - 1)
        v //= 3
    return out


def _code(t: int) -> int:
    return {0: 0b00, 1: 0b01, -1: 0b11}[t]


_ROM = [sum(_code(t) << (2 * i) for i, t in enumerate(byte_to_trits(v))) for v in range(256)]


def decode_byte(m: Module, byte) -> list[data.View]:
    """Combinational: an 8-bit value -> 5 trit codes (views of layout TRIT), lowest column first."""
    bits = Signal(2 * TRITS_PER_BYTE)
    m.d.comb += bits.eq(Array(C(v, 2 * TRITS_PER_BYTE) for v in _ROM)[byte])
    return [data.View(TRIT, bits[2 * i: 2 * i + 2]) for i in range(TRITS_PER_BYTE)]


class TritDecoder(wiring.Component):
    """Beat -> ``5 * beat_bytes`` trit codes, one beat per cycle, latency 1 (registered output).

    ``beats``: In stream of ``8 * beat_bytes``-bit words (byte 0 = bits 7:0).
    ``trits``: Out stream of ``ArrayLayout(TRIT, 5 * beat_bytes)``, trit ``5*j + i`` = digit i of byte j.
    """

    def __init__(self, beat_bytes: int = 16):
        if beat_bytes < 1:
            raise ValueError(f"beat_bytes must be >= 1, not {beat_bytes}")
        self.beat_bytes = beat_bytes
        super().__init__({
            "beats": In(stream.Signature(8 * beat_bytes)),
            "trits": Out(stream.Signature(data.ArrayLayout(TRIT, TRITS_PER_BYTE * beat_bytes))),
        })

    def elaborate(self, platform):
        m = Module()
        codes = []
        for j in range(self.beat_bytes):
            codes += decode_byte(m, self.beats.payload[8 * j: 8 * j + 8])
        # a pipeline register with full throughput: take a new beat whenever the output is free or leaving
        m.d.comb += self.beats.ready.eq(~self.trits.valid | self.trits.ready)
        with m.If(self.beats.valid & self.beats.ready):
            m.d.sync += self.trits.valid.eq(1)
            for i, c in enumerate(codes):
                m.d.sync += self.trits.payload[i].eq(c)
        with m.Elif(self.trits.ready):
            m.d.sync += self.trits.valid.eq(0)
        return m
