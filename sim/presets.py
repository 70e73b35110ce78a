"""Quantized images of the synth presets that the accelerator tests and benchmarks run (written once,
then reused)."""
from __future__ import annotations

from pathlib import Path

from ternfpga.host.commands.synth import spec_for
from ternfpga.quant.quantize import QuantizeOptions, quantize_checkpoint
from ternfpga.quant.synth import write_checkpoint

PRESETS = ("demo", "tiny-qwen2", "tiny-llama", "tiny-bitnet")


def preset_image(root: Path, preset: str, *, max_ctx: int = 64, head_k: int | None = None) -> Path:
    """``root/<preset>.tern`` (made on first use): the preset's random checkpoint, quantized."""
    img = Path(root) / f"{preset}-{max_ctx}-{head_k}.tern"
    if not img.is_file():
        ckpt = write_checkpoint(Path(root) / f"{preset}-ckpt", spec_for(preset))
        opts = QuantizeOptions(max_ctx=max_ctx, progress=False, **({"head_k": head_k} if head_k else {}))
        quantize_checkpoint(ckpt, img, opts)
    return img
