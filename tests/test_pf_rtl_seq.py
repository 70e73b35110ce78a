"""The sequential pf blocks (rtl/pf: Divider, Isqrt, PfAlu) in the Amaranth simulator, bit for bit
against sim/numerics/pf.py (integer division against Python's ``divmod``), with the start/busy/done
handshake checked on every operation and ``start`` pulses while busy (ignored)."""
from __future__ import annotations

import gc
import random
import warnings
from typing import NamedTuple

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from ternfpga.rtl.pf import Divider, Isqrt, PfAlu, PfOp
from ternfpga.sim.numerics import pf

E_MIN, E_MAX = -(1 << 15), (1 << 15) - 1


def _run_ops(dut, cases: list, drive, read, seed: int, latency=None) -> list:
    """Run ``cases`` one at a time; return ``read`` at each ``done``. Checks: busy from the cycle after
    start through done, done one cycle, the cycle count (``latency(case)``), the outputs held after done,
    and that start pulses (with other operands) while busy change nothing."""
    rng = random.Random(seed)
    outs: list = []

    async def bench(ctx):
        for case in cases:
            for _ in range(rng.randrange(3)):
                await ctx.tick()
            drive(ctx, case)
            ctx.set(dut.start, 1)
            await ctx.tick()
            cycles = 1
            while not ctx.get(dut.done):
                assert ctx.get(dut.busy), "busy low before done"
                junk = rng.random() < 0.2  # ignored: the unit is busy
                ctx.set(dut.start, junk)
                drive(ctx, cases[rng.randrange(len(cases))] if junk else case)
                await ctx.tick()
                cycles += 1
                assert cycles < 200, "no done"
            assert ctx.get(dut.busy), "busy low in the done cycle"
            ctx.set(dut.start, 0)
            if latency is not None:
                assert cycles == latency(case), (case, cycles)
            out = read(ctx)
            outs.append(out)
            await ctx.tick()
            assert not ctx.get(dut.done) and not ctx.get(dut.busy)
            assert read(ctx) == out, "outputs changed after done"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return outs


def _mismatches(cases, got, want) -> list:
    return [(c, g, w) for c, g, w in zip(cases, got, want) if g != w][:5]


@pytest.mark.parametrize("num_width,den_width,steps,n", [(49, 24, 2, 300), (13, 5, 1, 150), (16, 16, 3, 150)])
def test_divider_matches_integer_division(num_width, den_width, steps, n):
    rng = random.Random(num_width * 7 + steps)
    nmax, dmax = (1 << num_width) - 1, (1 << den_width) - 1
    cases = [(0, 1), (1, 1), (nmax, 1), (nmax, dmax), (0, dmax), (dmax - 1, dmax), (dmax, dmax),
             (nmax, 2), (nmax >> 1, nmax >> 1 & dmax or 1)]
    if num_width == 49:
        cases += [(1 << 48, 1 << 15), (1 << 48, (1 << 17) - 2), ((1 << 33) | 40000, 80000)]  # RSQRT, RECIP
    for _ in range(n):
        num = rng.getrandbits(rng.randint(0, num_width))
        cases.append((num, rng.getrandbits(rng.randint(1, den_width)) or 1))
    want = [divmod(a, b) for a, b in cases]
    # division by zero (documented): quotient all ones, remainder num mod 2**den_width
    cases += [(12345 & nmax, 0), (nmax, 0), (0, 0)]
    want += [(nmax, (a & dmax)) for a, _ in cases[-3:]]

    dut = Divider(num_width, den_width, steps)
    got = _run_ops(dut, cases, lambda ctx, c: (ctx.set(dut.num, c[0]), ctx.set(dut.den, c[1])),
                   lambda ctx: (ctx.get(dut.quotient), ctx.get(dut.remainder)), seed=steps,
                   latency=lambda c: dut.latency)
    assert got == want, _mismatches(cases, got, want)


