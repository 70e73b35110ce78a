"""The KV260 platform: the XCK26 as an Amaranth ``XilinxPlatform`` and the top that puts the accelerator
behind the Zynq UltraScale+ PS.

```
  PS (zynq_ultra_ps_e, module "ps", made by the build's TCL)
    pl_clk0 ─────────────▶ sync clock (and every AXI port's aclk)
    pl_resetn0 ──────────▶ ResetSynchronizer ─▶ sync reset
    M_AXI_HPM0_FPD (maxigp0, 32 bit) ─▶ AxiToLite ─▶ accelerator s_axil (registers at 0xA000_0000)
    S_AXI_HP0..3_FPD (saxigp2..5, 128 bit) ◀── accelerator hp0..hp3
    pl_ps_irq0[0] ◀── accelerator irq
    emio_ttc0_wave_o[2] ─▶ fan_en_b (pin A12), as AMD's base design drives the fan
```

The PS's ports are listed once (:func:`ps_ports`): the top's ``Instance`` and the lint stub
(:func:`lint_stubs_verilog`, for ``verilator --lint-only`` where Vivado's IP is absent) both come from it.
Names and widths follow the zynq_ultra_ps_e 3.5 port template (KV260-FACTS §1): slave ports with
6-bit IDs, 49-bit addresses and 1-bit AxUSER; the master port with 16-bit IDs, 40-bit addresses and
16-bit AxUSER.
"""
from __future__ import annotations

from amaranth.build import Attrs, Pins, Resource
from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.vendor import XilinxPlatform

from ternfpga.rtl.accel import Accelerator
from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.axi.lite_bridge import AxiToLite

from .kv260_shell import APP, HPM0_DATA_WIDTH, REG_SIZE

PS_MODULE = "ps"  # create_ip -module_name
TOP_NAME = APP  # the Verilog top, the .bit and the .bit.bin
HP_GP = (2, 3, 4, 5)  # S_AXI_HP0..3_FPD are the PS's saxigp2..5
S_ID, S_ADDR = 6, 49
M_ID, M_ADDR, M_USER = 16, 40, 16
LITE_ADDR = (REG_SIZE - 1).bit_length()


