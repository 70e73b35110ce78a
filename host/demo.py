"""``make demo``: the shipped ternary Shakespeare model through the whole toolchain.

Every step runs the real toolchain (the same CLI a user types) and says what it did:

1. quantize ``models/shakespeare-tern`` (trained ternary from the start by ``make demo-model``) into a
   packed image: its per-layer errors are what absmean ternarization of the latent weights costs, and
   the training forward already paid it;
2. inspect the image;
3. evaluate on held-out text (Hamlet, which neither training nor the tokenizer saw): bits per byte of
   the golden integer model, the fake-quant float model and the float model;
4. generate Shakespeare-like text from a prompt with the golden model (``ref``);
5. generate on the virtual KV260 (``sim``): the accelerator's Verilog for an accelerator sized to the
   model, in Verilator on the calibrated DDR model, with the device's cycle counts (the first build
   takes a few minutes; ``--no-sim`` skips it).

The held-out text comes from ``data/shakespeare`` (fetched by ``ternfpga corpus shakespeare`` when
missing) unless ``--text`` names another file.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .cli import main as cli

MODEL = Path("models/shakespeare-tern")
DATA = Path("data/shakespeare")
PROMPT = "KING.\nWhat news, my lord?"
EVAL_TOKENS = 4096
# the demo accelerator: maxima that hold the shipped model (a smaller, faster-to-build bitstream)
ACCEL = ["--max-hidden", "256", "--max-ffn", "768", "--max-heads", "8", "--max-kv-heads", "2", "--max-head-dim", "32",
         "--max-ctx", "256", "--max-vocab", "3072", "--max-layers", "6"]


def step(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ ternfpga {shlex.join(argv)}", flush=True)
    rc = cli(argv)
    if rc:
        sys.exit(rc)


def run(out: Path, model: Path = MODEL, text: Path | None = None, sim: bool = True) -> None:
    image = out / f"{model.name}.tern"
    out.mkdir(parents=True, exist_ok=True)
    print(f"ternfpga demo: {model.name}, a Qwen2-architecture model trained ternary from the start on Shakespeare "
          f"(`make demo-model`), taken through the toolchain: quantize, inspect, held-out evaluation, and "
          f"generation on the golden model{' and on the virtual KV260' if sim else ''}.")
    if text is None:
        text = DATA / "heldout" / "hamlet.txt"
        if not text.is_file():
            step("0. fetch the corpus (held-out Hamlet)", ["corpus", "shakespeare", "-o", str(DATA)])
    step("1. quantize the trained checkpoint into a packed ternary image",
         ["quantize", str(model), "-o", str(image), "--no-progress"])
    step("2. inspect the image: config, sections, bits/weight, checksums", ["inspect", str(image)])
    step(f"3. held-out text ({text.name}, never trained on): bits per byte, golden vs fake-quant vs float",
         ["eval", "--model", str(image), "--checkpoint", str(model), "--text", str(text),
          "--max-tokens", str(EVAL_TOKENS)])
    step("4. generate with the golden model (ref backend)",
         ["generate", "--model", str(image), "--backend", "ref", "--prompt", PROMPT, "-n", "80", "--temperature", "0.8",
          "--top-k", "40", "--seed", "1", "--ignore-eos"])
    if sim:
        step("5a. the accelerator's parameters, sized for this model",
             ["rtl", "accel", *ACCEL, "-o", str(out / "accel")])
        step("5b. generate greedily on the virtual KV260 (sim backend; the first build takes minutes)",
             ["generate", "--model", str(image), "--backend", "sim", "--accel", str(out / "accel" / "tern_accel.json"),
              "--prompt", PROMPT, "-n", "16", "--temperature", "0", "--ignore-eos", "--stats"])
    print(f"\nDone. Try: .venv/bin/ternfpga generate --model {image} --prompt 'ROMEO.' -n 64 --temperature 0.8\n"
          f"     or:  .venv/bin/ternfpga eval --model {image} --checkpoint {model} --text {text}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ternfpga.host.demo", description="the ternfpga demo")
    ap.add_argument("out", nargs="?", default="demo", type=Path, help="work folder (default demo)")
    ap.add_argument("--model", type=Path, default=MODEL, help=f"the trained checkpoint (default {MODEL})")
    ap.add_argument("--text", type=Path, default=None, help="held-out text (default: Hamlet from the corpus)")
    ap.add_argument("--no-sim", action="store_true", help="skip the virtual KV260 step")
    args = ap.parse_args(argv)
    run(args.out, args.model, args.text, sim=not args.no_sim)
    return 0


if __name__ == "__main__":
    sys.exit(main())
