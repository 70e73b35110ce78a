"""``ternfpga rtl engine``: generate the ternary matmul engine's Verilog."""
from __future__ import annotations

from ternfpga.rtl.params import DOT_KINDS, EngineParams


def add_engine_options(p) -> None:
    """Generation parameters shared by ``rtl engine`` and ``estimate``."""
    d = EngineParams()
    p.add_argument("--ports", type=int, default=d.ports, help=f"parallel weight streams / AXI masters (default {d.ports})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"vectors per weight pass, B (default {d.batch})")
    p.add_argument("--max-k", type=int, default=d.max_k, help=f"largest input dim (default {d.max_k})")
    p.add_argument("--max-n", type=int, default=d.max_n, help=f"largest output dim (default {d.max_n})")
    p.add_argument("--lanes", type=int, default=d.lanes, help=f"output rows per beat (default {d.lanes})")
    p.add_argument("--beat-bytes", type=int, default=d.beat_bytes, help=f"AXI data bytes (default {d.beat_bytes})")
    p.add_argument("--dot", choices=DOT_KINDS, default=d.dot, help=f"dot-product implementation (default {d.dot})")


def params_from(args) -> EngineParams:
    return EngineParams(ports=args.ports, batch=args.batch, max_k=args.max_k, max_n=args.max_n, lanes=args.lanes,
                        beat_bytes=args.beat_bytes, dot=args.dot)


def register(sub, name: str):
    p = sub.add_parser(name, help="generate RTL (Verilog) for the accelerator")
    blocks = p.add_subparsers(dest="block", metavar="BLOCK", parser_class=type(p))
    blocks.required = True
    e = blocks.add_parser("engine", help="the ternary matmul engine",
                          description="Write the engine's Verilog (via amaranth.back.verilog) and its parameters.")
    add_engine_options(e)
    e.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    e.set_defaults(run=run_engine)
    return p


def run_engine(args) -> int:
    from ternfpga.rtl.generate import write_engine

    params = params_from(args)
    files = write_engine(params, args.out)
    print(f"wrote {', '.join(str(f) for f in files)}: {params.ports} ports x {params.lanes} lanes x "
          f"{params.trits_per_lane} trits/beat, batch {params.batch}, max_k {params.max_k}, max_n {params.max_n}, "
          f"dot {params.dot}")
    return 0
