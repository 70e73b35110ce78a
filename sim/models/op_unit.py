"""Running one op on an op unit in an Amaranth-simulator testbench, checking the unit contract of
rtl/control/unit.py on the way: ``busy`` from the cycle after ``start`` up to and including the ``done``
cycle, ``done`` for one cycle, idle afterwards."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OpRun:
    error: int
    error_addr: int
    cycles: int  # from the start edge to the done cycle, both counted
    stalls: int  # cycles with ``stall`` high


async def run_op(ctx, unit, desc, block: dict, *, limit: int = 100_000, idle_after: int = 2) -> OpRun:
    """Start ``unit`` on ``desc`` (a :class:`~ternfpga.rtl.control.isa.Descriptor` or a field dict) with the
    block context fields ``block`` (T, pos0, tok0, last_block, ddr_base, tokens; missing ones are 0) and
    wait for ``done``."""
    if hasattr(desc, "pack"):
        ctx.set(unit.desc.as_value(), int.from_bytes(desc.pack(), "little"))
    else:
        ctx.set(unit.desc, desc)
    ctx.set(unit.ctx, {"T": 0, "pos0": 0, "tok0": 0, "last_block": 0, "ddr_base": 0, "tokens": 0,
                       **{k: int(v) for k, v in block.items()}})
    assert not ctx.get(unit.busy), "busy before start"
    ctx.set(unit.start, 1)
    await ctx.tick()
    ctx.set(unit.start, 0)
    cycles = stalls = 0
    while True:
        busy, done, stall = ctx.get(unit.busy), ctx.get(unit.done), ctx.get(unit.stall)
        assert busy, f"busy low before done (cycle {cycles})"
        cycles += 1
        stalls += stall
        if done:
            run = OpRun(ctx.get(unit.error), ctx.get(unit.error_addr), cycles, stalls)
            break
        assert cycles < limit, f"no done after {limit} cycles"
        await ctx.tick()
    for _ in range(idle_after):
        await ctx.tick()
        assert not ctx.get(unit.done), "done longer than one cycle"
        assert not ctx.get(unit.busy), "busy after done"
    return run
