"""An AXI4-Lite master for Amaranth-simulator testbenches (the host side of a register slave).

``await master.write(ctx, addr, value, strb)`` and ``await master.read(ctx, addr)`` run one transaction
each, with random delays before every VALID and READY, AW and W presented in a random order (or the
order asked for). Each returns the response code; ``read`` returns ``(data, resp)``.

It also checks the slave against the AXI rules a master relies on: a response only after its request
was fully accepted (a write: both AW and W), BVALID/RVALID held with stable BRESP/RDATA/RRESP until
accepted, and -- with ``strict_ready`` (default) -- no combinational path from a VALID to its READY
(READY sampled just before and just after raising VALID must agree).
"""
from __future__ import annotations

import random

ORDERS = ("aw_first", "w_first", "together")


class AxiLiteMaster:
    def __init__(self, bus, *, seed: int = 0, max_delay: int = 3, ready_delay: int = 3,
                 strict_ready: bool = True, timeout: int = 200):
        self.bus, self.rng = bus, random.Random(seed)
        self.max_delay, self.ready_delay = max_delay, ready_delay
        self.strict_ready, self.timeout = strict_ready, timeout
        self.writes = self.reads = 0

    def _delay(self) -> int:
        return self.rng.randint(0, self.max_delay)

    def _raise_valid(self, ctx, valid, ready) -> None:
        before = ctx.get(ready)
        ctx.set(valid, 1)
        if self.strict_ready:
            assert ctx.get(ready) == before, f"{ready.name} follows {valid.name} combinationally"

    async def write(self, ctx, addr: int, value: int, strb: int = 0xF, order: str | None = None) -> int:
        """One write; ``order``: one of :data:`ORDERS`, or None for a random one. Returns BRESP."""
        bus, rng = self.bus, self.rng
        order = order or rng.choice(ORDERS)
        if order not in ORDERS:
            raise ValueError(f"order {order!r} is not one of {ORDERS}")
        ctx.set(bus.awaddr, addr)
        ctx.set(bus.awprot, 0)
        ctx.set(bus.wdata, value)
        ctx.set(bus.wstrb, strb)
        # cycles before each VALID rises; with an order, the second waits for the first's handshake
        aw_wait = 0 if order == "together" else self._delay() if order == "aw_first" else None
        w_wait = 0 if order == "together" else self._delay() if order == "w_first" else None
        aw_done = w_done = False
        bready_wait = None
        held = None  # BRESP offered while BREADY was low
        for _ in range(self.timeout):
            if not aw_done and aw_wait == 0 and not ctx.get(bus.awvalid):
                self._raise_valid(ctx, bus.awvalid, bus.awready)
            if not w_done and w_wait == 0 and not ctx.get(bus.wvalid):
                self._raise_valid(ctx, bus.wvalid, bus.wready)
            if aw_done and w_done:
                if bready_wait is None:
                    bready_wait = rng.randint(0, self.ready_delay)
                ctx.set(bus.bready, bready_wait == 0)
            _, _, awv, awr, wv, wr, bv, br, bresp = await ctx.tick().sample(
                bus.awvalid, bus.awready, bus.wvalid, bus.wready, bus.bvalid, bus.bready, bus.bresp)
            if bv:
                assert aw_done and w_done, "BVALID before the write's address and data were both accepted"
                assert held in (None, bresp), "BRESP changed while BVALID waited for BREADY"
                held = bresp
            if bv and br:
                ctx.set(bus.bready, 0)
                self.writes += 1
                return bresp
            if awv and awr:
                aw_done = True
                ctx.set(bus.awvalid, 0)
                if w_wait is None:
                    w_wait = self._delay() + 1
            if wv and wr:
                w_done = True
                ctx.set(bus.wvalid, 0)
                if aw_wait is None:
                    aw_wait = self._delay() + 1
            aw_wait = None if aw_wait is None else max(0, aw_wait - 1)
            w_wait = None if w_wait is None else max(0, w_wait - 1)
            if bready_wait is not None:
                bready_wait = max(0, bready_wait - 1)
        raise AssertionError(f"write to {addr:#x} timed out after {self.timeout} cycles")

    async def read(self, ctx, addr: int) -> tuple[int, int]:
        """One read; returns (RDATA, RRESP)."""
        bus, rng = self.bus, self.rng
        ctx.set(bus.araddr, addr)
        ctx.set(bus.arprot, 0)
        ar_wait, ar_done, rready_wait = self._delay(), False, None
        held = None  # (rdata, rresp) offered while RREADY was low
        for _ in range(self.timeout):
            if not ar_done and ar_wait == 0 and not ctx.get(bus.arvalid):
                self._raise_valid(ctx, bus.arvalid, bus.arready)
            if ar_done:
                if rready_wait is None:
                    rready_wait = rng.randint(0, self.ready_delay)
                ctx.set(bus.rready, rready_wait == 0)
            _, _, arv, arr, rv, rr, rdata, rresp = await ctx.tick().sample(
                bus.arvalid, bus.arready, bus.rvalid, bus.rready, bus.rdata, bus.rresp)
            if rv:
                assert ar_done, "RVALID before the read's address was accepted"
                assert held in (None, (rdata, rresp)), "RDATA/RRESP changed while RVALID waited for RREADY"
                held = (rdata, rresp)
            if rv and rr:
                ctx.set(bus.rready, 0)
                self.reads += 1
                return rdata, rresp
            if arv and arr:
                ar_done = True
                ctx.set(bus.arvalid, 0)
            ar_wait = max(0, ar_wait - 1)
            if rready_wait is not None:
                rready_wait = max(0, rready_wait - 1)
        raise AssertionError(f"read of {addr:#x} timed out after {self.timeout} cycles")
