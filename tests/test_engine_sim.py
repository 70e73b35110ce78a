"""The whole matmul engine in the Amaranth simulator: AXI memory models with random latency and
stalls on every port, random output back-pressure, every output compared with the golden matvec."""
from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from ternfpga.quant.errors import TernError
from ternfpga.rtl.engine import MatmulEngine
from ternfpga.rtl.params import EngineParams
from ternfpga.sim.engine_io import plan_pass
from ternfpga.sim.golden.matvec import matvec
from ternfpga.sim.models.axi_mem import AxiReadMemory
from ternfpga.sim.numerics import pf

BASE = 0x3_4000_0000


async def drive_pass(ctx, dut, p: EngineParams, plan, rng: random.Random, limit: int = 200_000):
    """One pass: activations, registers, start; collect rows until done. Returns (rows, error flag)."""
    for b, c, word in plan.act_words:
        ctx.set(dut.act.payload, {"b": b, "chunk": c, "data": word})
        ctx.set(dut.act.valid, 1)
        await ctx.tick().until(dut.act.ready)
    ctx.set(dut.act.valid, 0)
    for name in ("base", "port_stride", "n_rows", "k_chunks", "n_groups"):
        ctx.set(getattr(dut, name), getattr(plan, name))
    ctx.set(dut.w_scale, dict(zip("me", plan.w_scale)))
    for b, s in enumerate(plan.x_scale):
        ctx.set(dut.x_scale[b], dict(zip("me", s)))
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    # the registers were latched at start: scribbling over them now must not matter
    for name in ("n_rows", "k_chunks", "n_groups"):
        ctx.set(getattr(dut, name), 0)
    ctx.set(dut.w_scale, {"m": 0, "e": 0})
    got: dict[int, list[int]] = {}
    for _ in range(limit):
        ctx.set(dut.out.ready, rng.random() < 0.75)
        _, _, took, pay, done, err, busy = await ctx.tick().sample(
            dut.out.valid & dut.out.ready, dut.out.payload, dut.done, dut.error, dut.busy)
        if took:
            assert pay.row not in got, f"row {pay.row} emitted twice"
            got[pay.row] = [pay.value[b] for b in range(p.batch)]
        if done:
            assert not busy
            return got, err
    raise AssertionError(f"engine hung: {len(got)} rows")


def run_engine(p: EngineParams, w, x8, ws, xs, *, seed=0, packed: bytes | None = None, error_addrs=None,
               limit=200_000):
    n, k = w.shape
    packed = p.layout.pack(w).tobytes() if packed is None else packed
    plan = plan_pass(p, n, k, BASE, x8, ws, xs)
    dut = MatmulEngine(p)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for i in range(p.ports):
        AxiReadMemory(getattr(dut, f"axi{i}"), packed, BASE, seed=seed * 31 + i,
                      error_addrs=error_addrs).attach(sim)
    result = {}

    async def bench(ctx):
        got, err = await drive_pass(ctx, dut, p, plan, random.Random(seed), limit)
        result.update(got=got, error=err)

    sim.add_testbench(bench)
    sim.run()
    return result["got"], {"error": result["error"]}


def check(p, w, x8, ws, xs, got):
    want = matvec(w, x8, ws, xs)
    assert sorted(got) == list(range(w.shape[0]))
    bad = [r for r in range(w.shape[0]) if got[r] != [int(want[b, r]) for b in range(x8.shape[0])]]
    return bad


def random_case(seed, n, k, batch):
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, (n, k)).astype(np.int8)
    x8 = rng.integers(-127, 128, (batch, k)).astype(np.int8)
    ws = pf.from_float(np.array([rng.uniform(0.005, 0.05)]))
    xs = pf.from_float(rng.uniform(1e-3, 0.1, batch))
    return w, x8, ws, xs


@pytest.mark.parametrize("ports,batch,dot,n,k,seed", [
    (2, 1, "tree", 70, 47, 1),
    (2, 3, "lut", 45, 96, 2),
    (4, 2, "tree", 150, 33, 3),
    (1, 1, "lut", 20, 11, 4),
])
def test_engine_matches_golden(ports, batch, dot, n, k, seed):
    p = EngineParams(ports=ports, batch=batch, dot=dot, max_k=128, max_n=256)
    w, x8, ws, xs = random_case(seed, n, k, batch)
    got, status = run_engine(p, w, x8, ws, xs, seed=seed)
    assert check(p, w, x8, ws, xs, got) == []
    assert status["error"] == 0


def test_corrupted_weight_byte_is_caught():
    p = EngineParams(ports=2, batch=1, max_k=128, max_n=256)
    w, x8, ws, xs = random_case(7, 64, 40, 1)
    packed = bytearray(p.layout.pack(w).tobytes())
    packed[37] = (packed[37] + 1) % 243  # one base-3 digit of one byte changes
    got, _ = run_engine(p, w, x8, ws, xs, packed=bytes(packed))
    assert check(p, w, x8, ws, xs, got) != []


def test_read_error_lands_in_status_and_pass_completes():
    p = EngineParams(ports=2, batch=1, max_k=128, max_n=256)
    w, x8, ws, xs = random_case(8, 64, 40, 1)
    got, status = run_engine(p, w, x8, ws, xs, error_addrs={BASE + 16 * 3})
    assert status["error"] == 1
    assert sorted(got) == list(range(64))  # never a hang: every row still comes out


def test_refuses_matrices_over_the_maxima():
    p = EngineParams(max_k=128, max_n=256)
    with pytest.raises(TernError, match="max_k"):
        p.check_matrix(10, 129)
    with pytest.raises(TernError, match="max_n"):
        p.check_matrix(257, 10)


def test_back_to_back_passes_on_one_engine():
    """Three passes on one instance: an erroring pass, then clean ones with other shapes and scales
    (error clears at start, registers are latched, nothing leaks from pass to pass), and an empty pass."""
    p = EngineParams(ports=2, batch=2, max_k=128, max_n=256)
    cases = [random_case(20 + i, n, k, 2) for i, (n, k) in enumerate([(64, 40), (90, 77), (33, 128)])]
    sections, addr = [], BASE
    for w, *_ in cases:
        sections.append(addr)
        addr += len(p.layout.pack(w).tobytes())
    memory = b"".join(p.layout.pack(w).tobytes() for w, *_ in cases)
    dut = MatmulEngine(p)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for i in range(p.ports):
        AxiReadMemory(getattr(dut, f"axi{i}"), memory, BASE, seed=i, error_addrs={BASE + 16 * 5}).attach(sim)
    results = []

    async def bench(ctx):
        rng = random.Random(3)
        for (w, x8, ws, xs), base in zip(cases, sections):
            plan = plan_pass(p, *w.shape, base, x8, ws, xs)
            results.append(await drive_pass(ctx, dut, p, plan, rng))
        empty = plan_pass(p, 10, 10, BASE, cases[0][1][:, :10], cases[0][2], cases[0][3])
        empty.k_chunks = 0
        results.append(await drive_pass(ctx, dut, p, empty, rng, limit=200))

    sim.add_testbench(bench)
    sim.run()
    assert results[0][1] == 1  # the first section holds the erroring beat
    for (w, x8, ws, xs), (got, err) in zip(cases[1:], results[1:3]):
        assert err == 0
        assert check(p, w, x8, ws, xs, got) == []
    assert results[3] == ({}, 0)
