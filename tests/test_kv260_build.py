"""`ternfpga build kv260` without Vivado: the generated top lints, the TCL sets every PS property and
step the flow needs, the top connects every PS port where it must, the overlay compiles and decompiles to
the register window, interrupt, clock and u-dma-buf the host looks for, shell.json parses, the .bif names
the bitstream, the deploy folder holds what xmutil loads, and the report parsers read Vivado's formats."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ternfpga.boards import kv260_shell as shell
from ternfpga.boards.kv260 import HP_GP, PS_MODULE, lint_stubs_verilog, ps_ports
from ternfpga.boards.kv260_build import DEPLOY, build_kv260, finish, max_model_ddr_bytes
from ternfpga.boards.kv260_flow import parse_timing, parse_utilization
from ternfpga.host.cli import main
from ternfpga.rtl.accel import WRITE_PORT
from ternfpga.sim.cocotb.build import ensure_verilator
from ternfpga.sim.cocotb.tb_accel import tiny_params

PARAMS = tiny_params()
FREQ = 250.0
DDR_MIB = 64


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("kv260")
    lines: list[str] = []
    res = build_kv260(d, PARAMS, freq_mhz=FREQ, ddr_mib=DDR_MIB, run_tools=False, progress=lines.append)
    assert not res.ran_vivado and any("vivado -mode batch -source ternfpga.tcl" in i for i in res.instructions)
    assert any(line.startswith("[build] overlay") for line in lines)
    return d


def test_top_passes_verilator_lint(out, tmp_path):
    stubs = tmp_path / "stubs.v"
    stubs.write_text(lint_stubs_verilog(PARAMS.ports))
    # the waived warnings are the style of Amaranth's generated Verilog (the virtual KV260 waives them too);
    # connectivity warnings are on
    r = subprocess.run([str(ensure_verilator()), "--lint-only", "-Wno-WIDTH", "-Wno-ASCRANGE", "-Wno-CASEINCOMPLETE",
                        "-Wno-CASEOVERLAP", "-Wno-UNSIGNED", "-Wwarn-PINMISSING", "-Wwarn-PINCONNECTEMPTY",
                        "-Wwarn-IMPLICIT", "--top-module", "ternfpga", str(out / "ternfpga.v"), str(stubs)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "%" not in r.stderr, r.stderr[-2000:]


def tcl_properties(tcl: str) -> dict[str, str]:
    block = re.search(r"set_property -dict \[list \\\n(.*?)\] \[get_ips " + PS_MODULE + r"\]", tcl, re.S)
    assert block, "no set_property -dict on the PS IP"
    return dict(re.findall(r"CONFIG\.(\S+) \{([^}]*)\}", block.group(1)))


def test_tcl_sets_the_ps_and_runs_every_step(out):
    tcl = (out / "ternfpga.tcl").read_text()
    props = tcl_properties(tcl)
    for i in range(4):
        assert props[f"PSU__USE__S_AXI_GP{HP_GP[i]}"] == "1", f"S_AXI_HP{i}_FPD not enabled"
        assert props[f"PSU__SAXIGP{HP_GP[i]}__DATA_WIDTH"] == "128"
    assert props["PSU__USE__M_AXI_GP0"] == "1" and props["PSU__MAXIGP0__DATA_WIDTH"] == "32"
    assert props["PSU__USE__M_AXI_GP1"] == "0"
    assert props["PSU__FPGA_PL0_ENABLE"] == "1" and props["PSU__CRL_APB__PL0_REF_CTRL__SRCSEL"] == "IOPLL"
    assert float(props["PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"]) == FREQ
    assert props["PSU__USE__IRQ0"] == "1" and props["PSU__NUM_F2P0__INTR__INPUTS"] == "1"
    assert props["PSU__NUM_FABRIC_RESETS"] == "1"
    assert props["PSU__TTC0__WAVEOUT__ENABLE"] == "1" and props["PSU__TTC0__WAVEOUT__IO"] == "EMIO"
    assert "set part xck26-sfvc784-2LV-c" in tcl and "create_project -in_memory -part $part" in tcl
    assert "-name zynq_ultra_ps_e -module_name ps" in tcl
    order = ["create_ip", "generate_target all", "synth_ip", "read_verilog ternfpga.v", "read_xdc ternfpga.xdc",
             "synth_design -top ternfpga", "set_false_path", "opt_design", "place_design", "phys_opt_design",
             "route_design", "report_utilization -file ternfpga_utilization.rpt",
             "report_timing_summary -max_paths 10 -file ternfpga_timing.rpt", "write_bitstream -force ternfpga.bit"]
    at = [tcl.find(s) for s in order]
    assert -1 not in at and at == sorted(at), dict(zip(order, at))
    steps = re.findall(r'TERNFPGA-STEP (\w+)', tcl)
    assert steps == ["ip", "synth", "opt", "place", "phys_opt", "route", "reports", "bitstream", "done"]


def instance(verilog: str, module: str, name: str) -> dict[str, str]:
    esc = module if module == PS_MODULE else f"\\{module} "  # Verilog escapes the hierarchical names
    body = re.search(rf"^  {re.escape(esc)} {re.escape(name)} \((.*?)\n  \);", verilog, re.S | re.M)
    assert body, f"no instance {module} {name}"
    return {p: e.strip() for p, e in re.findall(r"\.\\?([\w$]+)\s*\(([^()]*(?:\([^()]*\))?[^()]*)\)", body.group(1))}


def test_top_connects_every_ps_port(out):
    v = (out / "ternfpga.v").read_text()
    top = re.search(r"^module ternfpga\(.*?^endmodule", v, re.S | re.M).group(0)
    ps = instance(top, PS_MODULE, "ps")
    # nets joined by plain `assign a = b;` are one net: name each by its class's smallest member
    parent: dict[str, str] = {}

    def net(e: str) -> str:
        e = e.strip()
        while parent.get(e, e) != e:
            e = parent[e]
        return e

    for a, b in re.findall(r"^  assign ([\w$\\.]+) = ([\w$\\.]+);", top, re.M):
        ra, rb = net(a), net(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    assert set(ps) == {n for n, _, _ in ps_ports(PARAMS.ports)}
    clk = ps["pl_clk0"]
    assert ps["maxihpm0_fpd_aclk"] == clk and all(ps[f"saxihp{i}_fpd_aclk"] == clk for i in range(4))
    accel = instance(top, "ternfpga.accel", "accel")
    assert net(ps["pl_ps_irq0"]) == net(accel["irq"])
    for i in range(PARAMS.ports):
        g = f"saxigp{HP_GP[i]}"
        writes = i == WRITE_PORT  # the other ports only read (rtl/accel.py)
        for sig in ("araddr",) + (("awaddr",) if writes else ()):
            assert ps[f"{g}_{sig}"].endswith(f"hp{i}__{sig} }}"), (g, sig, ps[f"{g}_{sig}"])
        # the accelerator's hpN members name the nets between it and the PS
        for sig in ("arvalid", "arlen", "rready", "arready", "rdata", "rvalid", "rlast", "rresp") + (
                ("awvalid", "wdata", "wstrb", "wlast", "wvalid", "bready", "awready", "wready", "bvalid", "bresp")
                if writes else ()):
            assert net(ps[f"{g}_{sig}"]) == net(f"hp{i}__{sig}"), (g, sig, ps[f"{g}_{sig}"])
        if not writes:
            assert ps[f"{g}_awvalid"] == ps[f"{g}_wvalid"] == "1'h0", g
    bridge = instance(top, "ternfpga.bridge", "bridge")
    for sig in ("awaddr", "awvalid", "awready", "wdata", "wvalid", "wready", "bvalid", "bready", "araddr",
                "arvalid", "arready", "rdata", "rvalid", "rready", "rid", "rlast"):
        assert net(ps[f"maxigp0_{sig}"]) == net(bridge[f"s__{sig}"]), sig
    for sig in ("awvalid", "wvalid", "arvalid", "rready", "bready", "wdata", "wstrb"):
        assert net(bridge[f"m__{sig}"]) == net(f"s_axil__{sig}"), sig


def test_overlay_compiles_and_names_what_the_host_uses(out):
    assert (out / "ternfpga.dtbo").stat().st_size > 0
    dts = subprocess.run([shutil.which("dtc"), "-I", "dtb", "-O", "dts", str(out / "ternfpga.dtbo")],
                         capture_output=True, text=True, check=True).stdout
    assert 'firmware-name = "ternfpga.bit.bin";' in dts
    node = re.search(rf"{shell.UIO_NAME}@([0-9a-f]+) \{{(.*?)\}};", dts, re.S)
    assert node and int(node.group(1), 16) == shell.REG_BASE
    body = node.group(2)
    assert 'compatible = "generic-uio";' in body
    assert re.search(rf"reg = <0x00 {shell.REG_BASE:#x} 0x00 {shell.REG_SIZE:#x}>;", body)
    assert re.search(rf"interrupts = <0x00 {shell.IRQ_SPI:#x} 0x04>;", body)
    ddr = re.search(rf"{shell.UDMABUF_NAME} \{{(.*?)\}};", dts, re.S).group(1)
    assert 'compatible = "ikwzm,u-dma-buf";' in ddr and f'device-name = "{shell.UDMABUF_NAME}";' in ddr
    hi_lo = re.search(r"size = <(0x[0-9a-f]+) (0x[0-9a-f]+)>;", ddr)
    assert (int(hi_lo.group(1), 16) << 32 | int(hi_lo.group(2), 16)) == DDR_MIB << 20
    assert f"assigned-clock-rates = <{int(FREQ * 1e6):#x}>;" in dts
    assert "fpga_full = " in dts and "amba = " in dts and "gic = " in dts  # resolved when the overlay loads


def test_bundle_files(out):
    assert json.loads((out / "shell.json").read_text()) == {"shell_type": "XRT_FLAT", "num_slots": "1"}
    assert re.fullmatch(r"all:\n\{\n\s+ternfpga\.bit\n\}\n", (out / "ternfpga.bif").read_text())
    meta = json.loads((out / shell.PARAMS_FILE).read_text())
    assert meta["params_hash"] == PARAMS.digest() and meta["freq_mhz"] == FREQ
    dep = out / DEPLOY
    assert sorted(p.name for p in dep.iterdir()) == sorted([shell.OVERLAY, "shell.json", shell.PARAMS_FILE])
    assert (dep / shell.OVERLAY).read_bytes() == (out / shell.OVERLAY).read_bytes()
    from ternfpga.host.driver import params_from_json

    assert params_from_json(dep / shell.PARAMS_FILE).digest() == PARAMS.digest()
    assert max_model_ddr_bytes(PARAMS) % (1 << 20) == 0


UTIL = """
+----------------------------+-------+-------+------------+-----------+-------+
|          Site Type         |  Used | Fixed | Prohibited | Available | Util% |
+----------------------------+-------+-------+------------+-----------+-------+
| CLB LUTs                   | 81234 |     0 |          0 |    117120 | 69.36 |
|   LUT as Logic             | 78000 |     0 |          0 |    117120 | 66.60 |
| CLB Registers              | 66012 |     0 |          0 |    234240 | 28.18 |
+----------------------------+-------+-------+------------+-----------+-------+
| Block RAM Tile    |   77.5 |     0 |          0 |       144 | 53.82 |
| URAM              |   19 |     0 |          0 |        64 | 29.69 |
| DSPs           |  342 |     0 |          0 |      1248 | 27.40 |
"""
TIMING = """
    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)
    -------      -------  ---------------------  -------------------      -------      -------
     -0.250      -12.500                    100               200000        0.010        0.000
