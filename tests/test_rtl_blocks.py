"""The engine's blocks in the Amaranth simulator, each against the golden arithmetic bit for bit."""
from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from ternfpga.rtl.dot import DotArray
from ternfpga.rtl.requant import Requant
from ternfpga.rtl.scale import ScaleCombine
from ternfpga.rtl.trit_decode import TritDecoder, byte_to_trits
from ternfpga.sim.numerics import pf
from ternfpga.sim.numerics.fixed import requant


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_trit_decoder_every_byte_value_under_backpressure():
    dut = TritDecoder(beat_bytes=4)
    rng = random.Random(0)
    beats = [[v, 255 - v, (v * 7) % 243, 121] for v in range(243)]
    got = []

    async def bench(ctx):
        i = 0
        for _ in range(20 * len(beats)):  # bounded: a stalled design fails instead of hanging
            if len(got) == len(beats):
                break
            ctx.set(dut.trits.ready, rng.random() < 0.7)
            send = i < len(beats) and rng.random() < 0.8
            ctx.set(dut.beats.valid, send)
            if send:
                ctx.set(dut.beats.payload, sum(b << (8 * j) for j, b in enumerate(beats[i])))
            _, _, in_ok, out_ok, codes = await ctx.tick().sample(
                dut.beats.valid & dut.beats.ready, dut.trits.valid & dut.trits.ready, dut.trits.payload)
            if out_ok:
                got.append([(-1 if c.neg else 1) if c.nz else 0 for c in codes])
            if in_ok:
                i += 1

    _run(dut, bench)
    want = [sum((byte_to_trits(b) for b in beat), []) for beat in beats]
    assert got == want


@pytest.mark.parametrize("kind", ["tree", "lut"])
@pytest.mark.parametrize("bpl,batch", [(1, 1), (1, 3), (2, 2)])
def test_dot_array_matches_numpy(kind, bpl, batch):
    lanes, n = 4, 40
    dut = DotArray(lanes=lanes, bytes_per_lane=bpl, batch=batch, kind=kind)
    tpl = 5 * bpl
    rng = np.random.default_rng(bpl * 10 + batch)
    beats = rng.integers(0, 243, (n, lanes * bpl))
    xs = rng.integers(-127, 128, (n, batch * tpl))
    xs[0] = -127  # extremes
    xs[1] = 127
    got = []

    async def bench(ctx):
        for t in range(n + 3):
            live = t < n and t % 7 != 3  # idle cycles in between
            ctx.set(dut.valid, live)
            if t < n:
                ctx.set(dut.beat, sum(int(v) << (8 * i) for i, v in enumerate(beats[t])))
                ctx.set(dut.x, [int(v) for v in xs[t]])
            _, _, v, parts = await ctx.tick().sample(dut.partial_valid, dut.partial)
            if v:
                got.append([parts[i] for i in range(lanes * batch)])

    _run(dut, bench)
    want = []
    for t in range(n):
        if t % 7 == 3:
            continue
        row = []
        for lane in range(lanes):
            trits = sum((byte_to_trits(int(beats[t][lane * bpl + j])) for j in range(bpl)), [])
            row += [int(np.dot(trits, xs[t][b * tpl:(b + 1) * tpl])) for b in range(batch)]
        want.append(row)
    assert got == want


def test_requant_and_scale_combine_match_golden():
    B, AW = 3, 21
    rq = Requant(batch=B, acc_width=AW, row_width=10)
    sc = ScaleCombine(B, rq.max_shift)
    top = Module()
    top.submodules.rq, top.submodules.sc = rq, sc
    top.d.comb += [rq.m.eq(sc.m), rq.shift.eq(sc.shift)]
    rng = np.random.default_rng(1)
    cases = []
    # 1e6 forces left shifts and saturation; 1e-6 (with tiny x) the largest right shift
    for w in (0.0213, 1e-4, 3.7, 1e6, 0.0, 1e-6):
        xv = rng.choice([1e-3, 0.05, 3.0, 1e4, 1e-9, 0.0, 1.0], B) if w != 1e-6 else np.array([1e-7, 1e-9, 0.02])
        accs = rng.integers(-(2**20), 2**20, (30, B))
        accs[0], accs[1] = 2**20 - 1, -(2**20)
        cases.append((pf.from_float(np.array([w])), pf.from_float(xv), accs))
    results = []
    prng = random.Random(2)

    async def bench(ctx):
        for ws, xs, accs in cases:
            ctx.set(sc.w, {"m": int(ws.m[0]), "e": int(ws.e[0])})
            for b in range(B):
                ctx.set(sc.x[b], {"m": int(xs.m[b]), "e": int(xs.e[b])})
            await ctx.tick().repeat(6)  # scale pipeline (3) + registered shift decode
            got, i = [], 0
            for _ in range(20 * len(accs)):  # bounded: a stalled design fails instead of hanging
                if len(got) == len(accs):
                    break
                ctx.set(rq.out.ready, prng.random() < 0.7)
                ctx.set(rq.inp.valid, i < len(accs))
                if i < len(accs):
                    ctx.set(rq.inp.payload, {"row": i, "acc": [int(a) for a in accs[i]]})
                _, _, took, gave, out = await ctx.tick().sample(
                    rq.inp.valid & rq.inp.ready, rq.out.valid & rq.out.ready, rq.out.payload)
                if gave:
                    got.append((out.row, [out.value[b] for b in range(B)]))
                if took:
                    i += 1
            results.append(got)

    _run(top, bench)
    for (ws, xs, accs), got in zip(cases, results):
        assert [r for r, _ in got] == list(range(len(accs)))
        for b in range(B):
            want = requant(accs[:, b], pf.mul(ws, xs.take(np.s_[b:b + 1])))
            assert [v[b] for _, v in got] == [int(x) for x in want]
