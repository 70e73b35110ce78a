"""Splitting a command into AXI4 INCR bursts, shared by the read and write masters.

A command ``(addr, beats)`` is taken while the splitter is idle; then bursts of
``min(remaining, max_burst, beats to the next 4 KiB boundary)`` beats go out on the AR or AW channel,
one per ``issue``. Every decision comes from registers: the next beat address, the beats left and the
beats to the next page are kept, and the burst length is worked out in the cycle after they change, so
address requests go out at most every other cycle (every cycle when ``max_burst`` is 1) -- ample for
bursts that each carry many beats, and it keeps the compare/subtract chains apart.

These functions add the logic to the caller's module (one Yosys module, no port boundary in the path).
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.utils import exact_log2

from .signature import BURST_INCR

PAGE_BYTES = 4096  # AXI4: an INCR burst must not cross a 4 KiB boundary
CACHE_NORMAL = 0b0011  # normal non-cacheable bufferable: lets the interconnect merge/split


@dataclass
class Bursts:
    active: Signal  # a command is being split
    beat_addr: Signal  # next burst's address, in beats
    remaining: Signal  # beats not yet requested
    page_left: Signal  # beats to the next 4 KiB boundary
    page: int
    burst: Signal  # the next burst's length (valid when ``ready``)
    ready: Signal  # ``active`` and ``burst`` up to date
    take: Signal  # the command is taken this cycle
    max_burst: int


def split(m: Module, cmd, *, addr_width: int, len_width: int, data_width: int, max_burst: int) -> Bursts:
    """Registers and logic that take ``cmd`` (stream {addr, beats}) and size the next burst."""
    shift = exact_log2(data_width // 8)
    page_bits = exact_log2(PAGE_BYTES) - shift  # beats per 4 KiB page, as a power of two
    page = 1 << page_bits
    b = Bursts(active=Signal(name="bursts_active"), beat_addr=Signal(addr_width - shift, name="beat_addr"),
               remaining=Signal(len_width, name="beats_remaining"), page_left=Signal(range(page + 1), name="page_left"),
               page=page, burst=Signal(range(max_burst + 1), name="burst"), ready=Signal(name="burst_ok"),
               take=Signal(name="cmd_take"), max_burst=max_burst)
    m.d.comb += [cmd.ready.eq(~b.active), b.take.eq(cmd.valid & ~b.active)]
    with m.If(b.take):
        m.d.sync += [
            b.beat_addr.eq(cmd.payload.addr[shift:]),
            b.remaining.eq(cmd.payload.beats),
            b.page_left.eq(page - cmd.payload.addr[shift:shift + page_bits]),
            b.active.eq(cmd.payload.beats != 0),
        ]
        if max_burst > 1:
            m.d.sync += b.ready.eq(0)
    if max_burst == 1:
        m.d.comb += [b.burst.eq(1), b.ready.eq(b.active)]
    else:
        limit = Mux(b.page_left < max_burst, b.page_left, max_burst)
        with m.If(b.active & ~b.ready):
            m.d.sync += [b.burst.eq(Mux(b.remaining < limit, b.remaining, limit)), b.ready.eq(1)]
    return b


def drive_address(m: Module, axi, channel: str, b: Bursts, issue, data_width: int) -> None:
    """The AR (``channel="ar"``) or AW channel register: reloaded on ``issue`` (which the caller raises
    only with ``b.ready`` and the register free: ``~valid | ready``), cleared when accepted."""
    shift = exact_log2(data_width // 8)
    sig = lambda name: getattr(axi, channel + name)  # noqa: E731
    with m.If(issue):
        m.d.sync += [
            sig("valid").eq(1),
            sig("addr").eq(Cat(Const(0, shift), b.beat_addr)),
            sig("len").eq(b.burst - 1),
            b.beat_addr.eq(b.beat_addr + b.burst),
            b.remaining.eq(b.remaining - b.burst),
            b.page_left.eq(Mux(b.burst == b.page_left, b.page, b.page_left - b.burst)),
            b.active.eq(b.remaining != b.burst),
        ]
        if b.max_burst > 1:
            m.d.sync += b.ready.eq(0)
    with m.Elif(sig("ready")):
        m.d.sync += sig("valid").eq(0)
    m.d.comb += [sig("size").eq(shift), sig("burst").eq(BURST_INCR), sig("cache").eq(CACHE_NORMAL),
                 sig("prot").eq(0), sig("id").eq(0)]
