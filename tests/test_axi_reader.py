"""AxiReader in the Amaranth simulator against a Python AXI4 read slave with random stalls."""
from __future__ import annotations

import gc
import random
import warnings
from collections import deque
from dataclasses import dataclass, field

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from ternfpga.rtl.axi import AxiReader
from ternfpga.rtl.axi.signature import BURST_INCR, RESP_OKAY, RESP_SLVERR

BASE = 0x12_3450_0000  # exercises the upper address bits
MEM_BYTES = 64 * 1024


@dataclass
class Bus:
    """How the slave and the consumer behave (probabilities are per cycle)."""

    ar_stall: float = 0.3  # arready low
    latency: tuple[int, int] = (1, 40)  # AR accepted -> first R beat may be offered
    r_gap: float = 0.2  # rvalid low between beats
    sink_stall: float = 0.3  # data.ready low
    error_addrs: set[int] = field(default_factory=set)  # beat addresses answered with SLVERR


class Harness:
    def __init__(self, dut: AxiReader, bus: Bus, seed: int):
        self.dut, self.bus, self.rng = dut, bus, random.Random(seed)
        self.beat_bytes = dut.data_width // 8
        self.mem = bytes(random.Random(seed + 1).randbytes(MEM_BYTES))
        self.bursts: deque[tuple[int, int, int]] = deque()  # (addr, beats, cycle it may start)
        self.received: list[int] = []
        self.now = 0
        self.ar_count = 0
        self.ar_log: list[tuple[int, int]] = []  # accepted AR (addr, beats)
        self.requested = 0  # beats asked for by accepted ARs

    def beat(self, addr: int) -> int:
        off = addr - BASE
        return int.from_bytes(self.mem[off:off + self.beat_bytes], "little")

    def expected(self, cmds: list[tuple[int, int]]) -> list[int]:
        return [self.beat(a + i * self.beat_bytes) for a, n in cmds for i in range(n)]

    async def ar_slave(self, ctx):
        axi = self.dut.axi
        while True:
            ctx.set(axi.arready, self.rng.random() >= self.bus.ar_stall)
            _, _, valid, ready, addr, alen, size, burst, cache, arid = await ctx.tick().sample(
                axi.arvalid, axi.arready, axi.araddr, axi.arlen, axi.arsize, axi.arburst,
                axi.arcache, axi.arid)
            self.now += 1
            if not (valid and ready):
                continue
            beats = alen + 1
            assert beats <= self.dut.max_burst, f"arlen {alen} over max_burst"
            assert size == self.dut.beat_shift and burst == BURST_INCR and cache == 0b0011 and arid == 0
            assert addr % self.beat_bytes == 0
            assert addr // 4096 == (addr + beats * self.beat_bytes - 1) // 4096, \
                f"burst {addr:#x}+{beats} crosses 4 KiB"
            self.ar_count += 1
            self.ar_log.append((addr, beats))
            self.requested += beats
            self.bursts.append((addr, beats, self.now + self.rng.randint(*self.bus.latency)))
            assert len(self.bursts) <= self.dut.max_outstanding, "too many bursts outstanding"
            assert self.requested - len(self.received) <= self.dut.fifo_depth, "over the credits"

    async def r_slave(self, ctx):
        axi = self.dut.axi
        index = 0  # beat within self.bursts[0]
        while True:
            if not (self.bursts and self.bursts[0][2] <= self.now and self.rng.random() >= self.bus.r_gap):
                ctx.set(axi.rvalid, 0)
                await ctx.tick()
                continue
            addr, beats, _ = self.bursts[0]
            a = addr + index * self.beat_bytes
            ctx.set(axi.rdata, self.beat(a))
            ctx.set(axi.rlast, index == beats - 1)
            ctx.set(axi.rresp, RESP_SLVERR if a in self.bus.error_addrs else RESP_OKAY)
            ctx.set(axi.rvalid, 1)
            _, _, ready = await ctx.tick().sample(axi.rready)
            # Credits reserve FIFO room for every requested beat, so the master never back-pressures R.
            assert ready, "rready fell: the credit accounting let the FIFO fill up"
            index += 1
            if index == beats:
                self.bursts.popleft()
                index = 0

    async def sink(self, ctx):
        d = self.dut.data
        while True:
            ctx.set(d.ready, self.rng.random() >= self.bus.sink_stall)
            _, _, valid, ready, payload = await ctx.tick().sample(d.valid, d.ready, d.payload)
            if valid and ready:
                self.received.append(payload)

    async def send(self, ctx, cmds: list[tuple[int, int]]):
        for addr, beats in cmds:
            ctx.set(self.dut.cmd.payload, {"addr": addr, "beats": beats})
            ctx.set(self.dut.cmd.valid, 1)
            await ctx.tick().until(self.dut.cmd.ready)
        ctx.set(self.dut.cmd.valid, 0)

    async def drain(self, ctx, total: int, limit: int):
        for _ in range(limit):
            if len(self.received) == total and not ctx.get(self.dut.busy):
                return
            await ctx.tick()
        raise AssertionError(f"hang: {len(self.received)}/{total} beats, busy={ctx.get(self.dut.busy)}")