"""


def test_report_parsers_and_finish(tmp_path):
    assert parse_utilization(UTIL) == {"lut": 81234, "ff": 66012, "bram": 77.5, "uram": 19, "dsp": 342}
    t = parse_timing(TIMING, 250.0)
    assert t == {"wns_ns": -0.25, "tns_ns": -12.5, "fmax_mhz": round(1000 / 4.25, 2)}
    # --finish with a stand-in bootgen output: report.json and the bitstream in the deploy folder
    (tmp_path / "ternfpga_utilization.rpt").write_text(UTIL)
    (tmp_path / "ternfpga_timing.rpt").write_text(TIMING)
    (tmp_path / "ternfpga_pl0.txt").write_text("249.997498\n")
    (tmp_path / shell.BITSTREAM).write_bytes(b"\x00bitstream")
    res = finish(tmp_path, 250.0, lambda s: None)
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep == res.report and rep["lut"] == 81234 and rep["pl0_act_mhz"] == 249.997498
    assert (tmp_path / DEPLOY / shell.BITSTREAM).read_bytes() == b"\x00bitstream"


@pytest.mark.parametrize("argv,words", [
    (["--freq", "200"], ["200 MHz", "--freq 187.498"]),
    (["--ddr-mib", "0"], ["--ddr-mib 0"]),
    (["--finish"], ["no ternfpga.bit"]),
])
def test_cli_errors_are_one_line(capsys, tmp_path, argv, words):
    code = main(["build", "kv260", "-o", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    for w in words:
        assert w in err, err
