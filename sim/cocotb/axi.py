"""AXI4 read memory for cocotb testbenches: cocotbext-axi's ``AxiRamRead`` with a pipelined read
latency, random AR/R stalls and SLVERR injection for chosen address ranges.

Port naming: an Amaranth member ``axi`` of :class:`~ternfpga.rtl.axi.signature.AxiReadSignature`
becomes Verilog ports ``axi__araddr`` ...; cocotb_bus joins prefix and signal with ``"_"``, so the
prefix is ``"axi_"`` (``AxiReadBus.from_prefix(dut, "axi_")``).

cocotbext-axi facts this relies on (0.1.28): ``ram.ar_channel`` (an ``AxiARSink``, drives arready)
and ``ram.r_channel`` (an ``AxiRSource``, drives rvalid) take ``set_pause_generator(iterable)``, one
bool per clock, True = stall. The slave serves bursts one at a time, pulling ARs with
``ar_channel.recv()`` and each beat's data from ``_read(address, length)``; if ``_read`` raises,
that beat goes out as zeros with RRESP=SLVERR.
"""
from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator

import cocotb
from cocotb.triggers import Event, RisingEdge
from cocotbext.axi import AxiRamRead, AxiReadBus


def random_pauses(rng: random.Random, probability: float) -> Iterator[bool]:
    """Endless pause pattern: each cycle stalled with ``probability``."""
    while True:
        yield rng.random() < probability


class _ReadLatency:
    """Holds each AR for ``latency`` cycles after its handshake before the slave may serve it.

    ARs are drained from the sink as soon as they are accepted and time-stamped, so bursts overlap
    like behind a real memory controller (the plain model would answer within ~2 cycles).
    """

    def __init__(self, ram: AxiRamRead, clock, latency: tuple[int, int], rng: random.Random):
        self._sink_recv = ram.ar_channel.recv  # the real one; ram.ar_channel.recv is replaced below
        self._clock, self._latency, self._rng = clock, latency, rng
        self._pending: deque = deque()  # (due cycle, AR transaction), in AR order
        self._arrived = Event()
        self.cycle = 0
        ram.ar_channel.recv = self.recv
        cocotb.start_soon(self._count())
        cocotb.start_soon(self._drain())

    async def _count(self) -> None:
        edge = RisingEdge(self._clock)
        while True:
            await edge
            self.cycle += 1

    async def _drain(self) -> None:
        while True:
            ar = await self._sink_recv()
            due = self.cycle + self._rng.randint(*self._latency)
            if self._pending:  # keep AR order: a burst never starts before an earlier one
                due = max(due, self._pending[-1][0])
            self._pending.append((due, ar))
            self._arrived.set()

    async def recv(self):
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        due, ar = self._pending.popleft()
        edge = RisingEdge(self._clock)
        while self.cycle < due:
            await edge
        return ar


class AxiReadMemory(AxiRamRead):
    """Sparse AXI4 read-only memory. ``latency`` (cycles, fixed int or ``(lo, hi)`` random per
    burst) is from AR handshake to the burst's first beat at the earliest; ``ar_pause`` / ``r_pause``
    are per-cycle stall probabilities on arready / rvalid. Beats in :meth:`add_error_range` ranges
    answer SLVERR with zero data."""

    def __init__(self, bus: AxiReadBus, clock, reset=None, *, size: int = 2**40,
                 latency: int | tuple[int, int] = 0, ar_pause: float = 0.0, r_pause: float = 0.0,
                 seed: int = 0, reset_active_level: bool = True):
        super().__init__(bus, clock, reset, reset_active_level=reset_active_level, size=size)
        rng = random.Random(seed)
        self._errors: list[tuple[int, int]] = []
        lat = (latency, latency) if isinstance(latency, int) else tuple(latency)
        if lat[1] > 0:
            self.read_latency = _ReadLatency(self, clock, lat, random.Random(rng.random()))
        if ar_pause:
            self.ar_channel.set_pause_generator(random_pauses(random.Random(rng.random()), ar_pause))
        if r_pause:
            self.r_channel.set_pause_generator(random_pauses(random.Random(rng.random()), r_pause))

    def add_error_range(self, start: int, end: int) -> None:
        """Beats whose address is in ``[start, end)`` get RRESP=SLVERR (and zero data)."""
        self._errors.append((start, end))

    async def _read(self, address: int, length: int) -> bytes:
        if any(lo <= address < hi for lo, hi in self._errors):
            raise OSError(f"injected SLVERR at {address:#x}")  # the slave turns this into SLVERR
        return await super()._read(address, length)


def attach_read_memory(dut, prefix: str = "axi_", *, clock=None, reset=None, **kwargs) -> AxiReadMemory:
    """An :class:`AxiReadMemory` on the DUT's AXI read ports ``<prefix>_ar*`` / ``<prefix>_r*``
    (Amaranth member ``axi`` -> prefix ``"axi_"``), clocked by ``dut.clk`` and reset by ``dut.rst``
    unless given."""
    bus = AxiReadBus.from_prefix(dut, prefix)
    return AxiReadMemory(bus, clock if clock is not None else dut.clk,
                         reset if reset is not None else dut.rst, **kwargs)
