"""The pipelined pf blocks (rtl/pf: Normalize, PfMul, Apply) in the Amaranth simulator, bit for bit
against sim/numerics/pf.py and fixed.sat32, one input per cycle with the clock enable toggling.

The sequential blocks (Divider, Isqrt, PfAlu) are in tests/test_pf_rtl_seq.py.
"""
from __future__ import annotations

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from ternfpga.rtl.pf import Apply, Normalize, PfMul
from ternfpga.sim.numerics import pf
from ternfpga.sim.numerics.fixed import sat32

E_MIN, E_MAX = -(1 << 15), (1 << 15) - 1


def _stream(dut, inputs: list, drive, read, seed: int) -> list:
    """Feed ``inputs`` one per cycle in which ``ce`` is high (``ce`` random, other inputs driven with
    junk while it is low); return the output for each input, checking that ``o`` holds while ``ce`` is
    low."""
    rng = random.Random(seed)
    outs: list = []

    async def bench(ctx):
        fed = edges = 0
        held = read(ctx)
        for _ in range(4 * len(inputs) + 100):  # bounded: a stuck pipeline fails instead of hanging
            if len(outs) == len(inputs):
                return
            ce = rng.random() < 0.7
            ctx.set(dut.ce, ce)
            if ce:
                drive(ctx, inputs[min(fed, len(inputs) - 1)])  # past the end: padding
                fed += 1
            else:
                drive(ctx, inputs[rng.randrange(len(inputs))])
            await ctx.tick()
            now = read(ctx)
            if ce:
                edges += 1
                if edges >= dut.latency:
                    outs.append(now)
            else:
                assert now == held, "output changed while ce was low"
            held = now

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(outs) == len(inputs)
    return outs


def _pf_out(dut):
    return lambda ctx: (ctx.get(dut.o.m), ctx.get(dut.o.e))


def _set_pf(ctx, port, m, e):
    ctx.set(port, {"m": m, "e": e})


def _mismatches(inputs, got, want) -> list:
    return [(i, g, w) for i, g, w in zip(inputs, got, want) if g != w][:5]


def _representable(r: pf.PF) -> np.ndarray:
    return (r.e >= E_MIN) & (r.e <= E_MAX)


def _pairs(r: pf.PF) -> list:
    return list(zip(r.m.tolist(), r.e.tolist()))


def _random_pf(rng: random.Random, e_lo: int = -100, e_hi: int = 60) -> tuple[int, int]:
    m = rng.choice([1 << 15, (1 << 16) - 1, rng.randrange(1 << 15, 1 << 16), rng.randrange(1 << 15, 1 << 16)])
    return m, rng.randint(e_lo, e_hi)


