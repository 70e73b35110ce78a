"""Beat efficiency of the matmul engine on a full Qwen2.5-0.5B matrix, in Verilator with a C++ memory
model (fixed read latency, no bandwidth limit beyond one beat per cycle per port).

    python benchmarks/engine_beat_efficiency.py                      # gate/up: 4864 rows x 896 cols
    python benchmarks/engine_beat_efficiency.py --rows 896 --cols 4864   # down_proj
    python benchmarks/engine_beat_efficiency.py --batch 8 --json

``beat_efficiency = beats consumed / (ports * cycles from start to done)``; every output row is checked
against the golden matvec bit for bit. Target: >= 0.95 at latency 100.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit  # noqa: E402

from ternfpga.rtl.params import EngineParams  # noqa: E402
from ternfpga.sim.verilator.engine_bench import run_engine_pass  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=4864, help="output rows N (default 4864: gate/up_proj)")
    ap.add_argument("--cols", type=int, default=896, help="input columns K (default 896)")
    ap.add_argument("--latency", type=int, default=100, help="fixed AXI read latency in cycles (default 100)")
    ap.add_argument("--batch", type=int, default=1, help="activation vectors per pass (default 1)")
    ap.add_argument("--ports", type=int, default=4, help="AXI read ports (default 4)")
    ap.add_argument("--dot", default="tree", choices=("tree", "lut"))
    ap.add_argument("--ar-stall", type=float, default=0.0, help="probability of arready=0 per cycle")
    ap.add_argument("--out-stall", type=float, default=0.0, help="probability of out.ready=0 per cycle")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="simulation runs; the best speed is reported")
    ap.add_argument("--opt", default="O1", help="C++ optimization of the Verilator model (O1, O2, Os)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    p = EngineParams(ports=args.ports, batch=args.batch, dot=args.dot)
    r = run_engine_pass(p, rows=args.rows, cols=args.cols, latency=args.latency, seed=args.seed,
                        ar_stall=args.ar_stall, out_stall=args.out_stall, repeat=args.repeat, opt=args.opt)
    r.pop("exe", None)
    if not args.json:
        r["matrix"] = f"{args.rows} rows x {args.cols} cols"
        r["target_met"] = r["beat_efficiency"] >= 0.95
    emit(r, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