@pytest.mark.parametrize("width,steps,n", [(34, 2, 300), (62, 2, 200), (9, 1, 100), (21, 3, 100)])
def test_isqrt_matches_golden(width, steps, n):
    rng = random.Random(width + steps)
    xmax = (1 << width) - 1
    r_top = pf.isqrt(np.int64(xmax)).item()
    xs = [0, 1, 2, 3, 4, 5, 8, 9, xmax, xmax - 1, r_top * r_top, r_top * r_top - 1, 1 << (width - 1)]
    for _ in range(n):
        k = rng.randint(0, r_top)
        xs += [k * k, max(0, k * k - 1), rng.getrandbits(rng.randint(0, width))]
    xs = [x for x in xs if 0 <= x <= xmax]
    roots = pf.isqrt(np.array(xs, dtype=np.int64)).tolist()
    want = [(r, x - r * r) for x, r in zip(xs, roots)]

    dut = Isqrt(width, steps)
    got = _run_ops(dut, xs, lambda ctx, x: ctx.set(dut.x, x),
                   lambda ctx: (ctx.get(dut.root), ctx.get(dut.remainder)), seed=width,
                   latency=lambda c: dut.latency)
    assert got == want, _mismatches(xs, got, want)


class Case(NamedTuple):
    op: PfOp
    a: tuple[int, int] = (1 << 15, 0)
    b: tuple[int, int] = (1 << 15, 0)
    x: int = 0
    y: int = 1
    k: int = 0


def _golden(c: Case):
    """The expected (m, e) (or the quotient for DIV) from sim/numerics/pf.py."""
    a = pf.PF(np.int64(c.a[0]), np.int64(c.a[1]))
    b = pf.PF(np.int64(c.b[0]), np.int64(c.b[1]))
    r = {PfOp.NORM: lambda: pf.normalize(np.int64(c.x), c.k), PfOp.MUL: lambda: pf.mul(a, b),
         PfOp.ADD: lambda: pf.add(a, b), PfOp.SHL: lambda: pf.shl(a, c.k), PfOp.RECIP: lambda: pf.recip(a),
         PfOp.RSQRT: lambda: pf.rsqrt(a), PfOp.DIV: lambda: None}[c.op]()
    if c.op == PfOp.DIV:
        return c.x // c.y
    return int(r.m), int(r.e)


