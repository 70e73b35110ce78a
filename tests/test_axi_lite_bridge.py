"""AxiToLite in the Amaranth simulator: an AXI4 master issues random single and burst reads and writes
(INCR and FIXED, random IDs, byte strobes, random gaps and back-pressure on every channel) through the
bridge into an AXI4-Lite register model with random ready/valid delays and one address that answers
SLVERR; every read beat, response and ID is compared with a reference memory."""
from __future__ import annotations

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from ternfpga.rtl.axi.lite_bridge import AxiToLite

LITE_AW = 16
ERR_ADDR = 0x0F00  # the register model answers SLVERR here (reads and writes)
SLVERR = 2


def pause(rng: random.Random, p: float) -> int:
    return rng.randrange(1, 4) if rng.random() < p else 0


def lite_slave(dut, mem: dict, rng: random.Random):
    """AXI4-Lite register slave: 32-bit words, byte strobes, random delays on every channel."""
    lite = dut.m

    async def bench(ctx):
        while True:
            await ctx.tick()
            aw, w, ar = ctx.get(lite.awvalid), ctx.get(lite.wvalid), ctx.get(lite.arvalid)
            if aw and w:
                for _ in range(pause(rng, 0.5)):
                    await ctx.tick()
                addr = ctx.get(lite.awaddr)
                data, strb = ctx.get(lite.wdata), ctx.get(lite.wstrb)
                ctx.set(lite.awready, 1)
                ctx.set(lite.wready, 1)
                await ctx.tick()
                ctx.set(lite.awready, 0)
                ctx.set(lite.wready, 0)
                word = mem.get(addr & ~3, 0)
                for b in range(4):
                    if strb >> b & 1:
                        word = word & ~(0xFF << 8 * b) | (data >> 8 * b & 0xFF) << 8 * b
                if addr & ~3 != ERR_ADDR:
                    mem[addr & ~3] = word
                for _ in range(pause(rng, 0.5)):
                    await ctx.tick()
                ctx.set(lite.bresp, SLVERR if addr & ~3 == ERR_ADDR else 0)
                ctx.set(lite.bvalid, 1)
                await ctx.tick().until(lite.bready)
                ctx.set(lite.bvalid, 0)
            elif ar:
                for _ in range(pause(rng, 0.5)):
                    await ctx.tick()
                addr = ctx.get(lite.araddr)
                ctx.set(lite.arready, 1)
                await ctx.tick()
                ctx.set(lite.arready, 0)
                for _ in range(pause(rng, 0.5)):
                    await ctx.tick()
                ctx.set(lite.rdata, mem.get(addr & ~3, 0))
                ctx.set(lite.rresp, SLVERR if addr & ~3 == ERR_ADDR else 0)
                ctx.set(lite.rvalid, 1)
                await ctx.tick().until(lite.rready)
                ctx.set(lite.rvalid, 0)
    return bench


def beat_addrs(addr: int, n: int, fixed: bool) -> list[int]:
    return [(addr if fixed else addr + 4 * i) & (1 << LITE_AW) - 1 for i in range(n)]


