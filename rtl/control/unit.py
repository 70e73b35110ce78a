"""The contract between the sequencer and every op unit (embed, norm_quant, matmul, bias, rope,
kv_write, attention, head, store).

Members every unit has (:func:`unit_members`):

- ``start`` (in): a one-cycle pulse while the unit is idle. ``desc`` (the decoded descriptor,
  :data:`~ternfpga.rtl.control.isa.DESC_LAYOUT`) and ``ctx`` (the running block,
  :func:`~ternfpga.rtl.control.isa.ctx_layout`) are valid in that cycle and stay unchanged until ``done``.
- ``busy`` (out): high from the cycle after ``start`` up to and including the ``done`` cycle.
- ``done`` (out): a one-cycle pulse when the op is complete: every VMEM write issued and every DDR write
  acknowledged (BRESP received). ``error`` (an :class:`~ternfpga.rtl.control.isa.ErrorCode`, 0 = OK) and
  ``error_addr`` (the DDR byte address the code names) are valid in that cycle.
- ``stall`` (out): high in a cycle where the unit cannot proceed because of DDR: read data has not
  arrived, or (a unit that only writes) the write path pushes back (the "stalled on memory" counter).

A unit that sees an AXI error still finishes the op (it may stop issuing new requests, but it accepts
every beat and response it asked for), then reports the first error. Shared resources (VMEM ports,
the engine's input, AXI masters) are multiplexed by the top according to the running op, so a unit may
leave anything on them while idle.
"""
from __future__ import annotations

from amaranth.lib.wiring import In, Out

from .isa import DESC_LAYOUT, ctx_layout

ERROR_BITS = 4


def unit_members(addr_width: int = 40) -> dict:
    return {
        "start": In(1),
        "desc": In(DESC_LAYOUT),
        "ctx": In(ctx_layout(addr_width)),
        "busy": Out(1),
        "done": Out(1),
        "error": Out(ERROR_BITS),
        "error_addr": Out(addr_width),
        "stall": Out(1),
    }
