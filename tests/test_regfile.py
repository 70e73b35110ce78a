"""RegFile (the accelerator's AXI4-Lite register slave) in the Amaranth simulator, driven by a master
with random VALID/READY delays and AW/W in every order."""
from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.axi.signature import RESP_OKAY, RESP_SLVERR
from ternfpga.rtl.control.regfile import RegFile
from ternfpga.rtl.control.regmap import MAGIC, REGMAP, REGMAP_VERSION, Access, identification
from ternfpga.sim.models.axil import ORDERS, AxiLiteMaster
from ternfpga.sim.numerics.spec import NUMERICS_VERSION

SMALL = AccelParams(batch=2, max_hidden=1024, max_ffn=2816, max_heads=16, max_kv_heads=2, max_head_dim=64,
                    max_ctx=1024, max_vocab=32000, max_head_k=64, max_layers=24)
RW = [r for r in REGMAP if r.access is Access.RW]
MASK32 = 0xFFFF_FFFF


def run(dut, bench, *background) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    for proc in background:
        sim.add_testbench(proc, background=True)
    sim.run()


def off(name: str) -> int:
    return REGMAP[name].offset


async def idle(ctx, n: int = 2) -> None:
    for _ in range(n):
        await ctx.tick()


@pytest.mark.parametrize("params", [AccelParams(), SMALL], ids=["default", "small"])
def test_identification_registers_read_their_constants(params):
    dut = RegFile(REGMAP, params)
    master = AxiLiteMaster(dut.bus, seed=1)
    expect = identification(params)
    assert expect["MAGIC"] == MAGIC == int.from_bytes(b"TERN", "little")
    assert expect["VERSION"] == NUMERICS_VERSION | REGMAP_VERSION << 16
    assert expect["PARAMS_HASH"] == params.digest()
    assert expect["VMEM_DEPTH"] == params.vmem_words and expect["MAX_CTX"] == params.max_ctx
    consts = [r for r in REGMAP if r.const]
    assert {r.name for r in consts} == set(expect)

    async def bench(ctx):
        for reg in consts + consts[::-1]:
            assert await master.read(ctx, reg.offset) == (expect[reg.name], RESP_OKAY), reg.name
        # writes to them are ignored
        assert await master.write(ctx, off("MAGIC"), 0, 0xF) == RESP_OKAY
        assert await master.read(ctx, off("MAGIC")) == (MAGIC, RESP_OKAY)

    run(dut, bench)


def test_two_parameter_sets_differ():
    a, b = identification(AccelParams()), identification(SMALL)
    assert {k for k in a if a[k] != b[k]} >= {"PARAMS_HASH", "BATCH", "MAX_HIDDEN", "MAX_CTX", "VMEM_DEPTH"}


def _port_value(dut, reg) -> int:
    """The value an RW register drives to the core, as the register would read it."""
    for base, (lo, hi) in REGMAP.pairs.items():
        if reg in (lo, hi):
            return None  # checked as the 64-bit member
    if not reg.fields:
        return getattr(dut, reg.name.lower())
    return {f: getattr(dut, f"{reg.name}_{f}".lower()) for f in reg.fields}


@pytest.mark.parametrize("order", [*ORDERS, None], ids=[*ORDERS, "random"])
def test_rw_round_trip_with_byte_strobes(order):
    dut = RegFile()
    rng = random.Random(hash(order) & 0xFFFF)
    master = AxiLiteMaster(dut.bus, seed=rng.randrange(1 << 16))
    model = {r.name: r.reset for r in RW}

    async def check_ports(ctx):
        for r in RW:
            ports = _port_value(dut, r)
            if ports is None:
                continue
            if isinstance(ports, dict):
                for f, sig in ports.items():
                    assert ctx.get(sig) == r.get(model[r.name], f), (r.name, f)
            else:
                assert ctx.get(ports) == model[r.name], r.name
        assert ctx.get(dut.ddr_base) == model["DDR_BASE_LO"] | model["DDR_BASE_HI"] << 32

    async def bench(ctx):
        for r in RW:  # reset values
            assert await master.read(ctx, r.offset) == (r.reset, RESP_OKAY), r.name
        await check_ports(ctx)
        for _ in range(40):
            reg = rng.choice(RW)
            value, strb = rng.randrange(1 << 32), rng.randrange(16)
            assert await master.write(ctx, reg.offset, value, strb, order=order) == RESP_OKAY
            bits = sum(0xFF << 8 * i for i in range(4) if strb >> i & 1) & reg.mask
            model[reg.name] = (model[reg.name] & ~bits) | (value & bits)
            await ctx.tick()
            await check_ports(ctx)
            probe = rng.choice(RW)
            assert await master.read(ctx, probe.offset) == (model[probe.name], RESP_OKAY), probe.name
        for r in RW:
            assert await master.read(ctx, r.offset) == (model[r.name], RESP_OKAY), r.name

    run(dut, bench)


