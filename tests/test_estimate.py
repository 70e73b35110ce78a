"""The Yosys estimate: the LUT-level analysis on hand-made netlists, and the CLI on a tiny engine."""
from __future__ import annotations

import json

from ternfpga.host.cli import main
from ternfpga.rtl.estimate import count_cells, lut_levels


def _cell(kind, inputs, outputs, ins=("I0", "I1"), out="O"):
    conns, dirs = {}, {}
    for port, bit in zip(ins, inputs):
        conns[port], dirs[port] = [bit], "input"
    conns[out], dirs[out] = [outputs], "output"
    return {"type": kind, "connections": conns, "port_directions": dirs}


def _ff(d, q):
    return {"type": "FDRE", "connections": {"D": [d], "Q": [q], "C": [1]},
            "port_directions": {"D": "input", "Q": "output", "C": "input"}}


def test_lut_levels_counts_luts_between_registers():
    # ff(q=10) -> LUT -> MUXF7 -> LUT -> CARRY4 -> LUT -> ff ; a side path of one LUT
    cells = {
        "ff0": _ff(99, 10),
        "l1": _cell("LUT2", [10, 10], 11),
        "mx": _cell("MUXF7", [11, 11], 12),
        "l2": _cell("LUT3", [12, 10], 13),
        "cy": _cell("CARRY4", [13, 13], 14, ins=("S", "DI")),
        "l3": _cell("LUT1", [14], 15, ins=("I0",)),
        "ff1": _ff(15, 16),
        "side": _cell("LUT1", [16], 17, ins=("I0",)),
        "ff2": _ff(17, 99),
    }
    mod = {"cells": cells, "ports": {}}
    assert lut_levels(mod) == 3
    counts = count_cells(mod)
    assert counts["lut"] == 4 and counts["ff"] == 3 and counts["carry"] == 1


def test_estimate_cli_on_a_tiny_engine(capsys):
    assert main(["estimate", "--ports", "1", "--max-k", "20", "--max-n", "32", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("lut", "ff", "carry", "dsp", "bram36", "uram", "lut_levels", "lut_pct"):
        assert key in r
    assert r["lut"] > 500 and r["ff"] > 200 and r["dsp"] >= 1 and 1 <= r["lut_levels"] <= 8
    assert abs(r["lut_pct"] - 100 * r["lut"] / 117_120) < 1e-9
