"""Full-size performance on the virtual KV260 (simulated: pl_clk0 250 MHz, the calibrated DDR model of
sim/kv260/ddr_model.cpp with its default read latency unless --latency).

    python benchmarks/kv260_perf.py --model qwen2.5-0.5b,bitnet-0.73b,bitnet-2b --ctx 128,1024 [--json]
                                    [--plot roofline.png] [--no-ttft] [--latency CYCLES]

Per model (random weights with the model's exact dims; cycle counts do not depend on the weights) and
context: one decode token at position ctx-1 (its attention reads ctx cached positions), and once per
model the time to first token of a 128-token prompt (one call: the sequencer runs it in blocks of B).
Figures: decode tok/s at 250 MHz, TTFT(128), DDR bytes per decode token (read + written, from the DDR
model's port counters), achieved GB/s, % of the roofline (bytes per token over 16.0 GB/s), and the
cycle breakdown by op class from the accelerator's own counters. ``--json``: one object per line with
the keys model, ctx, decode_tok_s, ttft_128_s, bytes_per_token, gb_s, roofline_pct (+ breakdown).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_WORK, FULL_MODELS, full_model_image  # noqa: E402

CLOCK_HZ = 250e6
ROOFLINE_BYTES_S = 16.0e9  # 4 HP ports x 16 B x 250 MHz (the KV260's measured long-stream rate)
TTFT_TOKENS = 128
# published KV260 decode points (DESIGN.md): (label, tok/s, bytes per token if known)
PUBLISHED = [("On-Device Qwen2.5-0.5B AWQ int4", 5.1), ("TeLLMe v2, BitNet 0.73B", 25.0),
             ("bitnet-kv260, 2.4B", 16.78)]


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _shares(c: dict) -> dict:
    """Percent of the call's cycles per op class (memstall overlaps the others)."""
    return {k: round(100 * c[f"cycles_{k}"] / c["cycles_total"], 1)
            for k in ("matmul", "attention", "vector", "head", "memstall")}