def test_w1p_one_pulse_per_written_one_and_reads_zero():
    dut = RegFile()
    master = AxiLiteMaster(dut.bus, seed=3)
    rng = random.Random(3)
    seen = {"start": [], "abort": []}  # cycles each pulse was high
    now = [0]

    async def monitor(ctx):
        while True:
            _, _, start, abort = await ctx.tick().sample(dut.control_start, dut.control_abort)
            now[0] += 1
            if start:
                seen["start"].append(now[0])
            if abort:
                seen["abort"].append(now[0])

    async def bench(ctx):
        expect = {"start": 0, "abort": 0}
        for _ in range(30):
            value, strb = rng.randrange(1 << 32), rng.choice([0x1, 0xF, 0xE, 0x0, rng.randrange(16)])
            assert await master.write(ctx, off("CONTROL"), value, strb) == RESP_OKAY
            if strb & 1:
                expect["start"] += value & 1
                expect["abort"] += value >> 1 & 1
            assert await master.read(ctx, off("CONTROL")) == (0, RESP_OKAY)
        assert await master.write(ctx, off("CONTROL"), 0b11) == RESP_OKAY
        await idle(ctx, 3)
        assert len(seen["start"]) == expect["start"] + 1 and len(seen["abort"]) == expect["abort"] + 1
        assert seen["start"][-1] == seen["abort"][-1]  # both bits of one write pulse together
        for name in seen:  # every pulse is one cycle wide: no two consecutive high cycles
            assert all(b - a > 1 for a, b in zip(seen[name], seen[name][1:])), name

    run(dut, bench, monitor)


def test_w1c_set_by_events_cleared_by_one_and_irq_follows_enable():
    dut = RegFile()
    master = AxiLiteMaster(dut.bus, seed=4)
    rng = random.Random(4)
    events = {"DONE": dut.irq_status_done, "ERROR": dut.irq_status_error}
    bit = {"DONE": 1, "ERROR": 2}
    race = []  # events to pulse in the cycle the next write is performed

    async def racer(ctx):
        bus = dut.bus
        pulsed = None
        while True:
            await ctx.tick()
            if pulsed is not None:
                ctx.set(pulsed, 0)
                pulsed = None
            # the write is performed at the edge that ends a cycle with AW and W held and no BVALID
            if race and not (ctx.get(bus.awready) or ctx.get(bus.wready) or ctx.get(bus.bvalid)):
                pulsed = events[race.pop()]
                ctx.set(pulsed, 1)

    async def bench(ctx):
        status = enable = 0
        for step in range(80):
            action = rng.choice(["event", "event", "enable", "clear", "clear_no_strobe", "clear_racing"])
            if action == "event":
                names = rng.sample(list(events), rng.randint(1, 2))
                for n in names:
                    ctx.set(events[n], 1)
                    status |= bit[n]
                await ctx.tick()
                for n in names:
                    ctx.set(events[n], 0)
            elif action == "enable":
                enable = rng.randrange(4)
                assert await master.write(ctx, off("IRQ_ENABLE"), enable | rng.randrange(1 << 30) << 2) == RESP_OKAY
            elif action in ("clear", "clear_no_strobe"):
                value = rng.randrange(4)
                strb = 0x1 if action == "clear" else 0xE
                assert await master.write(ctx, off("IRQ_STATUS"), value, strb) == RESP_OKAY
                if action == "clear":
                    status &= ~value
            else:  # an event in the very cycle of the clearing write wins
                name = rng.choice(list(events))
                race.append(name)
                assert await master.write(ctx, off("IRQ_STATUS"), 0b11) == RESP_OKAY
                assert not race
                status = bit[name]
            await idle(ctx, 2)
            assert ctx.get(dut.irq) == bool(status & enable), (step, action, status, enable)
            assert await master.read(ctx, off("IRQ_STATUS")) == (status, RESP_OKAY), (step, action)
            assert await master.read(ctx, off("IRQ_ENABLE")) == (enable, RESP_OKAY)
            assert ctx.get(dut.irq_enable_done) == enable & 1 and ctx.get(dut.irq_enable_error) == enable >> 1

    run(dut, bench, racer)


