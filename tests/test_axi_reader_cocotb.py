"""AxiReader as Verilog under Verilator, against cocotbext-axi's AXI RAM (sim/cocotb/tb_axi_reader.py)."""
from __future__ import annotations

import shutil

import pytest

from ternfpga.rtl.axi import AxiReader
from ternfpga.sim.cocotb.build import run_cocotb

pytest.importorskip("cocotbext.axi")
pytestmark = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None,
                                reason="Verilator models need g++ and make")


def test_axi_reader_verilator():
    params = {"max_burst": 64, "fifo_depth": 256, "max_outstanding": 4}  # smaller than the defaults:
    # more bursts per region and credit stalls; 100-cycle latency still fits (256 - 64 > 100)
    run_cocotb(AxiReader(**params), name="axi_reader", test_module="ternfpga.sim.cocotb.tb_axi_reader",
               extra_env={"READER_MAX_BURST": str(params["max_burst"]),
                          "READER_FIFO_DEPTH": str(params["fifo_depth"]),
                          "READER_MAX_OUTSTANDING": str(params["max_outstanding"])})
