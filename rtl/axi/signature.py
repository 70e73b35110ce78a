"""AXI4 read channels (AR and R) as a flat Amaranth signature, seen from the master.

Members are named like the AXI spec's signals (``araddr``, ``rvalid`` ...), so a component member
``axi0`` of this signature becomes Verilog ports ``axi0__araddr`` ..., which cocotbext-axi finds with
``AxiReadBus.from_prefix(dut, "axi0_")``.
"""
from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

BURST_INCR = 0b01
RESP_OKAY = 0b00
RESP_EXOKAY = 0b01
RESP_SLVERR = 0b10
RESP_DECERR = 0b11


class AxiReadSignature(wiring.Signature):
    """AR + R channels of an AXI4 master; ``data_width`` in bits (a power of two, >= 8)."""

    def __init__(self, addr_width: int = 40, data_width: int = 128, id_width: int = 1):
        if not 12 <= addr_width <= 64:
            raise ValueError(f"addr_width {addr_width} must be in 12..64")
        if data_width < 8 or data_width & (data_width - 1):
            raise ValueError(f"data_width {data_width} must be a power of two >= 8")
        self.addr_width, self.data_width, self.id_width = addr_width, data_width, id_width
        super().__init__({
            "arvalid": Out(1), "arready": In(1), "araddr": Out(addr_width), "arlen": Out(8),
            "arsize": Out(3), "arburst": Out(2), "arcache": Out(4), "arprot": Out(3), "arid": Out(id_width),
            "rvalid": In(1), "rready": Out(1), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rid": In(id_width),
        })

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width and other.id_width == self.id_width)

    def __repr__(self):
        return f"AxiReadSignature({self.addr_width}, {self.data_width}, {self.id_width})"


class AxiWriteSignature(wiring.Signature):
    """AW + W + B channels of an AXI4 master; ``data_width`` in bits (a power of two, >= 8)."""

    def __init__(self, addr_width: int = 40, data_width: int = 128, id_width: int = 1):
        if not 12 <= addr_width <= 64:
            raise ValueError(f"addr_width {addr_width} must be in 12..64")
        if data_width < 8 or data_width & (data_width - 1):
            raise ValueError(f"data_width {data_width} must be a power of two >= 8")
        self.addr_width, self.data_width, self.id_width = addr_width, data_width, id_width
        super().__init__({
            "awvalid": Out(1), "awready": In(1), "awaddr": Out(addr_width), "awlen": Out(8),
            "awsize": Out(3), "awburst": Out(2), "awcache": Out(4), "awprot": Out(3), "awid": Out(id_width),
            "wvalid": Out(1), "wready": In(1), "wdata": Out(data_width), "wstrb": Out(data_width // 8),
            "wlast": Out(1),
            "bvalid": In(1), "bready": Out(1), "bresp": In(2), "bid": In(id_width),
        })

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width and other.id_width == self.id_width)

    def __repr__(self):
        return f"AxiWriteSignature({self.addr_width}, {self.data_width}, {self.id_width})"


class AxiLiteSignature(wiring.Signature):
    """AXI4-Lite, seen from the master (the accelerator's register slave takes it flipped)."""

    def __init__(self, addr_width: int = 16, data_width: int = 32):
        if data_width not in (32, 64):
            raise ValueError(f"AXI4-Lite data_width {data_width} must be 32 or 64")
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__({
            "awvalid": Out(1), "awready": In(1), "awaddr": Out(addr_width), "awprot": Out(3),
            "wvalid": Out(1), "wready": In(1), "wdata": Out(data_width), "wstrb": Out(data_width // 8),
            "bvalid": In(1), "bready": Out(1), "bresp": In(2),
            "arvalid": Out(1), "arready": In(1), "araddr": Out(addr_width), "arprot": Out(3),
            "rvalid": In(1), "rready": Out(1), "rdata": In(data_width), "rresp": In(2),
        })

    def __eq__(self, other):
        return type(other) is type(self) and other.addr_width == self.addr_width and other.data_width == self.data_width

    def __repr__(self):
        return f"AxiLiteSignature({self.addr_width}, {self.data_width})"


class AxiSignature(wiring.Signature):
    """A full AXI4 master port (AR/R and AW/W/B), e.g. one of the KV260's S_AXI_HPn_FPD."""

    def __init__(self, addr_width: int = 40, data_width: int = 128, id_width: int = 1):
        self.addr_width, self.data_width, self.id_width = addr_width, data_width, id_width
        members = dict(AxiReadSignature(addr_width, data_width, id_width).members.items())
        members.update(AxiWriteSignature(addr_width, data_width, id_width).members.items())
        super().__init__(members)

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width and other.id_width == self.id_width)

    def __repr__(self):
        return f"AxiSignature({self.addr_width}, {self.data_width}, {self.id_width})"
