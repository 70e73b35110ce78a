"""AXI4 slave to AXI4-Lite master: the PS's M_AXI_HPM0_FPD (a full AXI4 master with IDs and bursts) onto
the accelerator's register slave.

One transaction at a time, writes first when both are waiting. A burst of ``len + 1`` beats becomes as
many AXI4-Lite accesses, at ``addr``, ``addr + 4`` ... (INCR and WRAP bursts; FIXED repeats ``addr``);
the Lite address is the low ``lite_addr_width`` bits (the PS presents the whole 40-bit address). Reads
return each access's RRESP on its beat, with the burst's ID and ``rlast`` on the last; a write burst
answers one B with its ID and the worst BRESP of its accesses. The A53 reaches the registers with
single 32-bit accesses through the UIO mapping, so this is a correct bridge rather than a fast one.

Latency: a single read takes 2 cycles plus the slave's; a single write 3 plus the slave's. Every path
is a register or one LUT of pass-through (R data, ``rready``).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .signature import AxiLiteSignature, AxiSignature

BURST_FIXED = 0b00


class AxiToLite(wiring.Component):
    """``s``: the AXI4 slave side (``addr_width``, 32-bit data, ``id_width``); ``m``: the AXI4-Lite master
    side (``lite_addr_width``)."""

    def __init__(self, *, addr_width: int = 40, id_width: int = 16, lite_addr_width: int = 16):
        if not 2 < lite_addr_width <= addr_width:
            raise ValueError(f"lite_addr_width {lite_addr_width} must be in 3..addr_width ({addr_width})")
        if id_width < 1:
            raise ValueError(f"id_width {id_width} must be >= 1")
        self.addr_width, self.id_width, self.lite_addr_width = addr_width, id_width, lite_addr_width
        super().__init__({
            "s": In(AxiSignature(addr_width, 32, id_width)),
            "m": Out(AxiLiteSignature(lite_addr_width, 32)),
        })

    def elaborate(self, platform):
        m = Module()
        s, lite = self.s, self.m
        addr = Signal(self.lite_addr_width)
        tid = Signal(self.id_width)
        left = Signal(8)  # beats after the current one
        fixed = Signal()
        prot = Signal(3)
        resp = Signal(2)  # worst BRESP of a write burst
        wdata = Signal(32)
        wstrb = Signal(4)
        aw_done = Signal()
        w_done = Signal()
        nxt = Mux(fixed, addr, addr + 4)

        m.d.comb += [lite.awaddr.eq(addr), lite.araddr.eq(addr), lite.awprot.eq(prot), lite.arprot.eq(prot),
                     lite.wdata.eq(wdata), lite.wstrb.eq(wstrb),
                     s.rid.eq(tid), s.bid.eq(tid), s.bresp.eq(resp),
                     s.rdata.eq(lite.rdata), s.rresp.eq(lite.rresp), s.rlast.eq(left == 0)]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [s.awready.eq(1), s.arready.eq(~s.awvalid)]
                with m.If(s.awvalid):
                    m.d.sync += [addr.eq(s.awaddr), tid.eq(s.awid), left.eq(s.awlen), prot.eq(s.awprot),
                                 fixed.eq(s.awburst == BURST_FIXED), resp.eq(0)]
                    m.next = "W_DATA"
                with m.Elif(s.arvalid):
                    m.d.sync += [addr.eq(s.araddr), tid.eq(s.arid), left.eq(s.arlen), prot.eq(s.arprot),
                                 fixed.eq(s.arburst == BURST_FIXED)]
                    m.next = "R_ADDR"
            with m.State("R_ADDR"):
                m.d.comb += lite.arvalid.eq(1)
                with m.If(lite.arready):
                    m.next = "R_DATA"
            with m.State("R_DATA"):
                m.d.comb += [s.rvalid.eq(lite.rvalid), lite.rready.eq(s.rready)]
                with m.If(lite.rvalid & s.rready):
                    m.d.sync += [addr.eq(nxt), left.eq(left - 1)]
                    with m.If(left == 0):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "R_ADDR"
            with m.State("W_DATA"):
                m.d.comb += s.wready.eq(1)
                with m.If(s.wvalid):
                    m.d.sync += [wdata.eq(s.wdata), wstrb.eq(s.wstrb), aw_done.eq(0), w_done.eq(0)]
                    m.next = "W_LITE"
            with m.State("W_LITE"):
                m.d.comb += [lite.awvalid.eq(~aw_done), lite.wvalid.eq(~w_done)]
                aw = aw_done | lite.awready
                w = w_done | lite.wready
                m.d.sync += [aw_done.eq(aw), w_done.eq(w)]
                with m.If(aw & w):
                    m.next = "W_RESP"
            with m.State("W_RESP"):
                m.d.comb += lite.bready.eq(1)
                with m.If(lite.bvalid):
                    m.d.sync += [resp.eq(Mux(lite.bresp > resp, lite.bresp, resp)), addr.eq(nxt), left.eq(left - 1)]
                    with m.If(left == 0):
                        m.next = "B"
                    with m.Else():
                        m.next = "W_DATA"
            with m.State("B"):
                m.d.comb += s.bvalid.eq(1)
                with m.If(s.bready):
                    m.next = "IDLE"
        return m
