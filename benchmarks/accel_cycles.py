"""Cycles per op class of the whole accelerator on a synth preset, from its counters (simulated:
cocotb on Verilator, cocotbext-axi RAM models on the four HP ports with a fixed read latency and no
stalls), for one prefill and the decodes after it. Every call's shortlist is checked against the golden
model bit for bit.

    python benchmarks/accel_cycles.py                          # tiny-qwen2: 16-token prefill, 1 decode
    python benchmarks/accel_cycles.py --preset demo --prefill 8 --decode 2 --latency 100 --json

The figures are cycles (clock-independent); at 250 MHz a cycle is 4 ns. The accelerator is the tests'
small one (tb_accel.tiny_params: B = 4, maxima that hold every preset).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_WORK, emit  # noqa: E402


def main(argv=None) -> int:
    from ternfpga.sim.presets import PRESETS, preset_image

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny-qwen2", choices=PRESETS)
    ap.add_argument("--prefill", type=int, default=16, help="prompt tokens (default 16: four blocks of B = 4)")
    ap.add_argument("--decode", type=int, default=1, help="decode calls after the prefill (default 1)")
    ap.add_argument("--latency", type=int, default=40, help="fixed AXI read latency in cycles (default 40)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK / "accel", help="work folder")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    import numpy as np

    from ternfpga.quant.image import ModelImage
    from ternfpga.sim.cocotb.tb_accel import run_cases, tiny_params

    params = tiny_params()
    if args.prefill + args.decode > params.max_ctx:
        ap.error(f"--prefill + --decode must be at most {params.max_ctx} (the accelerator's max_ctx)")
    img = preset_image(args.work, args.preset)
    vocab = ModelImage.open(img).config.vocab
    rng = np.random.default_rng(0)
    calls = [rng.integers(0, vocab, args.prefill).tolist()] + [[int(rng.integers(0, vocab))]
                                                               for _ in range(args.decode)]
    case = {"name": args.preset, "image": str(img), "calls": calls, "seed": 0, "trace": [],
            "latency": [args.latency, args.latency], "pause": 0.0}
    done, failure = run_cases(params, [case], args.work / "run")
    r = done.get(args.preset)
    if not r or not r["ok"]:
        print(f"error: the run failed: {(r or {}).get('message') or failure}", file=sys.stderr)
        return 1
    out = {"preset": args.preset, "batch": params.batch, "read_latency_cycles": args.latency, "calls": []}
    for c in r["calls"]:
        out["calls"].append({k: c[k] for k in ("tokens", "position", "cycles_total", "cycles_matmul",
                                                "cycles_attention", "cycles_vector", "cycles_head",
                                                "cycles_memstall", "ops")})
    if args.json:
        emit(out, True)
        return 0
    print(f"{args.preset} on the accelerator (simulated; B = {params.batch}; read latency {args.latency} cycles, "
          f"no stalls; shortlists checked against the golden model)")
    print(f"{'call':<18}{'total':>9}{'matmul':>9}{'attention':>11}{'vector':>9}{'head':>9}{'memstall':>10}"
          f"{'ops':>6}")
    for c in out["calls"]:
        what = f"{c['tokens']} tok at {c['position']}"
        print(f"{what:<18}{c['cycles_total']:>9}{c['cycles_matmul']:>9}{c['cycles_attention']:>11}"
              f"{c['cycles_vector']:>9}{c['cycles_head']:>9}{c['cycles_memstall']:>10}{c['ops']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