@pytest.mark.parametrize("seed", [1, 2])
def test_bridge_random_traffic(seed):
    rng = random.Random(seed)
    dut = AxiToLite(addr_width=40, id_width=16, lite_addr_width=LITE_AW)
    mem: dict[int, int] = {}
    ref: dict[int, int] = {}
    s = dut.s
    checked = {"reads": 0, "writes": 0, "errors": 0}

    async def master(ctx):
        for _ in range(120):
            n = rng.choice([1, 1, 1, 2, 4, 16])
            fixed = n > 1 and rng.random() < 0.25
            tid = rng.randrange(1 << 16)
            hi = rng.randrange(1 << 24) << LITE_AW  # the PS's upper address bits, ignored
            addr = rng.choice([ERR_ADDR - 4 * rng.randrange(n), 4 * rng.randrange(0x800)])
            addrs = beat_addrs(addr, n, fixed)
            for _ in range(pause(rng, 0.4)):
                await ctx.tick()
            if rng.random() < 0.5:  # write burst
                ctx.set(s.awaddr, hi | addr)
                ctx.set(s.awlen, n - 1)
                ctx.set(s.awburst, 0 if fixed else 1)
                ctx.set(s.awid, tid)
                ctx.set(s.awvalid, 1)
                await ctx.tick().until(s.awready)
                ctx.set(s.awvalid, 0)
                err = False
                for i, a in enumerate(addrs):
                    data, strb = rng.randrange(1 << 32), rng.choice([0xF, 0xF, 0x1, 0x6, 0x8])
                    for _ in range(pause(rng, 0.3)):
                        await ctx.tick()
                    ctx.set(s.wdata, data)
                    ctx.set(s.wstrb, strb)
                    ctx.set(s.wlast, i == n - 1)
                    ctx.set(s.wvalid, 1)
                    await ctx.tick().until(s.wready)
                    ctx.set(s.wvalid, 0)
                    if a == ERR_ADDR:
                        err = True
                        continue
                    word = ref.get(a, 0)
                    for b in range(4):
                        if strb >> b & 1:
                            word = word & ~(0xFF << 8 * b) | (data >> 8 * b & 0xFF) << 8 * b
                    ref[a] = word
                for _ in range(pause(rng, 0.4)):
                    await ctx.tick()
                ctx.set(s.bready, 1)
                bid, bresp = await ctx.tick().sample(s.bid, s.bresp).until(s.bvalid)
                ctx.set(s.bready, 0)
                assert bid == tid
                assert bresp == (SLVERR if err else 0), f"write burst at {addr:#x} x{n}: bresp {bresp}"
                checked["writes"] += 1
                checked["errors"] += err
            else:  # read burst
                ctx.set(s.araddr, hi | addr)
                ctx.set(s.arlen, n - 1)
                ctx.set(s.arburst, 0 if fixed else 1)
                ctx.set(s.arid, tid)
                ctx.set(s.arvalid, 1)
                await ctx.tick().until(s.arready)
                ctx.set(s.arvalid, 0)
                for i, a in enumerate(addrs):
                    for _ in range(pause(rng, 0.4)):
                        await ctx.tick()
                    ctx.set(s.rready, 1)
                    data, rresp, rid, rlast = await ctx.tick().sample(s.rdata, s.rresp, s.rid,
                                                                         s.rlast).until(s.rvalid)
                    ctx.set(s.rready, 0)
                    assert rid == tid and rlast == (i == n - 1)
                    if a == ERR_ADDR:
                        assert rresp == SLVERR
                        checked["errors"] += 1
                    else:
                        assert rresp == 0 and data == ref.get(a, 0), f"read beat {i} at {a:#x}"
                checked["reads"] += 1
        # both channels at once: the write goes first, then the read sees it
        ctx.set(s.awaddr, 0x40)
        ctx.set(s.awlen, 0)
        ctx.set(s.awburst, 1)
        ctx.set(s.awvalid, 1)
        ctx.set(s.araddr, 0x40)
        ctx.set(s.arlen, 0)
        ctx.set(s.arburst, 1)
        ctx.set(s.arvalid, 1)
        await ctx.tick().until(s.awready)
        ctx.set(s.awvalid, 0)
        ctx.set(s.wdata, 0xCAFE_F00D)
        ctx.set(s.wstrb, 0xF)
        ctx.set(s.wlast, 1)
        ctx.set(s.wvalid, 1)
        await ctx.tick().until(s.wready)
        ctx.set(s.wvalid, 0)
        ctx.set(s.bready, 1)
        await ctx.tick().until(s.bvalid)
        ctx.set(s.bready, 0)
        await ctx.tick().until(s.arready)
        ctx.set(s.arvalid, 0)
        ctx.set(s.rready, 1)
        data, = await ctx.tick().sample(s.rdata).until(s.rvalid)
        assert data == 0xCAFE_F00D
        ref[0x40] = data

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(master)
    sim.add_testbench(lite_slave(dut, mem, rng), background=True)
    sim.run()
    assert checked["reads"] > 30 and checked["writes"] > 30 and checked["errors"] > 0
    assert mem == ref


def test_bridge_validates_widths():
    with warnings.catch_warnings():  # the refused objects were never elaborated: collect them quietly
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="lite_addr_width"):
            AxiToLite(addr_width=12, lite_addr_width=16)
        with pytest.raises(ValueError, match="id_width"):
            AxiToLite(id_width=0)
        gc.collect()
