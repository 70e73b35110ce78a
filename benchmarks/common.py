"""Shared by the benchmarks: a random checkpoint with the exact Qwen2.5-0.5B dims, and its image."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORK = ROOT / "build" / "bench"


def qwen05b_checkpoint(work: Path) -> Path:
    """Write (once) a random bf16 checkpoint with Qwen2.5-0.5B dims; returns its folder."""
    from ternfpga.quant.synth import qwen25_05b_dims, write_checkpoint

    ckpt = work / "qwen2.5-0.5b-dims"
    if not (ckpt / "config.json").exists():
        t0 = time.perf_counter()
        write_checkpoint(ckpt, qwen25_05b_dims(shards=2), progress=False)
        print(f"# generated {ckpt} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return ckpt


def qwen05b_image(work: Path) -> Path:
    """Quantize (once) the Qwen-dims checkpoint; returns the image path."""
    img = work / "qwen2.5-0.5b-dims.tern"
    if not img.exists():
        ckpt = qwen05b_checkpoint(work)
        subprocess.run([sys.executable, "-m", "ternfpga.host.cli", "quantize", str(ckpt), "-o", str(img),
                        "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    return img


# full-size model shapes the performance benchmarks run (random weights: cycle counts do not depend on them)
FULL_MODELS = {"qwen2.5-0.5b": "qwen25_05b_dims", "bitnet-0.73b": "bitnet_073b_dims", "bitnet-2b": "bitnet_2b_dims"}


def full_model_image(work: Path, model: str, max_ctx: int) -> Path:
    """Write (once) a random checkpoint with ``model``'s exact dims and quantize it (once per max_ctx)."""
    from ternfpga.quant import synth

    if model not in FULL_MODELS:
        raise SystemExit(f"error: unknown model {model!r}; choose one of {', '.join(FULL_MODELS)}")
    ckpt = work / f"{model}-dims"
    if not (ckpt / "config.json").exists():
        t0 = time.perf_counter()
        synth.write_checkpoint(ckpt, getattr(synth, FULL_MODELS[model])(shards=2), progress=False)
        print(f"# generated {ckpt} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    img = work / f"{model}-dims-ctx{max_ctx}.tern"
    if not img.exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ternfpga.host.cli", "quantize", str(ckpt), "-o", str(img),
                        "--max-ctx", str(max_ctx), "--no-progress"], check=True, stdout=subprocess.DEVNULL)
        print(f"# quantized {img} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return img


def emit(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>28}: {v}")