@pytest.mark.parametrize("width,n", [(64, 2500), (34, 400), (16, 200)])
def test_normalize_matches_golden(width, n):
    rng = random.Random(width)
    top = min(width, 62)  # pf.normalize takes v < 2**62
    vs = [v for v in (0, 1, 2, 3, (1 << 15) - 1, 1 << 15, (1 << 16) - 1, 1 << 16, (1 << 16) + (1 << 15),
                      (1 << 16) + (1 << 15) - 1, (1 << 17) - 1, (1 << 17) + 1, (1 << 62) - 1, 1 << 61,
                      (1 << 62) - (1 << 45), (1 << 62) - (1 << 45) - 1) if v < (1 << top)]
    inputs = [(v, e) for v in vs for e in (0, -100, 60)]
    for _ in range(n):
        b = rng.randint(0, top)
        kind = rng.random()
        if kind < 0.15:
            v = (1 << b) - 1  # all ones: rounds up and carries
        elif kind < 0.3:
            v = (1 << b) - (1 << max(0, b - 17)) if b else 0  # the top 17 bits all ones
        else:
            v = rng.getrandbits(b)
        inputs.append((v, rng.randint(-100, 60)))
    # exponent extremes: the result exponent near either end of int16 (kept where representable)
    for _ in range(n // 10):
        v = rng.getrandbits(rng.randint(1, top)) or 1
        shift = int(pf.bitlen(np.int64(v))) - 16
        target = rng.choice([E_MIN + rng.randint(0, 3), E_MAX - rng.randint(0, 3)])
        inputs.append((v, target - shift))
    want = pf.normalize(np.array([v for v, _ in inputs], dtype=np.int64), np.array([e for _, e in inputs]))
    keep = _representable(want)
    inputs = [t for t, k in zip(inputs, keep) if k]
    want = _pairs(pf.PF(want.m[keep], want.e[keep]))
    assert sum(e in (E_MIN, E_MAX) for _, e in want) >= 2  # the extremes were reached

    dut = Normalize(width)
    got = _stream(dut, inputs, lambda ctx, t: (ctx.set(dut.v, t[0]), ctx.set(dut.e, t[1])), _pf_out(dut),
                  seed=width)
    assert got == want, _mismatches(inputs, got, want)


def test_pf_mul_matches_golden():
    rng = random.Random(7)
    inputs = []
    edge_m = [0, 1 << 15, (1 << 16) - 1]
    for ma in edge_m:
        for mb in edge_m:
            inputs.append(((ma, 0 if ma == 0 else 3), (mb, 0 if mb == 0 else -20)))
    inputs += [((0, 17), (1 << 15, 5)), ((40000, -7), (0, -9))]  # a zero mantissa with an exponent
    for _ in range(300):  # products whose rounding carries to 2**16: top 17 bits all ones
        mb = rng.randrange(1 << 15, 1 << 16)
        for lo, hi in (((1 << 32) - (1 << 15), 1 << 32), ((1 << 31) - (1 << 14), 1 << 31)):
            ma = -(-lo // mb)  # the smallest ma with ma * mb >= lo
            if (1 << 15) <= ma < (1 << 16) and ma * mb < hi:
                inputs.append(((ma, rng.randint(-100, 60)), (mb, rng.randint(-100, 60))))
    for _ in range(1500):
        a, b = _random_pf(rng), _random_pf(rng)
        if rng.random() < 0.05:
            a = (0, 0)
        inputs.append((a, b))
    for _ in range(150):  # exponent sums near either end of the int16 range
        a, b = _random_pf(rng), _random_pf(rng)
        s = rng.choice([E_MIN - 16 + rng.randint(-2, 3), E_MAX - 16 + rng.randint(-3, 2)])
        ea = rng.randint(max(E_MIN, s - E_MAX), min(E_MAX, s - E_MIN))
        inputs.append(((a[0], ea), (b[0], s - ea)))
    ma, ea, mb, eb = (np.array(c) for c in zip(*[(a[0], a[1], b[0], b[1]) for a, b in inputs]))
    want = pf.mul(pf.PF(ma, ea), pf.PF(mb, eb))
    keep = _representable(want)
    inputs = [t for t, k in zip(inputs, keep) if k]
    want = _pairs(pf.PF(want.m[keep], want.e[keep]))
    assert sum(m == 1 << 15 for m, _ in want) >= 50  # many rounding carries
    assert sum(e in (E_MIN, E_MAX) for _, e in want) >= 2

    dut = PfMul()

    def drive(ctx, t):
        _set_pf(ctx, dut.a, *t[0])
        _set_pf(ctx, dut.b, *t[1])

    got = _stream(dut, inputs, drive, _pf_out(dut), seed=8)
    assert got == want, _mismatches(inputs, got, want)


@pytest.mark.parametrize("x_width,frac,n", [(24, 16, 1500), (40, 16, 1500), (48, 16, 400), (12, 0, 300)])
def test_apply_matches_golden(x_width, frac, n):
    rng = random.Random(x_width * 100 + frac)
    x_min, x_max = -(1 << (x_width - 1)), (1 << (x_width - 1)) - 1

    def rand_x():
        k = rng.random()
        if k < 0.1:
            return rng.choice([x_min, x_max, 0, 1, -1, x_min + 1])
        if k < 0.5:
            return rng.randint(x_min, x_max) >> rng.randint(0, x_width)  # small magnitudes too
        return rng.randint(x_min, x_max)

    def rand_m():
        return rng.choice([0, 1 << 15, (1 << 16) - 1] + [rng.randrange(1 << 15, 1 << 16)] * 5)

    inputs = []
    for sh in range(0, 71):  # every right shift, with exact halves (round half up, also negative)
        for _ in range(6):
            inputs.append((rand_x(), rand_m(), -sh - frac))
        if 16 <= sh <= x_width + 14:
            for sign in (1, -1):
                inputs.append((sign * (2 * rng.randint(0, (1 << (x_width + 14 - sh)) - 1) + 1) << (sh - 16),
                               1 << 15, -sh - frac))
    for k in range(1, 41):  # left shifts, saturating at both ends or exact
        for _ in range(6):
            inputs.append((rand_x(), rand_m(), k - frac))
        inputs.append((x_max, (1 << 16) - 1, k - frac))
        inputs.append((x_min, (1 << 16) - 1, k - frac))
        inputs.append((rng.choice([1, -1, 3, -5]), 1 << 15, k - frac))
    # right shifts whose result lands on either side of the int32 bounds: floor(x * m / 2**(sh - 1))
    # = T (the result is (T + 1) >> 1); x * m steps by m <= 2**(sh - 1), so ceil(T * 2**(sh - 1) / m)
    # hits the interval
    for sh in range(17, 50):
        for t in ((1 << 32) - 2, (1 << 32) - 1, -(1 << 32) - 1, -(1 << 32) - 2):
            m = rand_m() or 1 << 15
            inputs.append((-(-(t << (sh - 1)) // m), m, -sh - frac))
    inputs.append((65537, (1 << 16) - 1, -1 - frac))  # x * m = 2**32 - 1: rounds to 2**31
    for k in range(1, 17):  # left shifts to exactly +-2**31 and next to it
        for x in (1 << (16 - k), (1 << (16 - k)) - 1, -(1 << (16 - k)), -(1 << (16 - k)) - 1):
            inputs.append((x, 1 << 15, k - frac))
    for _ in range(n):
        inputs.append((rand_x(), rand_m(), rng.randint(-100, 60)))
    for e in (E_MIN, E_MIN + 1, E_MAX, E_MAX - 1, 0):  # exponent extremes
        for _ in range(4):
            inputs.append((rand_x(), rand_m(), e))
    inputs = [(x, m, e) for x, m, e in inputs
              if x_min <= x <= x_max and abs(x * m) < (1 << 62)]  # pf.apply needs |x * m| < 2**62
    x, m, e = (np.array(c, dtype=np.int64) for c in zip(*inputs))
    want = sat32(pf.apply(x, pf.PF(m, e), frac)).tolist()
    assert (1 << 31) - 1 in want and -(1 << 31) in want  # saturation at both ends

    dut = Apply(x_width, frac)

    def drive(ctx, t):
        ctx.set(dut.x, t[0])
        _set_pf(ctx, dut.s, t[1], t[2])

    got = _stream(dut, inputs, drive, lambda ctx: ctx.get(dut.o), seed=x_width)
    assert got == want, _mismatches(inputs, got, want)


@pytest.mark.parametrize("make", [lambda: Normalize(0), lambda: Normalize(65), lambda: Apply(1, 16),
                                  lambda: Apply(49, 16), lambda: Apply(24, -1)])
def test_bad_parameters(make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)  # the half-built DUT, collected below
        with pytest.raises(ValueError):
            make()
        gc.collect()