def test_ro_registers_follow_the_core():
    dut = RegFile()
    master = AxiLiteMaster(dut.bus, seed=5)
    rng = random.Random(5)

    async def bench(ctx):
        for _ in range(12):
            busy, done, err = (rng.randrange(2) for _ in range(3))
            code, desc, addr = rng.randrange(16), rng.randrange(1 << 32), rng.randrange(1 << 40)
            ctx.set(dut.status_busy, busy)
            ctx.set(dut.status_done, done)
            ctx.set(dut.status_error, err)
            ctx.set(dut.error_code, code)
            ctx.set(dut.error_desc, desc)
            ctx.set(dut.error_addr, addr)
            status = await master.read(ctx, off("STATUS"))
            assert status == (busy | done << 1 | err << 2, RESP_OKAY)
            assert await master.read(ctx, off("ERROR_CODE")) == (code, RESP_OKAY)
            assert await master.read(ctx, off("ERROR_DESC")) == (desc, RESP_OKAY)
            lo, _ = await master.read(ctx, off("ERROR_ADDR_LO"))
            ctx.set(dut.error_addr, rng.randrange(1 << 40))  # HI still reads the capture made with LO
            hi, _ = await master.read(ctx, off("ERROR_ADDR_HI"))
            assert lo | hi << 32 == addr
        # every counter: LO then HI reads the value the core drove
        for base in ("CYCLES_TOTAL", "CYCLES_MATMUL", "CYCLES_ATTENTION", "CYCLES_VECTOR", "CYCLES_HEAD",
                     "CYCLES_MEMSTALL", "OPS"):
            value = rng.randrange(1 << 64)
            ctx.set(getattr(dut, base.lower()), value)
            lo, r0 = await master.read(ctx, off(f"{base}_LO"))
            hi, r1 = await master.read(ctx, off(f"{base}_HI"))
            assert (lo | hi << 32, r0, r1) == (value, RESP_OKAY, RESP_OKAY), base

    run(dut, bench)


def test_64bit_counter_read_never_tears_while_running():
    dut = RegFile()
    master = AxiLiteMaster(dut.bus, seed=6, max_delay=4, ready_delay=4)
    rng = random.Random(6)
    step = (1 << 32) + 0x4000_0001  # HI moves every cycle, LO wraps every few cycles
    held: set[int] = set()

    async def counter(ctx):
        v = rng.randrange(1 << 40)
        while True:
            ctx.set(dut.cycles_total, v)
            held.add(v)
            await ctx.tick()
            v = (v + step) & ((1 << 64) - 1)

    async def bench(ctx):
        last = -1
        for _ in range(40):
            lo, _ = await master.read(ctx, off("CYCLES_TOTAL_LO"))
            await idle(ctx, rng.randint(0, 5))
            hi, _ = await master.read(ctx, off("CYCLES_TOTAL_HI"))
            value = lo | hi << 32
            assert value in held, f"torn read {value:#x}"
            assert value > last
            last = value

    run(dut, bench, counter)


