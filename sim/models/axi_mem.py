"""An AXI4 read slave over a byte buffer, for Amaranth-simulator testbenches.

Accepts AR with random ``arready`` stalls, answers each burst after a random latency with random
``rvalid`` gaps, checks every burst against the AXI4 rules the masters promise (INCR, full-width
beats, no 4 KiB crossing, at most 256 beats), and can answer chosen beat addresses with SLVERR.
"""
from __future__ import annotations

import random
from collections import deque

RESP_OKAY, RESP_SLVERR = 0b00, 0b10


class AxiReadMemory:
    def __init__(self, axi, mem: bytes, base: int = 0, *, seed: int = 0, ar_stall: float = 0.3,
                 latency: tuple[int, int] = (1, 30), r_gap: float = 0.2, error_addrs: set[int] | None = None):
        self.axi, self.mem, self.base = axi, mem, base
        self.rng = random.Random(seed)
        self.ar_stall, self.latency, self.r_gap = ar_stall, latency, r_gap
        self.error_addrs = error_addrs or set()
        self.beat_bytes = len(axi.rdata) // 8
        self.bursts: deque[tuple[int, int, int]] = deque()
        self.now = 0
        self.beats_served = 0

    def _beat(self, addr: int) -> int:
        off = addr - self.base
        if not 0 <= off <= len(self.mem) - self.beat_bytes:
            raise AssertionError(f"read outside memory at {addr:#x}")
        return int.from_bytes(self.mem[off:off + self.beat_bytes], "little")

    async def ar_process(self, ctx):
        axi = self.axi
        while True:
            ctx.set(axi.arready, self.rng.random() >= self.ar_stall)
            _, _, valid, ready, addr, alen, size, burst = await ctx.tick().sample(
                axi.arvalid, axi.arready, axi.araddr, axi.arlen, axi.arsize, axi.arburst)
            self.now += 1
            if not (valid and ready):
                continue
            beats = alen + 1
            assert burst == 1 and 1 << size == self.beat_bytes, "INCR bursts of full-width beats only"
            assert addr % self.beat_bytes == 0, f"unaligned burst at {addr:#x}"
            assert addr // 4096 == (addr + beats * self.beat_bytes - 1) // 4096, f"burst at {addr:#x} crosses 4 KiB"
            self.bursts.append((addr, beats, self.now + self.rng.randint(*self.latency)))

    async def r_process(self, ctx):
        axi = self.axi
        index = 0
        offered = False  # AXI: once rvalid is high it stays high, with the same beat, until accepted
        while True:
            if not offered and not (self.bursts and self.bursts[0][2] <= self.now
                                    and self.rng.random() >= self.r_gap):
                ctx.set(axi.rvalid, 0)
                await ctx.tick()
                continue
            addr, beats, _ = self.bursts[0]
            a = addr + index * self.beat_bytes
            ctx.set(axi.rdata, self._beat(a))
            ctx.set(axi.rlast, index == beats - 1)
            ctx.set(axi.rresp, RESP_SLVERR if a in self.error_addrs else RESP_OKAY)
            ctx.set(axi.rvalid, 1)
            _, _, ready = await ctx.tick().sample(axi.rready)
            offered = not ready
            if ready:
                self.beats_served += 1
                index += 1
                if index == beats:
                    self.bursts.popleft()
                    index = 0

    def attach(self, sim) -> None:
        sim.add_testbench(self.ar_process, background=True)
        sim.add_testbench(self.r_process, background=True)


class AxiWriteMemory:
    """An AXI4 write slave over a ``bytearray`` (shared with an :class:`AxiReadMemory` for a DDR that
    is read and written): random ``awready``/``wready`` stalls, BRESP after a random latency, bursts
    checked against the AXI4 rules (INCR, full-width beats, <= 256 beats, no 4 KiB crossing, ``wlast``
    on the last beat only). Bursts touching ``error_ranges`` ([lo, hi) byte ranges) are not written
    and answer SLVERR."""

    def __init__(self, axi, mem: bytearray, base: int = 0, *, seed: int = 0, aw_stall: float = 0.3,
                 w_stall: float = 0.2, latency: tuple[int, int] = (1, 20),
                 error_ranges: list[tuple[int, int]] | None = None):
        self.axi, self.mem, self.base = axi, mem, base
        self.rng = random.Random(seed)
        self.aw_stall, self.w_stall, self.latency = aw_stall, w_stall, latency
        self.error_ranges = error_ranges or []
        self.beat_bytes = len(axi.wdata) // 8
        self.aws: deque[tuple[int, int]] = deque()  # accepted AW (addr, beats) awaiting data
        self.resps: deque[tuple[int, int]] = deque()  # (due cycle, resp)
        self.now = 0
        self.bursts_written = 0

    def _bad(self, addr: int, beats: int) -> bool:
        end = addr + beats * self.beat_bytes
        return any(lo < end and addr < hi for lo, hi in self.error_ranges)

    async def aw_process(self, ctx):
        axi = self.axi
        while True:
            ctx.set(axi.awready, self.rng.random() >= self.aw_stall)
            _, _, valid, ready, addr, alen, size, burst = await ctx.tick().sample(
                axi.awvalid, axi.awready, axi.awaddr, axi.awlen, axi.awsize, axi.awburst)
            self.now += 1
            if not (valid and ready):
                continue
            beats = alen + 1
            assert burst == 1 and 1 << size == self.beat_bytes, "INCR bursts of full-width beats only"
            assert addr % self.beat_bytes == 0, f"unaligned write burst at {addr:#x}"
            assert addr // 4096 == (addr + beats * self.beat_bytes - 1) // 4096, f"write burst at {addr:#x} crosses 4 KiB"
            self.aws.append((addr, beats))

    async def w_process(self, ctx):
        axi = self.axi
        index = 0
        while True:
            ready = bool(self.aws) and self.rng.random() >= self.w_stall
            ctx.set(axi.wready, ready)
            _, _, valid, data, strb, last = await ctx.tick().sample(axi.wvalid, axi.wdata, axi.wstrb, axi.wlast)
            if not (valid and ready):
                continue
            addr, beats = self.aws[0]
            a = addr + index * self.beat_bytes
            assert bool(last) == (index == beats - 1), f"wlast {last} on beat {index} of {beats} at {addr:#x}"
            if not self._bad(addr, beats):
                off = a - self.base
                assert 0 <= off <= len(self.mem) - self.beat_bytes, f"write outside memory at {a:#x}"
                for i in range(self.beat_bytes):
                    if strb >> i & 1:
                        self.mem[off + i] = (data >> (8 * i)) & 0xFF
            index += 1
            if index == beats:
                self.aws.popleft()
                index = 0
                self.bursts_written += 1
                resp = RESP_SLVERR if self._bad(addr, beats) else RESP_OKAY
                self.resps.append((self.now + self.rng.randint(*self.latency), resp))

    async def b_process(self, ctx):
        axi = self.axi
        while True:
            if not (self.resps and self.resps[0][0] <= self.now):
                ctx.set(axi.bvalid, 0)
                await ctx.tick()
                continue
            ctx.set(axi.bresp, self.resps[0][1])
            ctx.set(axi.bvalid, 1)
            _, _, ready = await ctx.tick().sample(axi.bready)
            if ready:
                self.resps.popleft()

    def attach(self, sim) -> None:
        sim.add_testbench(self.aw_process, background=True)
        sim.add_testbench(self.w_process, background=True)
        sim.add_testbench(self.b_process, background=True)