def run(dut: AxiReader, bus: Bus, seed: int, body) -> Harness:
    h = Harness(dut, bus, seed)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in (h.ar_slave, h.r_slave, h.sink):
        sim.add_testbench(bench, background=True)

    async def main(ctx):
        await body(h, ctx)

    sim.add_testbench(main)
    sim.run()
    return h


def random_cmds(rng: random.Random, beat_bytes: int, count: int) -> list[tuple[int, int]]:
    cmds = [(BASE + 4096 - 3 * beat_bytes, 7), (BASE + 8 * beat_bytes, 1)]  # crosses 4 KiB; single
    cmds.append((BASE + 5 * beat_bytes, 700))  # long, several pages and bursts
    while len(cmds) < count:
        beats = rng.choice([1, 2, rng.randint(1, 40), rng.randint(100, 300)])
        off = rng.randrange(0, MEM_BYTES // beat_bytes - beats) * beat_bytes
        cmds.append((BASE + off, beats))
    rng.shuffle(cmds)
    return cmds


SLOW_SINK = Bus(ar_stall=0.1, latency=(20, 60), r_gap=0.05, sink_stall=0.85)  # FIFO fills: credit-bound


@pytest.mark.parametrize("params, bus, seed", [
    ({}, Bus(), 1),  # the defaults: 128-bit beats, bursts of 128, FIFO 512, 8 outstanding
    ({}, SLOW_SINK, 2),
    ({"data_width": 64, "max_burst": 16, "fifo_depth": 32, "max_outstanding": 2}, Bus(), 3),
    ({"data_width": 512, "max_burst": 256, "fifo_depth": 256, "max_outstanding": 1}, Bus(), 4),
    ({"data_width": 32, "max_burst": 1, "fifo_depth": 4}, Bus(r_gap=0.5), 5),
])
def test_random_regions(params, bus, seed):
    dut = AxiReader(**params)
    cmds = random_cmds(random.Random(seed), dut.data_width // 8, 14)

    async def body(h: Harness, ctx):
        await h.send(ctx, cmds)
        await h.drain(ctx, sum(n for _, n in cmds), 50_000)

    h = run(dut, bus, seed, body)
    exp = h.expected(cmds)
    assert len(h.received) == len(exp)
    bad = [i for i, (a, b) in enumerate(zip(h.received, exp)) if a != b]
    assert not bad, f"{len(bad)} wrong beats, first at {bad[0]}"
    assert not h.bursts


def test_slverr_sets_error_and_completes():
    dut = AxiReader()
    bb = dut.data_width // 8
    addr, beats = BASE + 4096 - 10 * bb, 40  # bursts: 10 beats up to the 4 KiB boundary, then 30
    bus = Bus(error_addrs={addr + 12 * bb, addr + 30 * bb})  # two errors in the second burst
    got = {}

    async def body(h: Harness, ctx):
        assert not ctx.get(dut.error)
        await h.send(ctx, [(addr, beats)])
        await h.drain(ctx, beats, 5_000)
        assert ctx.get(dut.error), "SLVERR did not set error"
        got["addr"] = ctx.get(dut.error_addr)
        await ctx.tick()
        assert ctx.get(dut.error), "error is not sticky"
        ctx.set(dut.error_clear, 1)
        await ctx.tick()
        ctx.set(dut.error_clear, 0)
        assert not ctx.get(dut.error)
        # after the clear, the next failing burst is captured: one starting past the 4 KiB boundary
        await h.send(ctx, [(addr + 12 * bb, 28)])
        await h.drain(ctx, beats + 28, 5_000)
        got["again"] = (ctx.get(dut.error), ctx.get(dut.error_addr))

    h = run(dut, bus, 3, body)
    assert got == {"addr": BASE + 4096, "again": (1, addr + 12 * bb)}
    assert h.received == h.expected([(addr, beats), (addr + 12 * bb, 28)])  # errored beats still delivered


@pytest.mark.parametrize("params, seed", [
    ({}, 11),
    ({"data_width": 64, "max_burst": 16, "fifo_depth": 32, "max_outstanding": 3}, 12),
    ({"data_width": 32, "max_burst": 1, "fifo_depth": 4, "max_outstanding": 1}, 13),
])
def test_error_addr_is_the_first_failing_burst(params, seed):
    """Random regions, a few error beats: after each command, error_addr names the first burst (in AR
    order) holding an error beat since the last clear; error_clear between every other command."""
    dut = AxiReader(**params)
    rng = random.Random(seed)
    bb = dut.data_width // 8
    cmds = random_cmds(rng, bb, 10)
    errs = set()
    for a, n in rng.sample(cmds, 4):
        errs.add(a + rng.randrange(n) * bb)
    seen = []

    async def body(h: Harness, ctx):
        total = 0
        for i, (a, n) in enumerate(cmds):
            await h.send(ctx, [(a, n)])
            total += n
            await h.drain(ctx, total, 20_000)
            seen.append((len(h.ar_log), ctx.get(dut.error), ctx.get(dut.error_addr)))
            if i % 2:
                ctx.set(dut.error_clear, 1)
                await ctx.tick()
                ctx.set(dut.error_clear, 0)
                seen.append("clear")

    h = run(dut, Bus(error_addrs=errs), seed, body)
    first, since = None, 0  # expected error_addr, and the AR index where the current window starts
    for entry in seen:
        if entry == "clear":
            first = None
            continue
        n_ar, error, error_addr = entry
        for a, n in h.ar_log[since:n_ar]:
            if first is None and any(a + i * bb in errs for i in range(n)):
                first = a
        since = n_ar
        assert error == (first is not None)
        if first is not None:
            assert error_addr == first
    assert any(e != "clear" and e[1] for e in seen)


@pytest.mark.parametrize("params, beats, latency", [
    ({}, 2048, 120),  # the defaults: long bursts, credit-bound
    ({"max_burst": 1, "fifo_depth": 128, "max_outstanding": 64}, 400, 40),  # needs one AR per cycle
])
def test_streams_one_beat_per_cycle_at_fixed_latency(params, beats, latency):
    """Consumer always ready, no stalls, fixed latency: AR issue must not be the bottleneck."""
    dut = AxiReader(**params)
    addr = BASE + 3 * dut.data_width // 8
    bus = Bus(ar_stall=0.0, latency=(latency, latency), r_gap=0.0, sink_stall=0.0)
    cycles = {}

    async def body(h: Harness, ctx):
        await h.send(ctx, [(addr, beats)])
        start = h.now
        await h.drain(ctx, beats, 10_000)
        cycles["n"] = h.now - start

    h = run(dut, bus, 5, body)
    assert h.received == h.expected([(addr, beats)])
    assert cycles["n"] <= beats + latency + 10, f"{cycles['n']} cycles for {beats} beats"


def test_zero_beats_is_a_no_op():
    dut = AxiReader(max_burst=4, fifo_depth=8)

    async def body(h: Harness, ctx):
        await h.send(ctx, [(BASE, 0), (BASE + 16, 3)])
        await h.drain(ctx, 3, 500)

    h = run(dut, Bus(), 1, body)
    assert h.received == h.expected([(BASE + 16, 3)]) and h.ar_count == 1


@pytest.mark.parametrize("kwargs", [
    {"max_burst": 0}, {"max_burst": 257}, {"fifo_depth": 384}, {"fifo_depth": 64},
    {"fifo_depth": 2, "max_burst": 1}, {"max_outstanding": 0}, {"data_width": 96}, {"addr_width": 8}, {"len_width": 0},
])
def test_bad_parameters(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)  # the half-built DUT, collected below
        with pytest.raises(ValueError):
            AxiReader(**kwargs)
        gc.collect()
