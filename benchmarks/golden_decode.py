"""Benchmark: golden-model (ref backend) decode at Qwen2.5-0.5B dims, context 128.

Prefills 120 tokens, then decodes 8 so the context ends at 128; reports seconds per decoded token.
Target: <= 0.5 s/token.

    python benchmarks/golden_decode.py [--work DIR] [--json]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import DEFAULT_WORK, emit, qwen05b_image


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--prefill", type=int, default=120)
    ap.add_argument("--decode", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    img_path = qwen05b_image(args.work)

    from ternfpga.quant.image import ModelImage
    from ternfpga.sim.golden import GoldenModel

    t0 = time.perf_counter()
    model = GoldenModel(ModelImage.open(img_path))
    load_s = time.perf_counter() - t0
    cache = model.new_cache()
    ids = [(i * 7919) % model.config.vocab for i in range(args.prefill)]
    t0 = time.perf_counter()
    cand = model.forward(ids, cache).candidates
    prefill_s = time.perf_counter() - t0
    times = []
    for _ in range(args.decode):
        t0 = time.perf_counter()
        cand = model.forward([int(cand.ids[0])], cache).candidates
        times.append(time.perf_counter() - t0)
    emit({
        "benchmark": "golden decode, Qwen2.5-0.5B dims",
        "context": cache.length,
        "load_s": round(load_s, 2),
        "prefill_tokens": args.prefill,
        "prefill_s": round(prefill_s, 3),
        "decode_s_per_token": round(sum(times) / len(times), 4),
        "decode_s_per_token_max": round(max(times), 4),
        "target_s_per_token": 0.5,
    }, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
