"""The accelerator's register file: an AXI4-Lite slave generated from a :class:`~.regmap.RegMap`.

Members for the core, named from the map (lower case):

- a register without fields: ``<reg>`` (32 bits), e.g. ``program``, ``error_code``;
- a register with fields: one member per field, ``<reg>_<field>`` (the field's width), e.g.
  ``control_start``, ``status_busy``, ``irq_enable_done``;
- a 64-bit ``X_LO``/``X_HI`` pair: one 64-bit member ``<x>``, e.g. ``ddr_base``, ``cycles_total``;
- direction by access: RO: ``In`` (the core drives it; identification registers are built-in constants,
  not ports); RW: ``Out`` (the stored value); W1P: ``Out`` one-cycle pulses; W1C: ``In`` event pulses
  that set the bit;
- ``irq``: ``Out``, OR of (W1C status & RW enable) of the map's ``irq`` pair, registered.

Bus behaviour: AW and W are accepted independently (either may come first; both ``ready`` are
registers, high while that channel's holding register is empty), one write and one read outstanding.
The write is performed the cycle after both are held, BVALID rises with it, and both channels are ready
again after the B handshake. A read returns RVALID two cycles after the AR handshake (the address is
registered, then the word is muxed into RDATA); ARREADY is high again after the R handshake.
Responses are OKAY, or SLVERR for an address no register decodes (reads return 0, writes do nothing).
Writes to RO registers are ignored (OKAY). Address bits [1:0] are ignored (word registers).
All outputs are registers. Throughput: one write per 3 cycles, one read per 3 cycles, concurrently.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.axi.signature import RESP_OKAY, RESP_SLVERR, AxiLiteSignature

from .regmap import REGMAP, WORD_BITS, Access, Register, RegMap, identification

ADDR_WIDTH = 16  # a 64 KiB window


def _field_name(reg: Register, fname: str | None) -> str:
    return reg.name.lower() if fname is None else f"{reg.name}_{fname}".lower()


def core_members(regmap: RegMap) -> dict[str, object]:
    """The core-facing members of a :class:`RegFile` for ``regmap`` (name -> In/Out), by the rule above."""
    members: dict[str, object] = {}
    paired = {r.name for pair in regmap.pairs.values() for r in pair}
    for base, (lo, _) in regmap.pairs.items():
        members[base.lower()] = (In if lo.access is Access.RO else Out)(2 * WORD_BITS)
    for reg in regmap:
        if reg.const or reg.name in paired:
            continue
        direction = In if reg.access in (Access.RO, Access.W1C) else Out
        if not reg.fields:
            members[_field_name(reg, None)] = direction(WORD_BITS)
        for fname, (_, width, _) in reg.fields.items():
            members[_field_name(reg, fname)] = direction(width)
    return members


class RegFile(wiring.Component):
    """AXI4-Lite register slave for ``regmap``; the identification registers hold ``params``' constants."""

    def __init__(self, regmap: RegMap = REGMAP, params: AccelParams | None = None):
        self.regmap = regmap
        self.params = params if params is not None else AccelParams()
        ident = identification(self.params)
        self.constants = {}
        for reg in regmap:
            if reg.const:
                if reg.name not in ident:
                    raise ValueError(f"constant register {reg.name} has no identification value")
                self.constants[reg.name] = ident[reg.name]
        self.index_bits = max(1, ceil_log2(max(regmap.span, 4) // 4))
        if 2 + self.index_bits > ADDR_WIDTH:
            raise ValueError(f"the register map spans {regmap.span:#x} bytes, beyond the {ADDR_WIDTH}-bit window")
        members = core_members(regmap)
        for reserved in ("bus", "irq"):
            if reserved in members:
                raise ValueError(f"a register member would be named {reserved!r}")
        super().__init__({"bus": In(AxiLiteSignature(addr_width=ADDR_WIDTH, data_width=WORD_BITS)),
                          "irq": Out(1), **members})

    def _decode(self, addr) -> tuple:
        """(word index, address decodes to a register) of a bus address."""
        index = addr[2:2 + self.index_bits]
        mapped = Const(sum(1 << (r.offset // 4) for r in self.regmap), 1 << self.index_bits)
        upper_zero = addr[2 + self.index_bits:] == 0 if 2 + self.index_bits < ADDR_WIDTH else Const(1)
        return index, upper_zero & mapped.bit_select(index, 1)

    def elaborate(self, platform) -> Module:
        m = Module()
        bus, rmap = self.bus, self.regmap
        ib = self.index_bits
        self._snaps: dict[str, Signal] = {}  # HI register name -> capture made by its LO read
        self._w1c: dict[str, dict[str, Signal]] = {}  # W1C register -> field -> stored bit

        # -- write channel: AW and W held independently, performed once both are in ----------------
        awready = Signal(init=1)
        wready = Signal(init=1)
        arready = Signal(init=1)
        m.d.comb += [bus.awready.eq(awready), bus.wready.eq(wready), bus.arready.eq(arready)]
        aw_index = Signal(ib)
        aw_ok = Signal()
        w_data = Signal(WORD_BITS)
        w_strb = Signal(WORD_BITS // 8)
        index, ok = self._decode(bus.awaddr)
        with m.If(bus.awvalid & awready):
            m.d.sync += [awready.eq(0), aw_index.eq(index), aw_ok.eq(ok)]
        with m.If(bus.wvalid & wready):
            m.d.sync += [wready.eq(0), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        do_write = Signal()
        m.d.comb += do_write.eq(~awready & ~wready & ~bus.bvalid)
        with m.If(do_write):
            m.d.sync += [bus.bvalid.eq(1), bus.bresp.eq(Mux(aw_ok, RESP_OKAY, RESP_SLVERR))]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += [bus.bvalid.eq(0), awready.eq(1), wready.eq(1)]
        # per-bit write mask of the held write (wstrb expanded)
        bitmask = Cat(*(w_strb[i // 8] for i in range(WORD_BITS)))

        def write_sel(reg: Register):
            return do_write & aw_ok & (aw_index == reg.offset // 4)

        # -- storage and the value each register reads --------------------------------------------
        words: dict[int, object] = {}  # word index -> 32-bit value read
        snap_loads = []  # (LO word index, HI snapshot register, 64-bit source)
        for reg in rmap:
            words[reg.offset // 4] = self._register(m, reg, write_sel(reg), w_data, bitmask, snap_loads)

        # interrupt: OR of (status & enable), registered
        if rmap.irq is not None:
            status, enable = rmap[rmap.irq[0]], rmap[rmap.irq[1]]
            pend = [self._w1c[status.name][f] & getattr(self, _field_name(enable, f)) for f in status.fields]
            m.d.sync += self.irq.eq(Cat(*pend).any())

        # -- read channel: address registered, then the word muxed into RDATA ----------------------
        ar_index = Signal(ib)
        ar_ok = Signal()
        ar_held = Signal()
        index, ok = self._decode(bus.araddr)
        with m.If(bus.arvalid & arready):
            m.d.sync += [arready.eq(0), ar_held.eq(1), ar_index.eq(index), ar_ok.eq(ok)]
        table = Cat(*(words.get(i, Const(0, WORD_BITS)) for i in range(1 << ib)))
        with m.If(ar_held):
            m.d.sync += [ar_held.eq(0), bus.rvalid.eq(1),
                         bus.rdata.eq(Mux(ar_ok, table.word_select(ar_index, WORD_BITS), 0)),
                         bus.rresp.eq(Mux(ar_ok, RESP_OKAY, RESP_SLVERR))]
            for lo_index, snap, source in snap_loads:
                with m.If(ar_ok & (ar_index == lo_index)):
                    m.d.sync += snap.eq(source[WORD_BITS:])
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += [bus.rvalid.eq(0), arready.eq(1)]
        return m

    def _register(self, m: Module, reg: Register, sel, w_data, bitmask, snap_loads):
        """Build ``reg``'s storage and write behaviour; return the 32-bit value a read returns."""
        if reg.const:
            return Const(self.constants[reg.name], WORD_BITS)
        pair = next(((base, lo, hi) for base, (lo, hi) in self.regmap.pairs.items() if reg in (lo, hi)), None)
        if pair is not None:
            base, lo, hi = pair
            wide = getattr(self, base.lower())
            part = wide[:WORD_BITS] if reg is lo else wide[WORD_BITS:]
            if reg.access is Access.RW:
                stored = Signal(WORD_BITS, init=reg.reset, name=f"{reg.name.lower()}_q")
                m.d.comb += part.eq(stored)
                with m.If(sel):
                    m.d.sync += stored.eq((stored & ~bitmask) | (w_data & bitmask))
                return stored
            if reg is lo:
                snap = Signal(WORD_BITS, name=f"{base.lower()}_hi_snap")
                snap_loads.append((lo.offset // 4, snap, wide))
                self._snaps[hi.name] = snap
                return part
            return self._snaps[reg.name]  # HI: the capture made by the last LO read (LO comes first)

        fields = reg.fields or {None: (0, WORD_BITS, "")}
        value = Const(0, WORD_BITS)
        parts = []  # (lsb, signal)
        if reg.access is Access.W1C:
            self._w1c[reg.name] = {}
        for fname, (lsb, width, _) in fields.items():
            port = getattr(self, _field_name(reg, fname))
            if reg.access is Access.RO:
                parts.append((lsb, port))
            elif reg.access is Access.RW:
                stored = Signal(width, init=(reg.reset >> lsb) & ((1 << width) - 1),
                                name=f"{_field_name(reg, fname)}_q")
                m.d.comb += port.eq(stored)
                fmask = bitmask[lsb:lsb + width]
                with m.If(sel):
                    m.d.sync += stored.eq((stored & ~fmask) | (w_data[lsb:lsb + width] & fmask))
                parts.append((lsb, stored))
            elif reg.access is Access.W1P:
                m.d.sync += port.eq(sel & bitmask[lsb] & w_data[lsb])
            else:  # W1C: an event in the same cycle as the clear wins
                bit = Signal(init=(reg.reset >> lsb) & 1, name=f"{_field_name(reg, fname)}_q")
                m.d.sync += bit.eq((bit & ~(sel & bitmask[lsb] & w_data[lsb])) | port)
                self._w1c[reg.name][fname] = bit
                parts.append((lsb, bit))
        if not parts:
            return value
        bits = [Const(0, 1)] * WORD_BITS
        for lsb, sig in parts:
            for i in range(len(sig)):
                bits[lsb + i] = sig[i]
        return Cat(*bits)
