"""cocotb testbench for :class:`ternfpga.rtl.axi.AxiReader` (run by tests/test_axi_reader_cocotb.py).

The DUT's parameters come in through the environment (``READER_MAX_BURST``, ``READER_FIFO_DEPTH``,
``READER_MAX_OUTSTANDING``); widths are read off the ports.
"""
from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from ternfpga.sim.cocotb.axi import AxiReadMemory, attach_read_memory

BASE = 0x12_3400_0000
REGION = 256 * 1024  # bytes of random data at BASE
PAGE = 4096


class TB:
    """Clock, reset, AXI read memory with random latency/stalls, and a sink with random back-pressure."""

    def __init__(self, dut, *, seed: int, latency=(1, 60), ar_pause: float = 0.3, r_pause: float = 0.2,
                 sink_pause: float = 0.3):
        self.dut = dut
        self.rng = random.Random(seed)
        self.addr_width = len(dut.axi__araddr)
        self.beat_bytes = len(dut.data__payload) // 8
        self.max_burst = int(os.environ.get("READER_MAX_BURST", "128"))
        self.fifo_depth = int(os.environ.get("READER_FIFO_DEPTH", "512"))
        self.max_outstanding = int(os.environ.get("READER_MAX_OUTSTANDING", "8"))
        self.sink_pause = sink_pause
        self.received: list[int] = []
        self.requested = 0  # beats asked for by accepted ARs
        self.outstanding = 0  # bursts accepted whose last beat has not arrived
        self.cycle = 0
        cocotb.start_soon(Clock(dut.clk, 4, unit="ns").start())
        self.mem: AxiReadMemory = attach_read_memory(dut, "axi_", latency=latency, ar_pause=ar_pause,
                                                     r_pause=r_pause, seed=seed)
        self.mem.write(BASE, random.Random(seed + 1).randbytes(REGION))

    async def reset(self) -> None:
        d = self.dut
        d.rst.value = 1
        d.cmd__valid.value = 0
        d.data__ready.value = 0
        d.error_clear.value = 0
        await ClockCycles(d.clk, 4)
        d.rst.value = 0
        await RisingEdge(d.clk)
        cocotb.start_soon(self._sink())
        cocotb.start_soon(self._check_bus())

    async def _sink(self) -> None:
        d = self.dut
        while True:
            d.data__ready.value = self.rng.random() >= self.sink_pause
            await RisingEdge(d.clk)  # values read now are the ones sampled at this edge
            if d.data__valid.value and d.data__ready.value:
                self.received.append(int(d.data__payload.value))

    async def _check_bus(self) -> None:
        """AXI rules the reader promises: legal bursts, credit and outstanding limits, rready high."""
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            self.cycle += 1
            if d.axi__arvalid.value and d.axi__arready.value:
                addr, beats = int(d.axi__araddr.value), int(d.axi__arlen.value) + 1
                assert beats <= self.max_burst, f"burst of {beats} beats"
                assert addr // PAGE == (addr + beats * self.beat_bytes - 1) // PAGE, f"{addr:#x}+{beats} crosses 4 KiB"
                assert int(d.axi__arsize.value) == (self.beat_bytes - 1).bit_length()
                assert int(d.axi__arburst.value) == 1 and int(d.axi__arcache.value) == 0b0011
                self.requested += beats
                self.outstanding += 1
                assert self.outstanding <= self.max_outstanding, "too many bursts outstanding"
                assert self.requested - len(self.received) <= self.fifo_depth, "beats requested beyond credits"
            if d.axi__rvalid.value:
                assert d.axi__rready.value, "rready low: the reader back-pressured R"
                if d.axi__rlast.value:
                    self.outstanding -= 1

    async def send(self, addr: int, beats: int) -> None:
        d = self.dut
        d.cmd__payload.value = addr | beats << self.addr_width  # StructLayout: addr in the low bits
        d.cmd__valid.value = 1
        while True:
            await RisingEdge(d.clk)
            if d.cmd__ready.value:
                break
        d.cmd__valid.value = 0

    async def drain(self, total: int, limit: int) -> None:
        """Until all ``total`` beats arrived and busy fell; fails after ``limit`` cycles (a hang)."""
        for _ in range(limit):
            await RisingEdge(self.dut.clk)
            if len(self.received) == total and not self.dut.busy.value:
                return
        raise AssertionError(f"hang: {len(self.received)}/{total} beats, busy={int(self.dut.busy.value)}")

    def expected(self, cmds: list[tuple[int, int]]) -> list[int]:
        bb = self.beat_bytes
        return [int.from_bytes(self.mem.read(a + i * bb, bb), "little") for a, n in cmds for i in range(n)]

    def random_cmds(self, count: int) -> list[tuple[int, int]]:
        bb = self.beat_bytes
        cmds = [(BASE + PAGE - 3 * bb, 9), (BASE + 5 * bb, 1), (BASE + 7 * bb, 1000)]  # cross, single, long
        while len(cmds) < count:
            beats = self.rng.choice([1, 2, self.rng.randint(3, 50), self.rng.randint(100, 400)])
            cmds.append((BASE + self.rng.randrange(REGION // bb - beats) * bb, beats))
        self.rng.shuffle(cmds)
        return cmds


def _compare(got: list[int], exp: list[int]) -> None:
    assert len(got) == len(exp), f"{len(got)} beats, expected {len(exp)}"
    bad = [i for i, (g, e) in enumerate(zip(got, exp)) if g != e]
    assert not bad, f"{len(bad)} wrong beats, first at {bad[0]}: {got[bad[0]]:#x} != {exp[bad[0]]:#x}"


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def random_regions(dut):
    """Random regions (4 KiB crossings, single beats, long runs), random latency and stalls."""
    tb = TB(dut, seed=1)
    await tb.reset()
    cmds = tb.random_cmds(12)
    for addr, beats in cmds:
        await tb.send(addr, beats)
    total = sum(n for _, n in cmds)
    await tb.drain(total, 40 * total)
    _compare(tb.received, tb.expected(cmds))
    assert tb.outstanding == 0 and not dut.error.value
    dut._log.info("%d beats in %d commands, %d cycles", total, len(cmds), tb.cycle)


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def slverr_sets_error_without_hang(dut):
    """One beat answers SLVERR: error rises and stays, every beat (that one as zeros) still arrives."""
    tb = TB(dut, seed=2)
    bb = tb.beat_bytes
    addr, beats = BASE + 2 * PAGE - 20 * bb, 300
    bad = addr + 33 * bb
    tb.mem.add_error_range(bad, bad + bb)
    await tb.reset()
    assert not dut.error.value
    await tb.send(addr, beats)
    await tb.drain(beats, 40 * beats)
    exp = tb.expected([(addr, beats)])
    exp[33] = 0  # cocotbext-axi sends zeros with SLVERR
    _compare(tb.received, exp)
    assert dut.error.value, "SLVERR did not set error"
    await ClockCycles(dut.clk, 3)
    assert dut.error.value, "error is not sticky"
    dut.error_clear.value = 1
    await RisingEdge(dut.clk)
    dut.error_clear.value = 0
    await RisingEdge(dut.clk)
    assert not dut.error.value, "error_clear did not clear error"


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def streams_at_fixed_latency(dut):
    """No stalls, 100-cycle latency, consumer always ready: close to one beat per cycle."""
    latency, beats = 100, 3000
    tb = TB(dut, seed=3, latency=latency, ar_pause=0.0, r_pause=0.0, sink_pause=0.0)
    await tb.reset()
    start = tb.cycle
    await tb.send(BASE + 3 * tb.beat_bytes, beats)
    await tb.drain(beats, 4 * beats)
    cycles = tb.cycle - start
    _compare(tb.received, tb.expected([(BASE + 3 * tb.beat_bytes, beats)]))
    dut._log.info("%d beats in %d cycles (%.3f beats/cycle, latency %d)", beats, cycles, beats / cycles, latency)
    assert cycles <= beats + latency + 30, f"{cycles} cycles for {beats} beats"
