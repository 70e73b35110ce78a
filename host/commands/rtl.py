"""``ternfpga rtl accel``: generate the whole accelerator's Verilog and its parameters.
``ternfpga rtl engine``: generate the ternary matmul engine's Verilog.
``ternfpga rtl regmap``: show the accelerator's register map, or write it as a C header."""
from __future__ import annotations

import dataclasses
import json

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
    a = blocks.add_parser("accel", help="the whole accelerator (top: AXI4 HP masters, AXI4-Lite registers, irq)",
                          description="Write the accelerator's Verilog (via amaranth.back.verilog) and a parameters "
                                      "JSON (maxima, params hash, numerics and register-map versions). The "
                                      "defaults cover Qwen2.5-0.5B, BitNet b1.58 large and 2B-4T.")
    add_accel_options(a)
    a.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    a.set_defaults(run=run_accel)
    e = blocks.add_parser("engine", help="the ternary matmul engine",
                          description="Write the engine's Verilog (via amaranth.back.verilog) and its parameters.")
    add_engine_options(e)
    e.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    e.set_defaults(run=run_engine)
    r = blocks.add_parser("regmap", help="the host-visible register map (table, JSON or C header)",
                          description="Print the register map of the accelerator generated with these "
                                      "parameters (identification values included), or write it as a C header.")
    add_accel_options(r)
    out = r.add_mutually_exclusive_group()
    out.add_argument("--c-header", metavar="FILE", help="write a C header (offsets, fields, ids, error codes, opcodes)")
    out.add_argument("--json", action="store_true", help="print the map as JSON instead of a table")
    r.set_defaults(run=run_regmap)
    return p


def add_accel_options(p) -> None:
    """The accelerator's generation parameters (AccelParams), one option per field."""
    from ternfpga.rtl.accel_params import AccelParams

    d = AccelParams()
    for f in dataclasses.fields(AccelParams):
        if f.name == "extra":
            continue
        default = getattr(d, f.name)
        opt = "--" + f.name.replace("_", "-")
        if f.name == "dot":
            p.add_argument(opt, choices=DOT_KINDS, default=default, help=f"dot-product implementation (default {default})")
        else:
            p.add_argument(opt, type=int, default=default, metavar="N",
                           help=f"generation parameter {f.name} (default {'from the VMEM plan' if default is None else default})")


def accel_params_from(args):
    from ternfpga.rtl.accel_params import AccelParams

    return AccelParams(**{f.name: getattr(args, f.name) for f in dataclasses.fields(AccelParams) if f.name != "extra"})


def run_engine(args) -> int:
    from ternfpga.rtl.generate import write_engine

    params = params_from(args)
    files = write_engine(params, args.out)
    print(f"wrote {', '.join(str(f) for f in files)}: {params.ports} ports x {params.lanes} lanes x "
          f"{params.trits_per_lane} trits/beat, batch {params.batch}, max_k {params.max_k}, max_n {params.max_n}, "
          f"dot {params.dot}")
    return 0


def run_accel(args) -> int:
    from ternfpga.rtl.generate import write_accel

    params = accel_params_from(args)
    files = write_accel(params, args.out)
    print(f"wrote {', '.join(str(f) for f in files)}: batch {params.batch}, maxima hidden {params.max_hidden}, "
          f"ffn {params.max_ffn}, heads {params.max_heads}/{params.max_kv_heads}, head_dim {params.max_head_dim}, "
          f"ctx {params.max_ctx}, vocab {params.max_vocab}, head_k {params.max_head_k}; params hash "
          f"0x{params.digest():08X}")
    return 0


def run_regmap(args) -> int:
    from ternfpga.rtl.control.regmap import REGMAP, identification

    params = accel_params_from(args)
    ident = identification(params)
    if args.c_header:
        from ternfpga.rtl.control.c_header import write_c_header

        path = write_c_header(args.c_header, params)
        print(f"wrote {path}: {len(REGMAP)} registers, register map v{REGMAP.version}, "
              f"params hash 0x{ident['PARAMS_HASH']:08X}")
        return 0
    if args.json:
        print(json.dumps(dict(REGMAP.to_dict(), params=params.to_dict(), identification=ident), indent=1))
        return 0
    print(f"register map v{REGMAP.version}: 32-bit registers, AXI4-Lite; params hash 0x{ident['PARAMS_HASH']:08X}")
    print(f"{'offset':<8}{'name':<20}{'access':<8}{'value':<12}description")
    for reg in REGMAP:
        value = f"0x{ident[reg.name]:08X}" if reg.const else f"0x{reg.reset:08X}" if reg.access.value == "RW" else ""
        print(f"0x{reg.offset:03X}   {reg.name:<20}{reg.access.value:<8}{value:<12}{reg.doc}")
        for fname, (lsb, width, doc) in reg.fields.items():
            bits = f"[{lsb + width - 1}:{lsb}]" if width > 1 else f"[{lsb}]"
            print(f"{'':<8}  .{fname:<17}{bits:<20}{doc}")
    print("value: the identification constant, or the reset value of an RW register")
    return 0
