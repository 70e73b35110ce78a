"""Benchmark: quantize a checkpoint with the exact Qwen2.5-0.5B dims (random bf16 weights).

Targets: <= 60 s wall and <= 3 GB peak RSS on 2 cores. The quantizer runs as its own process so its
peak RSS (ru_maxrss of the child) is measured alone.

    python benchmarks/quantize_qwen05b.py [--work DIR] [--json]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import DEFAULT_WORK, emit, qwen05b_checkpoint


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    ckpt = qwen05b_checkpoint(args.work)
    out = args.work / "bench-quantize.tern"
    report = args.work / "bench-quantize.json"
    cmd = [sys.executable, "-m", "ternfpga.host.cli", "quantize", str(ckpt), "-o", str(out), "--no-progress",
           "--json", str(report)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    import json
    rep = json.loads(report.read_text())
    emit({
        "benchmark": "quantize Qwen2.5-0.5B dims (random bf16)",
        "wall_s": round(wall, 2),
        "peak_rss_gb": round(peak_kib * 1024 / 1e9, 3),
        "cores": os.cpu_count(),
        "ternary_weights": rep["totals"]["ternary_weights"],
        "bits_per_weight": round(rep["totals"]["bits_per_weight"], 4),
        "image_mb": round(out.stat().st_size / 1e6, 1),
        "target_wall_s": 60, "target_peak_rss_gb": 3.0,
    }, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