def _alu_cases(rng: random.Random) -> list[Case]:
    def m_():
        return rng.choice([1 << 15, (1 << 16) - 1] + [rng.randrange(1 << 15, 1 << 16)] * 2)

    def pf_(lo=-100, hi=60):
        return m_(), rng.randint(lo, hi)

    def junk():  # operands the op ignores
        return dict(x=rng.getrandbits(64), y=rng.getrandbits(24), k=rng.randint(-(1 << 17), (1 << 17) - 1))

    cases: list[Case] = []
    # NORM: the brief's values, random sizes, results at the exponent extremes
    for x in (0, 1, (1 << 16) - 1, 1 << 16, (1 << 16) + (1 << 15), (1 << 17) - 1, (1 << 62) - 1, 1 << 61):
        cases += [Case(PfOp.NORM, x=x, k=k) for k in (0, -77, 41)]
    for _ in range(120):
        x = rng.getrandbits(rng.randint(0, 62))
        cases.append(Case(PfOp.NORM, x=x, k=rng.randint(-100, 60)))
    for _ in range(20):
        x = rng.getrandbits(rng.randint(1, 62)) or 1
        top = rng.choice([E_MIN + rng.randint(0, 2), E_MAX - rng.randint(0, 2)])
        cases.append(Case(PfOp.NORM, x=x, k=top - (x.bit_length() - 16)))
    # MUL: zeros, extreme mantissas, rounding carries, exponent extremes
    for ma in (0, 1 << 15, (1 << 16) - 1):
        for mb in (0, 1 << 15, (1 << 16) - 1):
            cases.append(Case(PfOp.MUL, (ma, 0 if ma == 0 else 9), (mb, 0 if mb == 0 else -30), **junk()))
    for _ in range(60):
        mb = rng.randrange(1 << 15, 1 << 16)
        ma = -(-((1 << 32) - (1 << 15)) // mb)
        if ma < (1 << 16) and ma * mb < (1 << 32):
            cases.append(Case(PfOp.MUL, (ma, rng.randint(-60, 60)), (mb, rng.randint(-60, 60))))
        cases.append(Case(PfOp.MUL, pf_(), pf_(), **junk()))
    for _ in range(10):
        s = rng.choice([E_MIN - 15, E_MAX - 16])
        ea = rng.randint(max(E_MIN, s - E_MAX), min(E_MAX, s - E_MIN))
        cases.append(Case(PfOp.MUL, (m_(), ea), (m_(), s - ea)))
    # ADD: zero operands (add(0, eps) = eps), exponent differences around the rounding bit and far apart
    eps = pf_(-60, -20)
    cases += [Case(PfOp.ADD, (0, 0), eps), Case(PfOp.ADD, eps, (0, 0)), Case(PfOp.ADD, (0, 0), (0, 0)),
              Case(PfOp.ADD, (0, 0), (m_(), 40)), Case(PfOp.ADD, (m_(), -40), (0, 0)),
              Case(PfOp.ADD, ((1 << 16) - 1, 5), ((1 << 16) - 1, 5)),
              Case(PfOp.ADD, (m_(), E_MAX), (m_(), E_MIN)),
              Case(PfOp.ADD, (m_(), E_MIN), (m_(), E_MAX)), Case(PfOp.ADD, (m_(), E_MIN), (m_(), E_MIN))]
    for d in list(range(0, 36)) + [40, 63, 64, 100, 1000, 30000]:
        for _ in range(3):
            e = rng.randint(-100, 60)
            big, small = (m_(), e + d), (m_(), e)
            cases += [Case(PfOp.ADD, big, small, **junk()), Case(PfOp.ADD, small, big)]
    for _ in range(60):
        cases.append(Case(PfOp.ADD, pf_(), pf_()))
    # SHL: zero stays zero, exponent extremes
    cases += [Case(PfOp.SHL, (0, 0), k=k) for k in (0, 5, -70000, 131071)]
    for _ in range(40):
        a = pf_()
        cases.append(Case(PfOp.SHL, a, k=rng.choice([rng.randint(-100, 100), E_MAX - a[1], E_MIN - a[1]])))
    # RECIP and RSQRT: extreme mantissas, odd and even exponents, exponent extremes
    for op in (PfOp.RECIP, PfOp.RSQRT):
        for m in (1 << 15, (1 << 15) + 1, (1 << 16) - 1):
            for e in (0, 1, -1, 2, -2, 17, -16, E_MIN, E_MIN + 1, E_MAX, E_MAX - 1, -31, -33):
                cases.append(Case(op, (m, e), **junk()))
        for _ in range(50):
            cases.append(Case(op, pf_(), **junk()))
    # DIV
    for x in (0, 1, (1 << 49) - 1, 1 << 48):
        for y in (1, 2, 3, (1 << 24) - 1, 1 << 23):
            cases.append(Case(PfOp.DIV, pf_(), pf_(), x=x, y=y, k=5))
    for _ in range(60):
        x = rng.getrandbits(rng.randint(0, 49))
        cases.append(Case(PfOp.DIV, x=x, y=rng.getrandbits(rng.randint(1, 24)) or 1))
    rng.shuffle(cases)
    return cases


def test_pf_alu_matches_golden():
    rng = random.Random(11)
    cases = []
    for c in _alu_cases(rng):  # keep results whose exponent is representable
        w = _golden(c)
        if c.op == PfOp.DIV or E_MIN <= w[1] <= E_MAX:
            cases.append(c)
    want = [_golden(c) for c in cases]
    for op in PfOp:
        assert sum(c.op == op for c in cases) >= 30, op

    dut = PfAlu()

    def drive(ctx, c: Case):
        ctx.set(dut.op, c.op)
        ctx.set(dut.a, {"m": c.a[0], "e": c.a[1]})
        ctx.set(dut.b, {"m": c.b[0], "e": c.b[1]})
        ctx.set(dut.x, c.x)
        ctx.set(dut.y, c.y)
        ctx.set(dut.k, c.k)

    def read(ctx):
        return ctx.get(dut.quotient), ctx.get(dut.result.m), ctx.get(dut.result.e)

    got = _run_ops(dut, cases, drive, read, seed=12, latency=lambda c: dut.cycles[c.op])
    got = [q if c.op == PfOp.DIV else (m, e) for c, (q, m, e) in zip(cases, got)]
    assert got == want, _mismatches(cases, got, want)


@pytest.mark.parametrize("make", [lambda: Divider(0, 4), lambda: Divider(8, 0), lambda: Divider(8, 4, 4),
                                  lambda: Isqrt(0), lambda: Isqrt(8, 0)])
def test_bad_parameters(make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)  # the half-built DUT, collected below
        with pytest.raises(ValueError):
            make()
        gc.collect()