def test_unmapped_addresses_answer_slverr():
    dut = RegFile()
    master = AxiLiteMaster(dut.bus, seed=7)
    mapped = {r.offset for r in REGMAP}
    holes = [a for a in range(0, 0x100, 4) if a not in mapped]
    assert holes  # the map has gaps to probe
    aliases = [0x100 + off("PROGRAM"), 0x1000 + off("COUNT"), 0x8000 + off("IRQ_ENABLE"), 0xFFFC]

    async def bench(ctx):
        assert await master.write(ctx, off("PROGRAM"), 0x1234_5678) == RESP_OKAY
        assert await master.write(ctx, off("COUNT"), 7) == RESP_OKAY
        for addr in holes + aliases:
            assert await master.read(ctx, addr) == (0, RESP_SLVERR), hex(addr)
            assert await master.write(ctx, addr, MASK32) == RESP_SLVERR, hex(addr)
        assert await master.read(ctx, off("PROGRAM")) == (0x1234_5678, RESP_OKAY)
        assert await master.read(ctx, off("COUNT")) == (7, RESP_OKAY)
        assert await master.read(ctx, off("IRQ_ENABLE")) == (0, RESP_OKAY)
        assert await master.read(ctx, off("CONTROL") + 2) == (0, RESP_OKAY)  # byte lanes: word decode

    run(dut, bench)


def test_concurrent_reads_and_writes():
    """Reads of a register being rewritten see the old or the new value, never a mix."""
    dut = RegFile()
    master = AxiLiteMaster(dut.bus, seed=8)
    written = [0]
    done = [False]

    async def writer(ctx):
        for i in range(1, 40):
            value = i * 0x0101_0101
            written.append(value)  # before the write: a read may see it before BVALID
            assert await master.write(ctx, off("POSITION"), value) == RESP_OKAY
        done[0] = True

    async def reader(ctx):
        last = 0
        reads = 0
        while not done[0]:
            value, resp = await master.read(ctx, off("POSITION"))
            assert resp == RESP_OKAY and value in written and value >= last, hex(value)
            last, reads = value, reads + 1
        assert reads > 10

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(writer)
    sim.add_testbench(reader)
    sim.run()


def test_one_write_and_one_read_outstanding():
    """A second AW/W/AR presented while one is in progress waits (READY low) until the response is
    accepted; BVALID/RVALID and their payload hold while BREADY/RREADY are low."""
    dut = RegFile()
    bus = dut.bus

    async def handshake(ctx, valid, ready, limit=10):
        for _ in range(limit):
            _, _, r = await ctx.tick().sample(ready)
            if r:
                return
        raise AssertionError(f"{ready.name} never rose")

    async def bench(ctx):
        ctx.set(bus.awaddr, off("PROGRAM"))
        ctx.set(bus.awvalid, 1)
        await handshake(ctx, bus.awvalid, bus.awready)
        ctx.set(bus.awaddr, off("COUNT"))  # a second write address, held while the first is in progress
        for _ in range(5):
            assert not ctx.get(bus.awready) and not ctx.get(bus.bvalid)
            await ctx.tick()
        ctx.set(bus.wdata, 0xAAAA_5555)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(bus.wvalid, 1)
        await handshake(ctx, bus.wvalid, bus.wready)
        ctx.set(bus.wdata, 0x77)  # the second write's data, also held
        for _ in range(6):
            await ctx.tick()
            assert not ctx.get(bus.awready) and not ctx.get(bus.wready)
            assert ctx.get(bus.bvalid) and ctx.get(bus.bresp) == RESP_OKAY
        assert ctx.get(dut.program) == 0xAAAA_5555 and ctx.get(dut.count) == 0
        ctx.set(bus.bready, 1)
        await ctx.tick()  # B handshake; then the second write goes through
        for _ in range(10):
            if ctx.get(bus.bvalid):
                break
            await ctx.tick()
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        await ctx.tick()
        assert ctx.get(dut.count) == 0x77 and ctx.get(dut.program) == 0xAAAA_5555
        ctx.set(bus.bready, 0)

        ctx.set(bus.araddr, off("PROGRAM"))
        ctx.set(bus.arvalid, 1)
        await handshake(ctx, bus.arvalid, bus.arready)
        ctx.set(bus.araddr, off("COUNT"))
        for _ in range(6):
            await ctx.tick()
            assert not ctx.get(bus.arready)
        assert ctx.get(bus.rvalid) and ctx.get(bus.rdata) == 0xAAAA_5555 and ctx.get(bus.rresp) == RESP_OKAY
        ctx.set(bus.rready, 1)
        await ctx.tick()
        for _ in range(10):
            if ctx.get(bus.rvalid):
                break
            await ctx.tick()
        assert ctx.get(bus.rdata) == 0x77

    run(dut, bench)
