"""The whole accelerator under cocotb on Verilator (sim/cocotb/tb_accel.py): cocotbext-axi RAM models on
the four HP ports (random latency and stalls) holding the image, the program and the KV cache, the
registers through AxiLiteMaster. For the demo, tiny-qwen2, tiny-llama and tiny-bitnet presets: a
6-token prefill (two blocks of B = 4, the second one partial; 16 tokens for tiny-qwen2) and three
decodes, the shortlist and every traced intermediate equal to the golden model's bit for bit. Faults
(read error, write error, abort mid-pass, bad opcode, program past its size, bad token) end the call with
the right status, and a clean call follows.

One Verilator build of one accelerator (small maxima that hold every preset) serves every case: the
module fixture runs them all in one cocotb run; the tests check their own case's entry.
"""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from ternfpga.sim.presets import PRESETS, preset_image
from ternfpga.sim.cocotb.tb_accel import counters_line, run_cases, tiny_params

pytest.importorskip("cocotbext.axi")
pytestmark = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None,
                                reason="Verilator models need g++ and make")

PARAMS = tiny_params()
FAULTS = {
    "read_error": {"kind": "read_error", "tensor": "layers.1.gate.trits", "at": 4096 + 32, "code": "AXI_READ"},
    "write_error": {"kind": "write_error", "layer": 0, "code": "AXI_WRITE"},
    "abort": {"kind": "abort", "after": 3000, "code": "ABORTED"},
    "bad_opcode": {"kind": "bad_opcode", "desc": 7, "code": "BAD_OPCODE"},
    "bounds": {"kind": "bounds", "code": "PROGRAM_BOUNDS"},
    "bad_token": {"kind": "bad_token", "index": 2, "code": "BAD_TOKEN"},
}


def calls_for(vocab: int, seed: int, prefill: int = 6) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, prefill).tolist()] + [[int(rng.integers(0, vocab))] for _ in range(3)]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from ternfpga.host.program import traceable
    from ternfpga.quant.image import ModelImage

    root = tmp_path_factory.mktemp("accel")
    cases = []
    for i, preset in enumerate(PRESETS):
        img = preset_image(root, preset)
        cfg = ModelImage.open(img).config
        # tiny-qwen2 prefills 16 tokens (four full blocks): the figure the docs report
        prefill = 16 if preset == "tiny-qwen2" else 6
        cases.append({"name": preset, "image": str(img), "calls": calls_for(cfg.vocab, i, prefill), "seed": i,
                      "trace": traceable(cfg.layers), "latency": [1, 40], "pause": 0.1})
    img = preset_image(root, "tiny-qwen2", head_k=32)  # a short shortlist: these cases are about faults
    for j, (name, fault) in enumerate(FAULTS.items()):
        calls = [[5, 9, 11, 300, 2, 7], [17, 4]]
        if name == "bad_token":
            calls[0] = [5, 9, 900, 3]
        cases.append({"name": f"fault_{name}", "image": str(img), "calls": calls, "seed": 100 + j,
                      "fault": fault, "latency": [1, 20], "pause": 0.05})
    t0 = time.perf_counter()
    done, failure = run_cases(PARAMS, cases, root / "run")
    print(f"\naccelerator: cocotb run (Verilog, build, simulation) {time.perf_counter() - t0:.0f} s")
    for r in done.values():
        for c in r["calls"]:
            if "cycles_total" in c:
                print(f"  {r['name']}: {c.get('tokens', '?')} tokens at {c.get('position', 0)}: {counters_line(c)}, "
                      f"{c['wall_s']} s")
    for c in cases:
        done.setdefault(c["name"], {"name": c["name"], "ok": False, "message": failure or "not run"})
    return done


def check(results, name):
    r = results[name]
    assert r["ok"], f"{name}: {r.get('message')}"
    return r


@pytest.mark.parametrize("preset", PRESETS)
def test_prefill_and_decode_match_golden(results, preset):
    r = check(results, preset)
    assert len(r["calls"]) == 4


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_reports_and_recovers(results, fault):
    r = check(results, f"fault_{fault}")
    assert r["calls"][0]["error"] and len(r["calls"]) == 2
