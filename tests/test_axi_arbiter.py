"""AxiReadArbiter / AxiWriteArbiter in the Amaranth simulator: three AxiReaders and three AxiWriters,
each with its own random command stream, share one AXI4 port into memory models over one bytearray."""
from __future__ import annotations

import gc
import random
import warnings

import pytest
from amaranth.hdl import Elaboratable, Module, UnusedElaboratable
from amaranth.lib import wiring
from amaranth.sim import Simulator

from ternfpga.rtl.axi.arbiter import AxiReadArbiter, AxiWriteArbiter
from ternfpga.rtl.axi.reader import AxiReader
from ternfpga.rtl.axi.writer import AxiWriter
from ternfpga.sim.models.axi_mem import AxiReadMemory, AxiWriteMemory

BASE = 0x7_8000_0000
MEM_BYTES = 64 * 1024
BB = 16  # bytes per 128-bit beat
READ_SPAN = 32 * 1024  # readers read [0, 32 KiB); writer i owns [32 + 8 i, 40 + 8 i) KiB
ERR_READ = BASE + 0x0A30  # a beat only reader 0 reads (readers 1 and 2 stay in [4, 32) KiB)
ERR_WRITE = BASE + 0x8000 + 0x0510  # in writer 0's region


def split(addr: int, beats: int, max_burst: int) -> list[tuple[int, int]]:
    out = []
    while beats:
        n = min(beats, max_burst, (4096 - addr % 4096) // BB)
        out.append((addr, n))
        addr, beats = addr + n * BB, beats - n
    return out


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


class Fabric(Elaboratable):
    """Readers and writers, each wired to its own port of the two arbiters."""

    def __init__(self, readers: list[AxiReader], writers: list[AxiWriter], **arbiter):
        self.readers, self.writers = readers, writers
        self.rarb = AxiReadArbiter(len(readers), **arbiter)
        self.warb = AxiWriteArbiter(len(writers), **arbiter)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.rarb, m.submodules.warb = self.rarb, self.warb
        for i, r in enumerate(self.readers):
            m.submodules[f"reader{i}"] = r
            wiring.connect(m, r.axi, getattr(self.rarb, f"m{i}"))
        for i, w in enumerate(self.writers):
            m.submodules[f"writer{i}"] = w
            wiring.connect(m, w.axi, getattr(self.warb, f"m{i}"))
        return m


def read_cmds(rng: random.Random, lo: int, hi: int, count: int) -> list[tuple[int, int]]:
    cmds = []
    for _ in range(count):
        n = rng.choice([1, rng.randint(2, 40), rng.randint(100, 250)])
        cmds.append((BASE + lo + rng.randrange(0, (hi - lo) // BB - n) * BB, n))
    return cmds


def write_cmds(rng: random.Random, region: int, count: int) -> list[tuple[int, int]]:
    lo = BASE + 0x8000 + region * 0x2000
    cmds = [(lo + 0x0FD0, 9)]  # crosses 4 KiB
    while len(cmds) < count:
        n = rng.choice([1, rng.randint(2, 40), rng.randint(100, 200)])
        cmds.append((lo + rng.randrange(0, 0x2000 // BB - n) * BB, n))
    rng.shuffle(cmds)
    return cmds


def run_fabric(fab: Fabric, rcmds, wcmds, wdata, mem: bytearray, seed: int, *, stall: float = 0.3,
               slave: dict | None = None, limit: int = 60_000) -> dict:
    rng = random.Random(seed)
    slave = slave or {}
    rmodel = AxiReadMemory(fab.rarb.s, mem, BASE, seed=seed + 1, error_addrs={ERR_READ}, **slave.get("r", {}))
    wmodel = AxiWriteMemory(fab.warb.s, mem, BASE, seed=seed + 2, error_ranges=[(ERR_WRITE, ERR_WRITE + 1)],
                            **slave.get("w", {}))
    received = [[] for _ in fab.readers]
    sent = {"r": [False] * len(fab.readers), "w": [False] * len(fab.writers)}
    out = {"cycles": 0, "outstanding": [0, 0]}

    sim = Simulator(fab)
    sim.add_clock(1e-8)
    rmodel.attach(sim)
    wmodel.attach(sim)

    def sender(port, cmds, key, i):
        async def bench(ctx):
            for addr, n in cmds:
                while rng.random() < stall:
                    await ctx.tick()
                ctx.set(port.payload, {"addr": addr, "beats": n})
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)
            sent[key][i] = True
        return bench

    def sink(port, got):
        async def bench(ctx):
            while True:
                ctx.set(port.ready, rng.random() >= stall)
                _, _, valid, ready, payload = await ctx.tick().sample(port.valid, port.ready, port.payload)
                if valid and ready:
                    got.append(payload)
        return bench

    def producer(port, beats):
        async def bench(ctx):
            for data, strb in beats:
                while rng.random() < stall:
                    ctx.set(port.valid, 0)
                    await ctx.tick()
                ctx.set(port.payload, {"data": data, "strb": strb})
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)
        return bench

    async def monitor(ctx):
        """The slave side: IDs 0, and never more bursts in flight than the order queues hold."""
        s_r, s_w = fab.rarb.s, fab.warb.s
        ar = aw = 0
        while True:
            (_, _, arv, arr, arid, rv, rr, rl, awv, awr, awid, bv, br) = await ctx.tick().sample(
                s_r.arvalid, s_r.arready, s_r.arid, s_r.rvalid, s_r.rready, s_r.rlast,
                s_w.awvalid, s_w.awready, s_w.awid, s_w.bvalid, s_w.bready)
            assert not (arv and arid) and not (awv and awid), "non-zero ID"
            ar += arv and arr
            ar -= rv and rr and rl
            aw += awv and awr
            aw -= bv and br
            assert ar <= fab.rarb.max_outstanding and aw <= fab.warb.max_outstanding
            out["outstanding"] = [max(out["outstanding"][0], ar), max(out["outstanding"][1], aw)]

    for i, r in enumerate(fab.readers):
        sim.add_testbench(sender(r.cmd, rcmds[i], "r", i))
        sim.add_testbench(sink(r.data, received[i]), background=True)
    for i, w in enumerate(fab.writers):
        sim.add_testbench(sender(w.cmd, wcmds[i], "w", i))
        sim.add_testbench(producer(w.data, wdata[i]))
    sim.add_testbench(monitor, background=True)
    s_r, s_w = fab.rarb.s, fab.warb.s
    for check in (held(s_r.arvalid, s_r.arready, s_r.araddr, s_r.arlen),
                  held(s_w.awvalid, s_w.awready, s_w.awaddr, s_w.awlen),
                  held(s_w.wvalid, s_w.wready, s_w.wdata, s_w.wstrb, s_w.wlast)):
        sim.add_testbench(check, background=True)

    async def main(ctx):
        for cycle in range(limit):
            await ctx.tick()
            if (all(sent["r"]) and all(sent["w"])
                    and all(len(received[i]) == sum(n for _, n in rcmds[i]) for i in range(len(rcmds)))
                    and not any(ctx.get(r.busy) for r in fab.readers)
                    and all(ctx.get(w.idle) for w in fab.writers)):
                break
        else:
            raise AssertionError(f"hang: received {[len(g) for g in received]}, sent {sent}")
        out["cycles"] = cycle + 1
        out["r_error"] = [(ctx.get(r.error), ctx.get(r.error_addr)) for r in fab.readers]
        out["w_error"] = [(ctx.get(w.error), ctx.get(w.error_addr)) for w in fab.writers]

    sim.add_testbench(main)
    sim.run()
    out["received"] = received
    return out


def beat(mem, addr: int) -> int:
    return int.from_bytes(mem[addr - BASE:addr - BASE + BB], "little")


def first_failing(cmds, max_burst: int, bad) -> int | None:
    for a, n in cmds:
        for ba, bn in split(a, n, max_burst):
            if bad(ba, bn):
                return ba
    return None


def expected_writes(mem: bytearray, cmds, beats, max_burst: int) -> None:
    it = iter(beats)
    for a, n in cmds:
        for ba, bn in split(a, n, max_burst):
            skip = ba <= ERR_WRITE < ba + bn * BB
            for i in range(bn):
                data, strb = next(it)
                for j in range(BB):
                    if strb >> j & 1 and not skip:
                        mem[ba - BASE + i * BB + j] = data >> (8 * j) & 0xFF


@pytest.mark.parametrize("seed, slave, arbiter", [
    (1, {}, {}),  # the models' default stalls and latencies; 16 bursts in flight
    (2, {"r": {"ar_stall": 0.7, "latency": (20, 80)}, "w": {"aw_stall": 0.6, "w_stall": 0.5}}, {}),
    (3, {"r": {"latency": (5, 40)}, "w": {"latency": (5, 40)}}, {"max_outstanding": 2}),  # queues fill
])
def test_three_readers_and_three_writers_share_one_port(seed, slave, arbiter):
    rng = random.Random(seed)
    readers = [AxiReader(max_burst=16, fifo_depth=64, max_outstanding=4), AxiReader(),
               AxiReader(max_burst=4, fifo_depth=8, max_outstanding=2)]
    writers = [AxiWriter(), AxiWriter(max_burst=4, fifo_depth=8, max_outstanding=2),
               AxiWriter(max_burst=64, fifo_depth=128)]
    fab = Fabric(readers, writers, **arbiter)
    rcmds = [read_cmds(rng, 0, 0x1000, 2) + read_cmds(rng, 0, READ_SPAN, 5)]  # reader 0 hits ERR_READ
    rcmds[0].insert(1, (ERR_READ - 5 * BB, 20))
    rcmds += [read_cmds(rng, 0x1000, READ_SPAN, 7) for _ in range(2)]
    wcmds = [write_cmds(rng, i, 7) for i in range(3)]
    wcmds[0].insert(2, (ERR_WRITE - 40 * BB, 50))
    full = (1 << BB) - 1
    wdata = [[(rng.getrandbits(8 * BB), rng.choice([full, full, 0, rng.getrandbits(BB)]))
              for _ in range(sum(n for _, n in c))] for c in wcmds]
    mem = bytearray(random.Random(seed + 10).randbytes(MEM_BYTES))
    initial = bytes(mem)

    out = run_fabric(fab, rcmds, wcmds, wdata, mem, seed, slave=slave)

    for i, r in enumerate(readers):  # read regions are never written: the initial bytes
        want = [beat(initial, a + k * BB) for a, n in rcmds[i] for k in range(n)]
        assert out["received"][i] == want, f"reader {i} got wrong data"
    want_mem = bytearray(initial)
    for i, w in enumerate(writers):
        expected_writes(want_mem, wcmds[i], wdata[i], w.max_burst)
    assert mem == want_mem
    # errors reach only the master whose burst failed, with that burst's address
    r0 = first_failing(rcmds[0], readers[0].max_burst, lambda a, n: a <= ERR_READ < a + n * BB)
    w0 = first_failing(wcmds[0], writers[0].max_burst, lambda a, n: a <= ERR_WRITE < a + n * BB)
    assert [e for e, _ in out["r_error"]] == [1, 0, 0] and out["r_error"][0][1] == r0
    assert [e for e, _ in out["w_error"]] == [1, 0, 0] and out["w_error"][0][1] == w0
    lim = fab.rarb.max_outstanding
    assert min(out["outstanding"]) >= min(lim, 12), out["outstanding"]  # many bursts shared the port


def test_one_master_alone_gets_a_beat_per_cycle():
    """Reader 1 and writer 2 stream alone (the others idle), no stalls, fixed latency."""
    readers = [AxiReader(), AxiReader(), AxiReader()]
    writers = [AxiWriter(), AxiWriter(), AxiWriter()]
    fab = Fabric(readers, writers)
    beats, latency = 1500, 40
    rcmds = [[], [(BASE + 3 * BB, beats)], []]
    wcmds = [[], [], [(BASE + 0x8000 + 5 * BB, beats)]]
    rng = random.Random(3)
    wdata = [[], [], [(rng.getrandbits(8 * BB), (1 << BB) - 1) for _ in range(beats)]]
    mem = bytearray(random.Random(4).randbytes(MEM_BYTES))
    initial = bytes(mem)
    slave = {"r": {"ar_stall": 0.0, "r_gap": 0.0, "latency": (latency, latency)},
             "w": {"aw_stall": 0.0, "w_stall": 0.0, "latency": (8, 8)}}
    out = run_fabric(fab, rcmds, wcmds, wdata, mem, 5, stall=0.0, slave=slave)
    assert out["received"][1] == [beat(initial, BASE + (3 + k) * BB) for k in range(beats)]
    want = bytearray(initial)
    expected_writes(want, wcmds[2], wdata[2], writers[2].max_burst)
    assert mem == want
    # both streams run at once, each alone on its channel: one beat per cycle plus the start-up
    assert out["cycles"] <= beats + latency + 30, f"{out['cycles']} cycles for {beats} beats"


@pytest.mark.parametrize("cls", [AxiReadArbiter, AxiWriteArbiter])
@pytest.mark.parametrize("args, kwargs", [((0,), {}), ((2,), {"max_outstanding": 0}),
                                          ((2,), {"data_width": 96})])
def test_bad_parameters(cls, args, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError):
            cls(*args, **kwargs)
        gc.collect()
