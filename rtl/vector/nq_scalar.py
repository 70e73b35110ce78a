"""The per-vector scalar math of NORM_QUANT (docs/numerics.md "RMSNorm followed by quantization",
"Quantizing activations"), from a vector's sums to its quantization constants, on one :class:`PfAlu`.

Inputs (latched at ``start``): ``ss`` (sum of ``hs**2``), ``tshift`` (``t``), ``maxz`` >= 0 and
``minz`` <= 0 (the extremes of ``z``, both taken with 0). Outputs (valid from ``done`` to the next
``start``): ``R``, ``u`` and ``a_shift = u + 15`` (``zz = shift_round(z, u)``), ``sq`` (the int8 vector's
pf scale).

- RMSNorm (``rms``): ``ms = shl(mul(normalize(ss), recip(normalize(n))), 2t - 32)``,
  ``r = rsqrt(add(ms, eps))``, ``S_z = shl(mul(S_g, r), t - 16)``; ``recip(normalize(n))`` once per op
  (``prep``, a pulse while idle at the op's start, computes it; a ``start`` without it does it first).
  Otherwise ``S_z = 2**-16``.
- Beside the ALU: ``M = max(maxz, -minz)``, ``u = bitlen(M) - 16`` and ``M' = max|shift_round(z, u)|``.
  Since rounding half up is monotonic, ``M' = max(shift_round(maxz, u), -shift_round(minz, u))``, which
  for ``u > 0`` is ``rshift_round(max(maxz, ~minz), u)`` (``-rshift_round(x, u) = rshift_round(-x - 1,
  u)``) and for ``u <= 0`` is ``M << -u``.
- ``R = (DIV(127 * 2**25, M') + 1) >> 1``; ``sq = shl(mul(mul(S_z, normalize(M')), 1/127), u)``, where
  ``normalize(M')`` (``2**15 <= M' <= 2**16``) is ``(M', 0)`` or ``(2**15, 1)``, and ``mul(2**-16, .)``
  is exact (``m`` unchanged, ``e - 16``). A zero vector gives ``R = 0``, ``sq = 0``.

Cycles from ``start`` to ``done``: about 45 for absmax, 120 for RMSNorm (40 more once per op). The
ALU's inputs come from registers (one cycle per op more, the ALU's operand logic stays off this
unit's paths).
"""
from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..control.isa import PF_LAYOUT
from ..pf import PfAlu, PfOp
from .quant_pipe import R_BITS, SS_BITS, Z_BITS

INV127 = (33026, -22)  # sim/numerics/spec.py INV127
FX_LSB = (1 << 15, -31)  # 2**-16
RECIP_NUM = 127 << 25  # R = (127 * 2**25 // M' + 1) >> 1
M_BITS = Z_BITS  # |M| <= 2**39
# cycles from mgo to M': neg/not, max, per-byte bitlen, bitlen, u/opnd, coarse, M'
MPATH = 6


def shl(p, k):
    """pf.shl: exponent plus k, zero stays zero (a value for an operand mux)."""
    return Cat(p.m, Mux(p.m == 0, 0, p.e + k)[:16])


def bitlen_stages(m: Module, v: Signal, name: str) -> Signal:
    """``bitlen(v)`` of an unsigned signal, registered in two stages (per-byte leading zeros, then the
    first non-zero byte): valid two cycles after ``v``."""
    width = len(v)
    nbytes = (width + 7) // 8
    vp = Cat(v, C(0, 8 * nbytes - width))
    nz = Signal(nbytes, name=f"{name}_nz")
    top = [Signal(3, name=f"{name}_top{i}") for i in range(nbytes)]  # index of the highest one in byte i
    for i in range(nbytes):
        byte = vp[8 * i:8 * i + 8]
        hi = 0
        for b in range(8):
            hi = Mux(byte[b], b, hi)
        m.d.sync += [nz[i].eq(byte.any()), top[i].eq(hi)]
    out = Signal(range(8 * nbytes + 1), name=f"{name}_bitlen")
    sel = C(0, len(out))
    for i in range(nbytes):  # the highest non-zero byte wins (last Mux outermost)
        sel = Mux(nz[i], 8 * i + top[i] + 1, sel)
    m.d.sync += out.eq(sel)
    return out