def run_model(model: str, ctxs: list[int], *, ttft: bool, latency: int, work: Path, params_json: str | None) -> list[dict]:
    import numpy as np

    from ternfpga.host.driver import Driver, params_from_json
    from ternfpga.quant.image import ModelImage
    from ternfpga.rtl.accel_params import AccelParams
    from ternfpga.sim.kv260.board import SimTransport, VirtualKv260

    params = params_from_json(params_json) if params_json else AccelParams()
    max_ctx = max(max(ctxs), TTFT_TOKENS)
    img_path = full_model_image(work, model, max_ctx)
    image = ModelImage.open(img_path)
    t0 = time.perf_counter()
    from ternfpga.host.program import compile_program

    prog = compile_program(image, params, image_bytes=img_path.stat().st_size)
    board = VirtualKv260(params, prog.layout.total, read_latency=latency)
    print(f"# {model}: board ready in {time.perf_counter() - t0:.0f} s ({'built' if board.built_now else 'cached'}), "
          f"DDR {prog.layout.total / 2**20:.0f} MiB", file=sys.stderr)
    drv = Driver(SimTransport(board), params)
    drv.load(image, img_path, program=prog)
    rng = np.random.default_rng(0)
    vocab = image.config.vocab

    def measured_call(ids, position):
        board.clear_stats()
        c0, _, w0 = board.speed_cpu()
        _, c = drv.call(ids, position)
        c1, _, w1 = board.speed_cpu()
        st = board.port_stats()
        rd, wr = sum(s.read_bytes for s in st), sum(s.write_bytes for s in st)
        return c, rd, wr, (c1 - c0) / max(w1 - w0, 1e-9)

    ttft_s, ttft_share = None, None
    rows = []
    if ttft:
        c, rd, wr, speed = measured_call(rng.integers(0, vocab, TTFT_TOKENS).tolist(), 0)
        ttft_s = c["cycles_total"] / CLOCK_HZ
        ttft_share = _shares(c)
        print(f"# {model}: TTFT({TTFT_TOKENS}) {ttft_s:.3f} s simulated ({c['cycles_total']} cycles, "
              f"{speed / 1e3:.0f}k cycles per CPU second; cycles % {ttft_share})", file=sys.stderr)
    for ctx in ctxs:
        c, rd, wr, speed = measured_call([int(rng.integers(0, vocab))], ctx - 1)
        cyc = c["cycles_total"]
        tok_s = CLOCK_HZ / cyc
        nbytes = rd + wr
        gb_s = nbytes / (cyc / CLOCK_HZ) / 1e9
        roof = ROOFLINE_BYTES_S / nbytes
        share = _shares(c)
        rows.append({"model": model, "ctx": ctx, "decode_tok_s": round(tok_s, 2),
                     "ttft_128_s": None if ttft_s is None else round(ttft_s, 4), "bytes_per_token": nbytes,
                     "gb_s": round(gb_s, 2), "roofline_pct": round(100 * tok_s / roof, 1),
                     "roofline_tok_s": round(roof, 1), "decode_cycles": cyc, "read_bytes": rd, "write_bytes": wr,
                     "ops": c["ops"], "cycle_share_pct": share, "ttft_cycle_share_pct": ttft_share, "sim_cycles_per_cpu_s": round(speed)})
    board.close()
    return rows


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    mb = [r["bytes_per_token"] / 1e6 for r in rows]
    lo, hi = min(mb + [50]) * 0.5, max(mb + [500]) * 2
    xs = [lo * (hi / lo) ** (i / 100) for i in range(101)]
    ax.plot(xs, [ROOFLINE_BYTES_S / (x * 1e6) for x in xs], "k--", label="roofline, 16.0 GB/s")
    for r in rows:
        ax.plot(r["bytes_per_token"] / 1e6, r["decode_tok_s"], "o", label=f"ternfpga {r['model']} ctx {r['ctx']} (simulated)")
    for label, tok_s in PUBLISHED:
        ax.axhline(tok_s, color="grey", lw=0.8, alpha=0.6)
        ax.text(lo * 1.05, tok_s * 1.04, f"{label}: {tok_s} tok/s (board)", fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("DDR bytes per decode token (MB)")
    ax.set_ylabel("decode tokens / s")
    ax.set_title("KV260 decode: virtual KV260 (250 MHz, calibrated DDR model) vs published")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-0.5b", help=f"comma list of {', '.join(FULL_MODELS)}")
    ap.add_argument("--ctx", default="128,1024", help="comma list of decode contexts (default 128,1024)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", metavar="FILE.png")
    ap.add_argument("--no-ttft", action="store_true", help="skip the 128-token prefill")
    ap.add_argument("--latency", type=int, default=0, help="DDR read latency in PL cycles (0: the model's default)")
    ap.add_argument("--params", metavar="PARAMS.json", help="accelerator parameters (default: the defaults)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    a = ap.parse_args()
    try:
        ctxs = [int(c) for c in _csv(a.ctx)]
    except ValueError:
        print(f"error: --ctx {a.ctx!r} is not a comma list of integers; write it like --ctx 128,1024", file=sys.stderr)
        return 2
    rows = []
    for model in _csv(a.model):
        rows += run_model(model, ctxs, ttft=not a.no_ttft, latency=a.latency, work=a.work, params_json=a.params)
    for r in rows:
        if a.json:
            print(json.dumps(r))
        else:
            ttft = "n/a" if r["ttft_128_s"] is None else f"{r['ttft_128_s']:.3f} s"
            print(f"{r['model']:>14} ctx {r['ctx']:>5}: {r['decode_tok_s']:7.2f} tok/s decode, TTFT(128) {ttft}, "
                  f"{r['bytes_per_token'] / 1e6:.1f} MB/token, {r['gb_s']:.2f} GB/s, {r['roofline_pct']:.1f} % of the "
                  f"roofline ({r['roofline_tok_s']} tok/s); cycles % {r['cycle_share_pct']} (simulated, 250 MHz; "
                  f"{r['decode_cycles']} cycles simulated at {r['sim_cycles_per_cpu_s'] / 1e3:.0f}k cycles per CPU second)")
    if a.plot:
        plot(rows, a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
