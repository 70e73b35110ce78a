"""The element pipeline of NORM_QUANT (docs/numerics.md "Quantizing activations", "RMSNorm followed by
quantization"): one VMEM element (and its norm gain) per cycle, in one of three passes over a vector.

- ``MAX`` (RMSNorm only): ``or_abs |= |h|`` (``bitlen(max|h|) = bitlen(OR |h|)`` gives ``t``).
- ``STATS``: ``hs = rshift_round(h, t)``, ``z = hs * g`` (``rms``; else ``z = h`` with ``t = 0``);
  ``ss += hs**2`` (``rms``), ``maxz = max(maxz, z)``, ``minz = min(minz, z)`` (both start at 0: absmax
  quantization only needs ``max(shift_round(maxz, u), -shift_round(minz, u))``, and rounding is
  monotonic).
- ``WRITE``: ``z`` again, ``zz = shift_round(z, u)`` (one right shifter for both directions:
  ``((z * 2**16) >> a + 1) >> 1`` with ``a = u + 15``; a left shift is exact), then
  ``q = clamp(rshift_round(zz * R, 24), -127, 127)`` on ``q``/``q_valid``.

The pass settings (``kind``, ``rms``, ``lane``, ``tshift``, ``a_shift``, ``R``) are constant during a
pass; every element carries its pass kind along. ``lane`` and ``tshift`` may change, and ``or_abs`` is
final, once ``front_busy`` is low (no element in c1 .. c3); ``a_shift`` and ``R`` may change once
``write_busy`` is low (no ``WRITE`` element left); the sums are final once ``sums_busy`` is low.
``clear`` zeroes the sums. The busy flags are registers.

Timing, from ``issue`` (the VMEM read address cycle, c0): ``row``/``gword`` (the memories' outputs) in
c1, one register stage per cycle after that; the sums hold the element after edge c6; ``q`` is valid in
c12 (``LATENCY``). Multiplies are DSPs with registered operands and products: ``hs * g`` (25 x 16),
``hs**2`` as two (25 x 18 and 25 x 8), ``zz * R`` (18 x 16).
"""
from __future__ import annotations

import enum

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..vmem import WORD_BITS

LATENCY = 12  # issue (c0) to q valid (c12)
SUMS_AT = 6  # the element issued in c0 is in the sums after edge c6
FRONT = 3  # stages that use the pass's lane (c1) and tshift (c2), or update or_abs (c3)
Z_BITS = 40  # |hs * g| <= 2**38; |h| <= 2**31
HS_BITS = 25  # |rshift_round(h, t)| <= 2**23 in RMS mode
SS_BITS = 62
R_BITS = 16  # R <= 127 * 2**9
ACT_MAX = 127


class Pass(enum.IntEnum):
    MAX = 0
    STATS = 1
    WRITE = 2


