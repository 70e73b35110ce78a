"""``make demo``: build a tiny random Qwen2 checkpoint, quantize it, inspect the image, generate.

Every step runs the real toolchain (the same CLI a user types) and says what it did. The model is
random, so the generated text is gibberish by design: it shows the pipeline, not model quality.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .cli import main as cli

PROMPT = "The field programmable gate array"


def step(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ ternfpga {shlex.join(argv)}", flush=True)
    rc = cli(argv)
    if rc:
        sys.exit(rc)


def run(out: Path) -> None:
    ckpt, image = out / "tiny-qwen2", out / "tiny-qwen2.tern"
    print("ternfpga demo: a tiny Qwen2-architecture model with RANDOM weights (a trained demo model comes "
          "later), taken through the whole software path on the `ref` backend (the bit-exact golden model).")
    step("1. build a deterministic random Qwen2 checkpoint in Hugging Face format", ["synth", str(ckpt), "--preset", "demo"])
    step("2. ternarize it into a packed model image", ["quantize", str(ckpt), "-o", str(image), "--no-progress"])
    step("3. inspect the image: config, sections, bits/weight, checksums", ["inspect", str(image)])
    step("4. generate greedily with the golden model (random weights: expect gibberish)",
         ["generate", "--model", str(image), "--backend", "ref", "--prompt", PROMPT, "-n", "24", "--temperature", "0",
          "--ignore-eos"])
    print(f"\nDone. Try: .venv/bin/ternfpga generate --model {image} --prompt 'hello' -n 16 --temperature 0.8 --seed 1\n"
          f"     or:  .venv/bin/ternfpga eval --model {image} --checkpoint {ckpt}")


if __name__ == "__main__":
    run(Path(sys.argv[1] if len(sys.argv) > 1 else "demo"))