class NqScalar(wiring.Component):
    """See the module docstring."""

    def __init__(self):
        super().__init__({
            "prep": In(1), "n": In(16), "rms": In(1), "s_g": In(PF_LAYOUT), "eps": In(PF_LAYOUT),
            "start": In(1), "ss": In(SS_BITS), "tshift": In(4),
            "maxz": In(signed(Z_BITS)), "minz": In(signed(Z_BITS)),
            "busy": Out(1), "done": Out(1),
            "R": Out(R_BITS), "u": Out(signed(7)), "a_shift": Out(6), "sq": Out(PF_LAYOUT),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.alu = alu = PfAlu()
        ss = Signal(SS_BITS)
        t = Signal(4)
        maxz = Signal(Z_BITS)  # >= 0
        minz = Signal(signed(Z_BITS))  # <= 0
        inv_n = Signal(PF_LAYOUT)
        inv_ok = Signal()
        sz = Signal(PF_LAYOUT)  # S_z, then the operand of the 1/127 product
        res = alu.result
        prep_only = Signal()
        m.d.sync += self.done.eq(0)

        # -- M, u, M' beside the ALU ----------------------------------------------------------
        # maxz/minz stay put for the whole job, so every stage below recomputes from stable inputs
        # and M' is final MPATH cycles after they were latched (mgo)
        mgo = Signal()  # pulse: maxz/minz latched
        mv = Signal(MPATH)
        m.d.sync += mv.eq(Cat(mgo, mv[:-1]))
        neg1 = Signal(M_BITS + 1)
        not1 = Signal(signed(M_BITS + 1))
        m.d.sync += [neg1.eq(-minz), not1.eq(~minz)]
        big = Signal(M_BITS + 1)  # M = max(maxz, -minz)
        bigx = Signal(M_BITS + 1)  # max(maxz, ~minz)
        m.d.sync += [big.eq(Mux(maxz > neg1, maxz, neg1)),
                     bigx.eq(Mux(maxz.as_signed() > not1, maxz, not1))]
        bl = bitlen_stages(m, big, "m")
        # u = bl - 16, a = u + 15; the shift operand: u > 0 -> max(maxz, ~minz), else M
        zero = Signal()
        a = Signal(6)
        u = Signal(signed(7))
        opnd = Signal(M_BITS + 1)
        m.d.sync += [zero.eq(bl == 0), a.eq(Mux(bl == 0, 0, bl - 1)), u.eq(bl - 16),
                     opnd.eq(Mux(bl > 16, bigx, big))]
        coarse = Signal(26)
        m.d.sync += coarse.eq(Cat(C(0, 16), opnd) >> Cat(C(0, 3), a[3:]))
        fine = Signal(19)
        m.d.comb += fine.eq(coarse >> a[:3])
        mp = Signal(17)  # M' = (fine + 1) >> 1, in [2**15, 2**16]
        mn = Signal(PF_LAYOUT)  # normalize(M', 0)
        mp_next = Signal(18)
        m.d.comb += mp_next.eq(fine + 1)
        m.d.sync += mp.eq(mp_next[1:18])
        m.d.comb += [mn.m.eq(Mux(mp[16], 1 << 15, mp[:16])), mn.e.eq(mp[16])]
        mdone = Signal()
        with m.If(mgo):
            m.d.sync += mdone.eq(0)
        with m.Elif(mv[-1]):
            m.d.sync += mdone.eq(1)
        m.d.comb += [self.a_shift.eq(a), self.u.eq(u)]

        # -- the ALU chain --------------------------------------------------------------------
        # the ALU's operands and start come from registers, loaded in a step's first cycle
        issued = Signal()
        a_op = Signal(PfOp)
        a_a, a_b = Signal(PF_LAYOUT), Signal(PF_LAYOUT)
        a_x, a_y, a_k = Signal(64), Signal(len(alu.y)), Signal(len(alu.k))
        a_start = Signal()
        m.d.comb += [alu.op.eq(a_op), alu.a.eq(a_a), alu.b.eq(a_b), alu.x.eq(a_x), alu.y.eq(a_y),
                     alu.k.eq(a_k), alu.start.eq(a_start)]
        m.d.sync += a_start.eq(0)

        def step(op, nxt, *, a=None, b=None, x=None, y=None, k=None):
            with m.If(~issued):
                m.d.sync += [issued.eq(1), a_start.eq(1), a_op.eq(op)]
                for reg, val in ((a_a, a), (a_b, b), (a_x, x), (a_y, y), (a_k, k)):
                    if val is not None:
                        m.d.sync += reg.eq(val)
            with m.If(alu.done):
                m.d.sync += issued.eq(0)
                if nxt is not None:
                    m.next = nxt

        inv127 = Cat(C(INV127[0], 16), C(INV127[1] & 0xFFFF, 16))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [ss.eq(self.ss), t.eq(self.tshift), maxz.eq(self.maxz), minz.eq(self.minz),
                                 mgo.eq(1), self.busy.eq(1), issued.eq(0)]
                    with m.If(~self.rms):
                        m.next = "WAIT_M"
                    with m.Elif(inv_ok):
                        m.next = "NORM_SS"
                    with m.Else():
                        m.next = "NORM_N"
                with m.Elif(self.prep):
                    m.d.sync += [inv_ok.eq(0), prep_only.eq(1), self.busy.eq(1), issued.eq(0)]
                    m.next = "NORM_N"
            with m.State("NORM_N"):
                m.d.sync += mgo.eq(0)
                step(PfOp.NORM, "RECIP_N", x=self.n, k=0)
            with m.State("RECIP_N"):
                step(PfOp.RECIP, None, a=res)
                with m.If(alu.done):
                    m.d.sync += [inv_n.eq(res), inv_ok.eq(1), prep_only.eq(0)]
                    with m.If(prep_only):
                        m.d.sync += self.busy.eq(0)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "NORM_SS"
            with m.State("NORM_SS"):
                m.d.sync += mgo.eq(0)
                step(PfOp.NORM, "MUL_N", x=ss, k=0)
            with m.State("MUL_N"):
                step(PfOp.MUL, "ADD_EPS", a=res, b=inv_n)
            with m.State("ADD_EPS"):
                step(PfOp.ADD, "RSQRT", a=shl(res, Cat(C(0, 1), t) - 32), b=self.eps)
            with m.State("RSQRT"):
                step(PfOp.RSQRT, "MUL_G", a=res)
            with m.State("MUL_G"):
                step(PfOp.MUL, "WAIT_M", a=self.s_g, b=res)
                with m.If(alu.done):
                    m.d.sync += sz.eq(shl(res, t - 16))
            with m.State("WAIT_M"):
                m.d.sync += mgo.eq(0)
                with m.If(mdone & ~mgo):
                    with m.If(zero):
                        m.d.sync += [self.R.eq(0), self.sq.eq(0), self.done.eq(1), self.busy.eq(0)]
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DIV"
                    with m.If(~self.rms):  # mul(2**-16, normalize(M')) is exact
                        m.d.sync += sz.eq(Cat(mn.m, mn.e - 16))
            with m.State("DIV"):
                step(PfOp.DIV, None, x=RECIP_NUM, y=mp)
                with m.If(alu.done):
                    m.d.sync += self.R.eq((alu.quotient[:R_BITS + 1] + 1) >> 1)
                    with m.If(self.rms):
                        m.next = "MUL_M"
                    with m.Else():
                        m.next = "MUL_INV"
            with m.State("MUL_M"):
                step(PfOp.MUL, None, a=sz, b=mn)
                with m.If(alu.done):
                    m.d.sync += sz.eq(res)
                    m.next = "MUL_INV"
            with m.State("MUL_INV"):
                step(PfOp.MUL, "IDLE", a=sz, b=inv127)
                with m.If(alu.done):
                    m.d.sync += [self.sq.eq(shl(res, u)), self.done.eq(1), self.busy.eq(0)]
        return m
