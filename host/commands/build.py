"""``ternfpga build kv260 -o DIR``: the KV260 bitstream flow, overlay and deploy bundle (boards/kv260_build.py)."""
from __future__ import annotations

from .rtl import accel_params_from, add_accel_options


def register(sub, name: str):
    p = sub.add_parser(name, help="build for a board: sources, Vivado flow, overlay, deploy bundle")
    boards = p.add_subparsers(dest="board", metavar="BOARD", parser_class=type(p))
    boards.required = True
    k = boards.add_parser("kv260", help="the AMD Kria KV260 (XCK26)",
                          description="Write the KV260 top's Verilog and constraints, a non-project Vivado TCL "
                                      "flow, the bootgen .bif, the device-tree overlay (.dtsi and .dtbo), "
                                      "shell.json, the accelerator's parameters and deploy/ternfpga/ (copy it to "
                                      "/lib/firmware/xilinx/ternfpga/ on the board). Runs vivado and bootgen when "
                                      "both are on PATH; otherwise prints what to run.")
    k.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    k.add_argument("--freq", type=float, default=250.0, metavar="MHZ",
                   help="pl_clk0 in MHz, one the PS can divide from its IOPLL (default 250)")
    k.add_argument("--ddr-mib", type=int, default=None, metavar="MIB",
                   help="the u-dma-buf DDR buffer in MiB (default: the largest model the maxima allow)")
    k.add_argument("--no-vivado", action="store_true", help="only generate, even when vivado is on PATH")
    k.add_argument("--finish", action="store_true",
                   help="after running Vivado by hand: bootgen, report.json and the deploy folder")
    add_accel_options(k)
    k.set_defaults(run=run_kv260)
    return p


def run_kv260(args) -> int:
    from pathlib import Path

    from ternfpga.boards.kv260_build import DEPLOY, build_kv260, finish
    from ternfpga.quant.errors import TernError

    if args.freq <= 0 or args.freq > 600:
        raise TernError(f"--freq {args.freq:g} MHz is outside 0..600", "use the default 250, or 300")
    if args.ddr_mib is not None and not 1 <= args.ddr_mib <= 4096:
        raise TernError(f"--ddr-mib {args.ddr_mib} is outside 1..4096 (the KV260 has 4 GiB)",
                        "pass the buffer size in MiB, e.g. --ddr-mib 1024")
    out = Path(args.out)
    if args.finish:
        finish(out, args.freq, print)
        print(f"deploy bundle ready: {out / DEPLOY}/")
        return 0
    res = build_kv260(out, accel_params_from(args), freq_mhz=args.freq, ddr_mib=args.ddr_mib,
                      run_tools=False if args.no_vivado else None)
    if res.ran_vivado:
        print(f"deploy bundle ready: {out / DEPLOY}/ (report.json beside it)")
        return 0
    print("vivado and bootgen are not on PATH (or --no-vivado): the sources are ready; on a machine with Vivado run:")
    for line in res.instructions:
        print(f"  {line}")
    return 0