def _axi_ports(prefix: str, *, master: bool, id_w: int, addr_w: int, data_w: int, user_w: int) -> list:
    """The AXI4 ports of one PS interface as ``(name, dir, width)``, ``dir`` seen from the PS."""
    out_, in_ = ("o", "i") if master else ("i", "o")
    req = [("id", id_w), ("addr", addr_w), ("len", 8), ("size", 3), ("burst", 2), ("lock", 1), ("cache", 4),
           ("prot", 3), ("valid", 1), ("user", user_w), ("qos", 4)]
    ports = [(f"{prefix}_aw{n}", out_, w) for n, w in req] + [(f"{prefix}_awready", in_, 1)]
    ports += [(f"{prefix}_w{n}", out_, w) for n, w in (("data", data_w), ("strb", data_w // 8), ("last", 1),
                                                         ("valid", 1))]
    ports += [(f"{prefix}_wready", in_, 1)]
    ports += [(f"{prefix}_b{n}", in_, w) for n, w in (("id", id_w), ("resp", 2), ("valid", 1))]
    ports += [(f"{prefix}_bready", out_, 1)]
    ports += [(f"{prefix}_ar{n}", out_, w) for n, w in req] + [(f"{prefix}_arready", in_, 1)]
    ports += [(f"{prefix}_r{n}", in_, w) for n, w in (("id", id_w), ("data", data_w), ("resp", 2), ("last", 1),
                                                        ("valid", 1))]
    ports += [(f"{prefix}_rready", out_, 1)]
    return ports


def ps_ports(hp_ports: int = 4) -> list[tuple[str, str, int]]:
    """Every PS port the top connects, as ``(name, dir, width)`` with ``dir`` "i"/"o" seen from the PS."""
    ports = [("pl_clk0", "o", 1), ("pl_resetn0", "o", 1), ("pl_ps_irq0", "i", 1), ("emio_ttc0_wave_o", "o", 3),
             ("maxihpm0_fpd_aclk", "i", 1)]
    ports += _axi_ports("maxigp0", master=True, id_w=M_ID, addr_w=M_ADDR, data_w=HPM0_DATA_WIDTH, user_w=M_USER)
    for i in range(hp_ports):
        ports.append((f"saxihp{i}_fpd_aclk", "i", 1))
        ports += _axi_ports(f"saxigp{HP_GP[i]}", master=False, id_w=S_ID, addr_w=S_ADDR, data_w=128, user_w=1)
    return ports


def lint_stubs_verilog(hp_ports: int = 4) -> str:
    """Stand-ins for what Vivado supplies, so that ``verilator --lint-only`` checks the top here: an
    empty ``ps`` module with the PS's ports (outputs tied low) and the two UNISIM primitives the platform
    instantiates (OBUFT for the fan pin, FDPE for the reset synchronizer). Never synthesized."""
    decl = [f"    {'output' if d == 'o' else 'input'} wire {f'[{w - 1}:0] ' if w > 1 else ''}{n}"
            for n, d, w in ps_ports(hp_ports)]
    body = "\n".join(f"    assign {n} = {w}'d0;" for n, d, w in ps_ports(hp_ports) if d == "o")
    ps = (f"// lint stand-in for the zynq_ultra_ps_e instance '{PS_MODULE}' (ports only)\n"
          f"module {PS_MODULE} (\n" + ",\n".join(decl) + "\n);\n" + body + "\nendmodule\n")
    unisim = """
// lint stand-ins for UNISIM primitives
module OBUFT (output wire O, input wire I, input wire T);
    assign O = T ? 1'bz : I;
endmodule
module FDPE #(parameter [0:0] INIT = 1'b1, parameter [0:0] IS_C_INVERTED = 1'b0,
              parameter [0:0] IS_D_INVERTED = 1'b0, parameter [0:0] IS_PRE_INVERTED = 1'b0)
             (output reg Q, input wire C, input wire CE, input wire D, input wire PRE);
    initial Q = INIT;
    always @(posedge C or posedge PRE) if (PRE) Q <= 1'b1; else if (CE) Q <= D;
endmodule
"""
    return ps + unisim


class Kv260Platform(XilinxPlatform):
    """The K26 SOM on the KV260 carrier: ``xck26-sfvc784-2LV-c``. The clock comes from the PS (pl_clk0),
    so the platform has no default clock; the only pin is the fan enable."""

    device = "xck26"
    package = "sfvc784"
    speed = "2LV-c"
    default_clk = None
    resources = [
        Resource("fan_en_b", 0, Pins("A12", dir="o"), Attrs(IOSTANDARD="LVCMOS33", SLEW="SLOW", DRIVE="4")),
    ]
    connectors = []

    def __init__(self, *, tcl_template: str | None = None, **kwargs):
        super().__init__(toolchain="Vivado", **kwargs)
        self._tcl_template = tcl_template

    @property
    def file_templates(self):
        templates = dict(super().file_templates)
        if self._tcl_template is not None:
            templates["{{name}}.tcl"] = self._tcl_template
        return templates


class Kv260Top(Elaboratable):
    """The accelerator for ``params`` behind the PS (see the module docstring)."""

    def __init__(self, params: AccelParams | None = None):
        self.params = params or AccelParams()
        if self.params.ports > len(HP_GP):
            raise ValueError(f"the KV260 has {len(HP_GP)} HP ports; the accelerator wants {self.params.ports}")
        if self.params.addr_width > S_ADDR:
            raise ValueError(f"addr_width {self.params.addr_width} exceeds the HP ports' {S_ADDR} bits")

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.accel = accel = Accelerator(p)
        m.submodules.bridge = bridge = AxiToLite(addr_width=M_ADDR, id_width=M_ID, lite_addr_width=LITE_ADDR)
        wiring.connect(m, bridge.m, accel.s_axil)

        ps = {name: Signal(w, name=f"ps_{name}") for name, _, w in ps_ports(p.ports)}
        m.domains.sync = ClockDomain("sync")
        clk = ClockSignal("sync")
        m.d.comb += clk.eq(ps["pl_clk0"])
        rst = Signal()
        m.d.comb += rst.eq(~ps["pl_resetn0"])
        m.submodules.reset_sync = ResetSynchronizer(rst, domain="sync")
        m.d.comb += [ps["maxihpm0_fpd_aclk"].eq(clk), ps["pl_ps_irq0"].eq(accel.irq)]

        # M_AXI_HPM0_FPD -> the bridge's AXI4 slave side
        s = bridge.s
        for name, member in s.signature.members.items():
            pin = ps[f"maxigp0_{name}"]
            if member.flow == wiring.In:  # driven by the PS
                m.d.comb += getattr(s, name).eq(pin)
            else:
                m.d.comb += pin.eq(getattr(s, name))

        # hp0..3 -> S_AXI_HP0..3_FPD; IDs, locks, QoS and AxUSER stay 0
        for i in range(p.ports):
            m.d.comb += ps[f"saxihp{i}_fpd_aclk"].eq(clk)
            hp, pre = getattr(accel, f"hp{i}"), f"saxigp{HP_GP[i]}"
            for name, member in hp.signature.members.items():
                pin = ps[f"{pre}_{name}"]
                if member.flow == wiring.Out:  # the accelerator drives it
                    m.d.comb += pin.eq(getattr(hp, name))
                else:
                    m.d.comb += getattr(hp, name).eq(pin)

        if platform is not None:
            fan = platform.request("fan_en_b", 0, dir="-")
            m.submodules.fan = fan_buf = io.Buffer("o", fan)
            m.d.comb += fan_buf.o.eq(ps["emio_ttc0_wave_o"][2])

        kw = {}
        for name, d, _ in ps_ports(p.ports):
            kw[f"{'o' if d == 'o' else 'i'}_{name}"] = ps[name]
        m.submodules.ps = Instance(PS_MODULE, **kw)
        return m
