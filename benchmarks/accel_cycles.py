"""Cycles per op class of the whole accelerator on a synth preset, from its counters (simulated: the
virtual KV260, sim/kv260, at 250 MHz with the calibrated DDR model), for one prefill and the decodes after
it. Every call's shortlist is checked against the golden model (the ref backend) bit for bit.

    python benchmarks/accel_cycles.py                          # tiny-qwen2: 16-token prefill, 1 decode
    python benchmarks/accel_cycles.py --preset demo --prefill 8 --decode 2 --latency 100 --json

The figures are cycles; at 250 MHz a cycle is 4 ns. The accelerator is the tests' small one
(tb_accel.tiny_params: B = 4, maxima that hold every preset).
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
    ap.add_argument("--latency", type=int, default=0,
                    help="DDR model read latency in PL cycles (default 0: the model's calibrated default)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK / "accel", help="work folder")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    import numpy as np

    from ternfpga.host.ref import RefBackend
    from ternfpga.host.sim import SimBackend
    from ternfpga.quant.image import ModelImage
    from ternfpga.sim.cocotb.tb_accel import tiny_params

    params = tiny_params()
    if args.prefill + args.decode > params.max_ctx:
        ap.error(f"--prefill + --decode must be at most {params.max_ctx} (the accelerator's max_ctx)")
    image = ModelImage.open(preset_image(args.work, args.preset))
    vocab = image.config.vocab
    rng = np.random.default_rng(0)
    calls = [rng.integers(0, vocab, args.prefill).tolist()] + [[int(rng.integers(0, vocab))]
                                                               for _ in range(args.decode)]
    sim, ref = SimBackend(params, read_latency=args.latency), RefBackend()
    sim.load(image)
    ref.load(image)
    out = {"preset": args.preset, "batch": params.batch, "read_latency_cycles": args.latency or "default",
           "calls": []}
    for i, ids in enumerate(calls):
        got = sim.prefill(ids) if i == 0 else sim.decode(ids[0])
        want = ref.prefill(ids) if i == 0 else ref.decode(ids[0])
        if not (np.array_equal(got.ids, want.ids) and np.array_equal(got.logits_fx, want.logits_fx)):
            print(f"error: call {i} ({len(ids)} tokens) differs from the golden model", file=sys.stderr)
            return 1
        c = sim.last_call
        out["calls"].append({"tokens": c["tokens"], "position": c["position"],
                             **{k: c[k] for k in ("cycles_total", "cycles_matmul", "cycles_attention",
                                                  "cycles_vector", "cycles_head", "cycles_memstall", "ops",
                                                  "ddr_read_bytes", "ddr_write_bytes")}})
    cycles, _, cpu = sim.board.speed_cpu()
    out["sim_cycles_per_cpu_s"] = round(cycles / cpu) if cpu else None
    sim.close()
    if args.json:
        emit(out, True)
        return 0
    print(f"{args.preset} on the virtual KV260 (simulated, 250 MHz, calibrated DDR model, read latency "
          f"{out['read_latency_cycles']}; B = {params.batch}; shortlists checked against the golden model)")
    print(f"{'call':<18}{'total':>9}{'matmul':>9}{'attention':>11}{'vector':>9}{'head':>9}{'memstall':>10}"
          f"{'ops':>6}{'DDR rd B':>10}{'wr B':>8}")
    for c in out["calls"]:
        what = f"{c['tokens']} tok at {c['position']}"
        print(f"{what:<18}{c['cycles_total']:>9}{c['cycles_matmul']:>9}{c['cycles_attention']:>11}"
              f"{c['cycles_vector']:>9}{c['cycles_head']:>9}{c['cycles_memstall']:>10}{c['ops']:>6}"
              f"{c['ddr_read_bytes']:>10}{c['ddr_write_bytes']:>8}")
    print(f"simulation speed: {out['sim_cycles_per_cpu_s']} cycles per CPU second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
