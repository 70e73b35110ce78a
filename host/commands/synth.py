"""``ternfpga synth``: write a small random Hugging Face checkpoint (demo, tests, benchmarks)."""
from __future__ import annotations

from pathlib import Path

from ternfpga.quant.errors import TernError

PRESETS = {
    "demo": ("tiny_qwen2", dict(hidden=128, ffn=352, layers=4, heads=4, kv_heads=2, head_dim=32, vocab=512,
                                outlier_channels=2, seed=2026)),
    "tiny-qwen2": ("tiny_qwen2", {}),
    "tiny-llama": ("tiny_llama", {}),
    "tiny-bitnet": ("tiny_bitnet", {}),
    "qwen2.5-0.5b-dims": ("qwen25_05b_dims", dict(shards=2)),
}


def spec_for(preset: str, seed: int | None = None, dtype: str | None = None):
    from ternfpga.quant import synth

    if preset not in PRESETS:
        raise TernError(f"unknown preset {preset!r}", f"choose one of {', '.join(PRESETS)}")
    maker, kw = PRESETS[preset]
    kw = dict(kw)
    if seed is not None:
        kw["seed"] = seed
    if dtype is not None:
        kw["dtype"] = dtype
    return getattr(synth, maker)(**kw)


def register(sub, name: str):
    p = sub.add_parser(name, help="write a random HF-format checkpoint (the weights are random, not trained)",
                       description="Write a deterministic random checkpoint in Hugging Face format "
                                   "(config.json, safetensors, a real BPE tokenizer.json).")
    p.add_argument("out", metavar="OUT_DIR")
    p.add_argument("--preset", default="demo", help=f"one of {', '.join(PRESETS)} (default demo)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default=None)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ternfpga.quant.synth import write_checkpoint

    spec = spec_for(args.preset, args.seed, args.dtype)
    for parent in Path(args.out).parents:
        if parent.exists() and not parent.is_dir():
            raise TernError(f"'{parent}' is a file, so '{args.out}' cannot be created", "choose another OUT_DIR")
    try:
        write_checkpoint(args.out, spec, progress=True)  # via a temp folder, removed on failure
    except OSError as e:
        where = f"'{e.filename}'" if e.filename else f"'{args.out}'"
        raise TernError(f"cannot write the checkpoint: {where}: {e.strerror or e.__class__.__name__}",
                        "choose an OUT_DIR in a writable folder") from None
    print(f"wrote a random {spec.family} checkpoint to {args.out}: hidden {spec.hidden}, ffn {spec.ffn}, "
          f"{spec.layers} layers, {spec.heads}/{spec.kv_heads} heads, vocab {spec.vocab}, {spec.dtype}, seed {spec.seed}")
    return 0
