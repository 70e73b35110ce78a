"""AxiWriter in the Amaranth simulator against the AxiWriteMemory model with random stalls."""
from __future__ import annotations

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from ternfpga.rtl.axi.writer import AxiWriter
from ternfpga.rtl.axi.signature import BURST_INCR
from ternfpga.sim.models.axi_mem import AxiWriteMemory

BASE = 0x12_3450_0000  # exercises the upper address bits
MEM_BYTES = 64 * 1024


def split(addr: int, beats: int, beat_bytes: int, max_burst: int) -> list[tuple[int, int]]:
    """The bursts the AXI4 rules and max_burst allow, longest first: (byte address, beats)."""
    out = []
    while beats:
        n = min(beats, max_burst, (4096 - addr % 4096) // beat_bytes)
        out.append((addr, n))
        addr, beats = addr + n * beat_bytes, beats - n
    return out


def random_beats(rng: random.Random, data_width: int, count: int) -> list[tuple[int, int]]:
    nbytes = data_width // 8
    full = (1 << nbytes) - 1
    return [(rng.getrandbits(data_width), rng.choice([full, full, 0, rng.getrandbits(nbytes)]))
            for _ in range(count)]


def held(valid, ready, *payload):
    """AXI: once ``valid`` is up it stays up, with the same payload, until ``ready``."""
    async def bench(ctx):
        pending = None
        while True:
            _, _, v, r, *p = await ctx.tick().sample(valid, ready, *payload)
            if pending is not None:
                assert v and p == pending, f"{valid.name} dropped or changed before its handshake"
            pending = p if v and not r else None
    return bench


class Harness:
    def __init__(self, dut: AxiWriter, seed: int, *, gap: float = 0.3, **slave):
        self.dut, self.rng, self.gap = dut, random.Random(seed), gap
        self.bb = dut.data_width // 8
        self.mem = bytearray(random.Random(seed + 1).randbytes(MEM_BYTES))
        self.initial = bytes(self.mem)
        self.slave = AxiWriteMemory(dut.axi, self.mem, BASE, seed=seed + 2, **slave)
        axi = dut.axi
        self.checks = [held(axi.awvalid, axi.awready, axi.awaddr, axi.awlen),
                       held(axi.wvalid, axi.wready, axi.wdata, axi.wstrb, axi.wlast)]
        self.aws: list[tuple[int, int]] = []  # accepted AW (addr, beats)
        self.bs: list[int] = []  # BRESP in order
        self.pushed = 0  # beats the producer handed over
        self.issued_beats = 0  # beats of every AW so far (offered or accepted)
        self.now = 0
        self.w_cycles: list[int] = []  # cycles of the W handshakes

    async def monitor(self, ctx):
        """AXI rules the writer promises beyond the model's checks, and the idle/outstanding contract."""
        dut, axi = self.dut, self.dut.axi
        aw_seen = False  # the current awvalid was already counted
        in_burst = False  # a W beat of a burst went and its last has not
        while True:
            (_, _, awv, awr, addr, alen, size, burst, cache, prot, awid, wv, wr, wl, bv, br, bresp,
             idle, pushed) = await ctx.tick().sample(
                axi.awvalid, axi.awready, axi.awaddr, axi.awlen, axi.awsize, axi.awburst, axi.awcache,
                axi.awprot, axi.awid, axi.wvalid, axi.wready, axi.wlast, axi.bvalid, axi.bready, axi.bresp,
                dut.idle, dut.data.valid & dut.data.ready)
            self.now += 1
            if awv and not aw_seen:
                # the whole burst is in the FIFO before its AW appears
                self.issued_beats += alen + 1
                assert self.issued_beats <= self.pushed, "AW issued before its beats were pushed"
                assert alen + 1 <= dut.max_burst and size == dut.beat_shift and burst == BURST_INCR
                assert cache == 0b0011 and prot == 0 and awid == 0
            aw_seen = awv and not awr
            if awv and awr:
                self.aws.append((addr, alen + 1))
            if in_burst:
                assert wv, "W stalled mid-burst on the writer's side"
            if wv and wr:
                in_burst = not wl
                self.w_cycles.append(self.now)
            assert br, "bready low"
            if bv and br:
                self.bs.append(bresp)
            assert len(self.aws) - len(self.bs) <= dut.max_outstanding, "too many bursts awaiting B"
            if idle:
                assert len(self.aws) == len(self.bs) and not awv and not in_burst, "idle with bursts pending"
            self.pushed += pushed

    async def producer(self, ctx, beats: list[tuple[int, int]]):
        d = self.dut.data
        for data, strb in beats:
            while self.rng.random() < self.gap:
                ctx.set(d.valid, 0)
                await ctx.tick()
            ctx.set(d.payload, {"data": data, "strb": strb})
            ctx.set(d.valid, 1)
            await ctx.tick().until(d.ready)
        ctx.set(d.valid, 0)

    async def send(self, ctx, cmds: list[tuple[int, int]]):
        for addr, beats in cmds:
            while self.rng.random() < self.gap:
                await ctx.tick()
            ctx.set(self.dut.cmd.payload, {"addr": addr, "beats": beats})
            ctx.set(self.dut.cmd.valid, 1)
            await ctx.tick().until(self.dut.cmd.ready)
        ctx.set(self.dut.cmd.valid, 0)

    async def wait_idle(self, ctx, limit: int):
        for _ in range(limit):
            await ctx.tick()
            if ctx.get(self.dut.idle):
                return
        raise AssertionError(f"hang: {len(self.aws)} AW, {len(self.bs)} B, pushed {self.pushed}")

    def expected(self, cmds, beats, bad: set[int] = frozenset()) -> bytearray:
        """Memory after the writes, skipping the bursts (by address) in ``bad``."""
        mem, it = bytearray(self.initial), iter(beats)
        for addr, n in cmds:
            for baddr, bn in split(addr, n, self.bb, self.dut.max_burst):
                for i in range(bn):
                    data, strb = next(it)
                    if baddr in bad:
                        continue
                    off = baddr - BASE + i * self.bb
                    for j in range(self.bb):
                        if strb >> j & 1:
                            mem[off + j] = data >> (8 * j) & 0xFF
        return mem


def run(dut: AxiWriter, h: Harness, cmds, beats, body=None, limit: int = 100_000) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    h.slave.attach(sim)
    sim.add_testbench(h.monitor, background=True)
    for check in h.checks:
        sim.add_testbench(check, background=True)

    async def main(ctx):
        await h.send(ctx, cmds)
        await h.wait_idle(ctx, limit)
        if body:
            await body(ctx)

    async def prod(ctx):  # alongside the command sender, so beats may come ahead of their command
        await h.producer(ctx, beats)

    sim.add_testbench(prod)
    sim.add_testbench(main)
    sim.run()


def random_cmds(rng: random.Random, bb: int, count: int) -> list[tuple[int, int]]:
    cmds = [(BASE + 4096 - 3 * bb, 7), (BASE + 8 * bb, 1), (BASE + 5 * bb, 700 * 16 // bb)]
    cmds += [(BASE + 3 * 4096 - 2 * bb, 0)]  # a no-op
    while len(cmds) < count:
        n = rng.choice([1, 2, rng.randint(1, 40), rng.randint(100, 300)])
        cmds.append((BASE + rng.randrange(0, MEM_BYTES // bb - n) * bb, n))
    rng.shuffle(cmds)
    return cmds


@pytest.mark.parametrize("params, slave, seed", [
    ({}, {}, 1),  # the defaults: 128-bit beats, bursts of 16, FIFO 64, 8 outstanding
    ({"max_burst": 128, "fifo_depth": 512}, {"aw_stall": 0.6, "latency": (1, 60)}, 2),
    ({"data_width": 64, "max_burst": 4, "fifo_depth": 4, "max_outstanding": 1}, {"w_stall": 0.5}, 3),
    ({"data_width": 32, "max_burst": 1, "fifo_depth": 4, "max_outstanding": 3}, {"latency": (0, 3)}, 4),
    ({"data_width": 512, "max_burst": 256, "fifo_depth": 256, "max_outstanding": 2}, {}, 5),
])
def test_random_regions(params, slave, seed):
    dut = AxiWriter(**params)
    rng = random.Random(seed)
    cmds = random_cmds(rng, dut.data_width // 8, 12)
    beats = random_beats(rng, dut.data_width, sum(n for _, n in cmds))
    h = Harness(dut, seed, **slave)
    run(dut, h, cmds, beats)
    assert h.aws == [b for a, n in cmds for b in split(a, n, h.bb, dut.max_burst)]
    assert h.bs == [0] * len(h.aws)
    assert h.mem == h.expected(cmds, beats)


def test_slverr_sets_error_and_error_addr():
    dut = AxiWriter()
    bb = dut.data_width // 8
    rng = random.Random(7)
    # bursts of the second command from 0x2000 - 5 beats: (.., 5 beats), (0x2000, 16), (0x2100, 16) ...
    cmds = [(BASE + 0x100, 40), (BASE + 0x2000 - 5 * bb, 60), (BASE + 0x3000, 20)]
    err_lo, err_hi = BASE + 0x2000 + 20 * bb, BASE + 0x2000 + 21 * bb  # inside the burst at 0x2100
    err_lo2 = BASE + 0x3000 + 17 * bb  # a later error, in the last command
    beats = random_beats(rng, dut.data_width, 120)
    h = Harness(dut, 7, error_ranges=[(err_lo, err_hi), (err_lo2, err_lo2 + 1)])
    got = {}

    async def body(ctx):
        got["error"], got["addr"] = ctx.get(dut.error), ctx.get(dut.error_addr)
        await ctx.tick()
        got["sticky"] = ctx.get(dut.error)
        ctx.set(dut.error_clear, 1)
        await ctx.tick()
        ctx.set(dut.error_clear, 0)
        got["cleared"] = ctx.get(dut.error)

    run(dut, h, cmds, beats, body)
    bad = {BASE + 0x2000 + 16 * bb, BASE + 0x3000 + 16 * bb}
    assert got == {"error": 1, "addr": BASE + 0x2000 + 16 * bb, "sticky": 1, "cleared": 0}
    assert [a for (a, _), r in zip(h.aws, h.bs) if r] == sorted(bad)
    assert h.mem == h.expected(cmds, beats, bad)  # every other burst still written


def test_error_addr_after_clear_is_the_next_failure():
    """error_clear re-arms error_addr: the next failing burst's address is captured. Beats pushed
    before their command keep the writer busy."""
    dut = AxiWriter(max_burst=8, fifo_depth=16)
    first, second = BASE + 0x400, BASE + 0x800
    beats = random_beats(random.Random(3), dut.data_width, 16)
    h = Harness(dut, 9, error_ranges=[(first, first + 1), (second, second + 1)])
    got = []

    async def main(ctx):
        await h.send(ctx, [(first, 8)])
        await h.producer(ctx, beats)  # the second command's beats go in ahead of it
        for _ in range(200):
            await ctx.tick()
        got.append((ctx.get(dut.idle), ctx.get(dut.error), ctx.get(dut.error_addr)))
        ctx.set(dut.error_clear, 1)
        await ctx.tick()
        ctx.set(dut.error_clear, 0)
        await h.send(ctx, [(second, 8)])
        await h.wait_idle(ctx, 5_000)
        got.append((ctx.get(dut.error), ctx.get(dut.error_addr)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    h.slave.attach(sim)
    sim.add_testbench(h.monitor, background=True)
    for check in h.checks:
        sim.add_testbench(check, background=True)
    sim.add_testbench(main)
    sim.run()
    assert got == [(0, 1, first), (1, second)]
    assert h.bs == [2, 2]
    assert h.mem == bytearray(h.initial)  # failing bursts are not written


@pytest.mark.parametrize("params, beats", [
    ({}, 2000),  # the defaults: bursts of 16
    ({"max_burst": 128, "fifo_depth": 512}, 2000),
    ({"max_burst": 1, "fifo_depth": 8, "max_outstanding": 16}, 300),  # one AW per cycle
])
def test_streams_one_beat_per_cycle(params, beats):
    """Producer always valid, slave never stalls, 8-cycle B latency: one beat per cycle on W once the
    first burst is in (the first AW waits for its max_burst beats)."""
    dut = AxiWriter(**params)
    addr = BASE + 3 * dut.data_width // 8
    data = random_beats(random.Random(4), dut.data_width, beats)
    h = Harness(dut, 4, gap=0.0, aw_stall=0.0, w_stall=0.0, latency=(8, 8))
    run(dut, h, [(addr, beats)], data)
    assert h.mem == h.expected([(addr, beats)], data)
    span = h.w_cycles[-1] - h.w_cycles[0] + 1
    assert span <= beats + 8, f"W beats spread over {span} cycles for {beats} beats"
    assert h.now <= beats + dut.max_burst + 30, f"{h.now} cycles for {beats} beats"


def test_zero_beats_is_a_no_op_and_idle_follows_the_last_b():
    dut = AxiWriter(max_burst=4, fifo_depth=8)
    data = random_beats(random.Random(5), dut.data_width, 3)
    h = Harness(dut, 5, latency=(30, 30))
    trace = []

    async def body(ctx):
        trace.append(ctx.get(dut.busy))

    run(dut, h, [(BASE, 0), (BASE + 16, 3)], data, body)
    assert h.aws == [(BASE + 16, 3)] and h.bs == [0] and trace == [0]
    assert h.mem == h.expected([(BASE + 16, 3)], data)


@pytest.mark.parametrize("kwargs", [
    {"max_burst": 0}, {"max_burst": 257}, {"fifo_depth": 384}, {"fifo_depth": 8},
    {"fifo_depth": 2, "max_burst": 1}, {"max_outstanding": 0}, {"data_width": 96}, {"addr_width": 8},
    {"len_width": 0},
])
def test_bad_parameters(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError):
            AxiWriter(**kwargs)
        gc.collect()