class QuantPipe(wiring.Component):
    """The element pipeline for ``lanes`` token lanes (see the module docstring)."""

    def __init__(self, lanes: int):
        if lanes < 1:
            raise ValueError("QuantPipe needs lanes >= 1")
        self.lanes = lanes
        super().__init__({
            "kind": In(2), "rms": In(1), "lane": In(range(max(lanes, 2))),
            "tshift": In(4), "a_shift": In(6), "R": In(R_BITS),
            "issue": In(1), "glane": In(3),
            "row": In(WORD_BITS * lanes), "gword": In(128),
            "clear": In(1),
            "or_abs": Out(32), "ss": Out(SS_BITS), "maxz": Out(signed(Z_BITS)), "minz": Out(signed(Z_BITS)),
            "q": Out(signed(8)), "q_valid": Out(1), "busy": Out(1), "sums_busy": Out(1),
            "front_busy": Out(1), "write_busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # per kind, a tag per stage (bit i: an element of that kind in stage ci), so a pass may begin
        # while the previous one's last elements are still in stages that do not depend on the settings
        tag = {k: Signal(LATENCY + 1, name=f"tag_{k.name.lower()}") for k in Pass}
        for k, bits in tag.items():
            m.d.comb += bits[0].eq(self.issue & (self.kind == k))
            m.d.sync += bits[1:].eq(bits[:-1])
        v = Signal(LATENCY + 1)  # any element
        m.d.comb += v[0].eq(self.issue)
        m.d.sync += v[1:].eq(v[:-1])
        # the busy flags, registered: next cycle's stages 1..s hold this cycle's 0..s-1
        wv = tag[Pass.WRITE]
        m.d.sync += [self.busy.eq(v[:LATENCY].any()), self.front_busy.eq(v[:FRONT].any()),
                     self.sums_busy.eq(v[:SUMS_AT].any()), self.write_busy.eq(wv[:LATENCY].any())]
        m.d.comb += self.q_valid.eq(wv[LATENCY])

        # cN below: the stage computed in cycle N after the issue (registered at its end)
        # c1: the lane of the VMEM row, the gain of the gain word
        glane1 = Signal(3)
        m.d.sync += glane1.eq(self.glane)
        h1 = Signal(signed(32))
        g1 = Signal(signed(16))
        row = self.row[:WORD_BITS] if self.lanes == 1 else self.row.word_select(self.lane, WORD_BITS)
        m.d.sync += [h1.eq(row), g1.eq(self.gword.word_select(glane1, 16))]

        # c2: |h| (MAX); h * 2 >> t (rshift_round's shift, t <= 9)
        abs2 = Signal(32)
        hsh2 = Signal(signed(33))
        g2 = Signal(signed(16))
        m.d.sync += [abs2.eq(Mux(h1[-1], -h1, h1)), hsh2.eq(Cat(C(0, 1), h1).as_signed() >> self.tshift),
                     g2.eq(g1)]

        # c3: hs = (h * 2 >> t + 1) >> 1 (= h for t = 0); the OR of |h|
        hs3 = Signal(signed(32))
        g3 = Signal(signed(16))
        inc = Signal(signed(34))
        m.d.comb += inc.eq(hsh2 + 1)
        m.d.sync += [hs3.eq(inc[1:33]), g3.eq(g2)]
        with m.If(self.clear):
            m.d.sync += self.or_abs.eq(0)
        with m.Elif(tag[Pass.MAX][3]):
            m.d.sync += self.or_abs.eq(self.or_abs | abs2)

        # c4: the products (DSP): hs * g, hs**2 = hs * lo + hs * hi * 2**17
        hs = hs3[:HS_BITS].as_signed()
        lo = Cat(hs3[:17], C(0, 1)).as_signed()  # low 17 bits, unsigned
        hi = hs3[17:HS_BITS].as_signed()
        z4 = Signal(signed(HS_BITS + 16))
        plo4 = Signal(signed(HS_BITS + 18))
        phi4 = Signal(signed(HS_BITS + 8))
        h4 = Signal(signed(32))
        m.d.sync += [z4.eq(hs * g3), plo4.eq(hs * lo), phi4.eq(hs * hi), h4.eq(hs3)]

        # c5: z (RMS: hs * g; else h), hs**2
        z5 = Signal(signed(Z_BITS))
        sq5 = Signal(2 * HS_BITS - 2)  # hs**2 <= 2**46
        m.d.sync += [z5.eq(Mux(self.rms, z4, h4)), sq5.eq((phi4 << 17) + plo4)]

        # c6: the sums (STATS); the coarse shift of z * 2**16 by a multiple of 8 (WRITE)
        with m.If(self.clear):
            m.d.sync += [self.ss.eq(0), self.maxz.eq(0), self.minz.eq(0)]
        with m.Elif(tag[Pass.STATS][SUMS_AT]):
            m.d.sync += [self.ss.eq(self.ss + sq5),
                         self.maxz.eq(Mux(z5 > self.maxz, z5, self.maxz)),
                         self.minz.eq(Mux(z5 < self.minz, z5, self.minz))]
        w = Cat(C(0, 16), z5).as_signed()
        c6 = Signal(signed(26))  # 2 * zz * 2**fine fits: |2 * z * 2**-u| <= 2**17 + 1, times 2**7
        m.d.sync += c6.eq(w >> Cat(C(0, 3), self.a_shift[3:]))

        # c7: the fine shift; c8: round (+ 1, >> 1) to zz, |zz| <= 2**16
        f7 = Signal(signed(19))
        m.d.sync += f7.eq(c6 >> self.a_shift[:3])
        zz8 = Signal(signed(18))
        zinc = Signal(signed(20))
        m.d.comb += zinc.eq(f7 + 1)
        m.d.sync += zz8.eq(zinc[1:19])

        # c9: zz * R (DSP); c10: rshift_round(., 24); c11: clamp to int8
        p9 = Signal(signed(18 + R_BITS + 1))
        m.d.sync += p9.eq(zz8 * self.R)
        r10 = Signal(signed(11))
        rinc = Signal(signed(len(p9) + 1))
        m.d.comb += rinc.eq(p9 + (1 << 23))
        m.d.sync += r10.eq(rinc[24:])
        m.d.sync += self.q.eq(Mux(r10 > ACT_MAX, ACT_MAX, Mux(r10 < -ACT_MAX, -ACT_MAX, r10)))
        return m
