"""``ternfpga train``: quantization-aware training of a ternary decoder, from scratch or by distillation."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ternfpga.quant.errors import TernError

DIMS = ("hidden", "ffn", "layers", "heads", "kv_heads", "head_dim", "vocab", "max_position")


def register(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name, help="train a ternary model (fake-quant QAT) from scratch or distil one from a float teacher",
        description="Quantization-aware training with the quantizer's own rules (ternary absmean weights, int8 "
                    "activations, int8 embedding/head rows, straight-through gradients). Writes a resumable "
                    "run folder with a loss log and a Hugging Face checkpoint for `ternfpga quantize`. "
                    "Tip: run with OMP_WAIT_POLICY=PASSIVE on a shared CPU.")
    p.add_argument("--data", nargs="+", required=True, metavar="FILE", help="training text files (UTF-8)")
    p.add_argument("--tokenizer", metavar="TOKENIZER.json",
                   help="tokenizers tokenizer.json (with --teacher: default the teacher's, and it must match)")
    p.add_argument("--val", metavar="FILE", help="held-out text for the validation loss")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="run folder (state, log, model/)")
    m = p.add_argument_group("model")
    m.add_argument("--arch", choices=("qwen2", "llama", "bitnet"), help="train from scratch with this family")
    m.add_argument("--preset", metavar="NAME", help="a named model shape (shakespeare-tern)")
    m.add_argument("--teacher", metavar="DIR", help="distil from this float Hugging Face checkpoint")
    m.add_argument("--from-teacher", action="store_true", help="start the student from the teacher's weights")
    m.add_argument("--float", dest="float_model", action="store_true",
                   help="train a float model (no fake quantization): teachers and baselines")
    for d in DIMS:
        m.add_argument("--" + d.replace("_", "-"), type=int, default=None, metavar="N",
                       help={"vocab": "default: the tokenizer's size",
                             "max_position": "default: --ctx"}.get(d))
    b = p.add_argument_group("budget (one of)").add_mutually_exclusive_group()
    b.add_argument("--steps", type=int, help="optimizer steps")
    b.add_argument("--tokens", type=int, help="training tokens (steps = tokens / (batch x ctx), rounded up)")
    b.add_argument("--minutes", type=float, help="wall-clock minutes (the schedule is planned from the "
                                                 "measured speed of the first steps)")
    t = p.add_argument_group("training")
    t.add_argument("--batch", type=int, default=32, help="sequences per step (default 32)")
    t.add_argument("--ctx", type=int, default=None, help="tokens per sequence (default: the preset's, else 256)")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    t.add_argument("--warmup", type=int, default=None, help="warm-up steps (default min(375, steps/10))")
    t.add_argument("--scale", choices=("tensor", "channel"), default="tensor",
                   help="ternary scale per tensor (default) or per output row, as `ternfpga quantize --scale`")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA (bf16 autocast) when available")
    t.add_argument("--resume", action="store_true", help="continue the run saved in -o (same options)")
    t.add_argument("--save-every", type=int, default=500, metavar="N", help="save the state every N steps")
    t.add_argument("--eval-every", type=int, default=200, metavar="N", help="validation loss every N steps")
    t.add_argument("--val-windows", type=int, default=64, metavar="N", help="validation windows (default 64)")
    t.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop this session after N steps (save; continue later with --resume)")
    d = p.add_argument_group("distillation (with --teacher)")
    d.add_argument("--kl-weight", type=float, default=1.0, help="λ of the KL term (default 1)")
    d.add_argument("--temperature", type=float, default=1.0, help="τ of the KL term (default 1)")
    d.add_argument("--hidden-weight", type=float, default=0.0, help="weight of the last-hidden-state MSE (default 0)")
    p.add_argument("--json", action="store_true", help="print the final report as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    p.set_defaults(run=run)
    return p


def options_from_args(args: argparse.Namespace):
    from dataclasses import replace

    from ternfpga.quant.train.arch import ArchSpec, preset
    from ternfpga.quant.train.options import DEFAULT_CTX, TrainOptions

    dims = {k: getattr(args, k) for k in DIMS if getattr(args, k) is not None}
    ctx = args.ctx
    arch = None
    if args.from_teacher and (dims or args.preset is not None or args.arch is not None):
        raise TernError("--from-teacher copies the teacher's shape: --arch/--preset/dims do not apply",
                        "drop either --from-teacher or the model options")
    if args.preset is not None and args.arch is not None:
        raise TernError("--preset and --arch both name a model", "pass one of them")
    if args.preset is not None:
        arch, defaults = preset(args.preset)
        ctx = ctx if ctx is not None else defaults.get("ctx")
    elif args.arch is not None:
        arch = ArchSpec(family=args.arch)
    elif dims:
        raise TernError(f"--{next(iter(dims)).replace('_', '-')} needs a model family",
                        "pass --arch qwen2|llama|bitnet (or --preset) with the dims")
    if arch is not None:
        arch = replace(arch, **dims)
    if args.teacher is not None and args.preset is None and args.arch is None:
        arch = None  # the teacher's shape
    return TrainOptions(
        data=list(args.data), out=args.output, tokenizer=args.tokenizer, val=args.val, arch=arch,
        teacher=args.teacher, from_teacher=args.from_teacher, quant=not args.float_model, steps=args.steps,
        tokens=args.tokens, minutes=args.minutes, batch=args.batch, ctx=ctx if ctx is not None else DEFAULT_CTX,
        lr=args.lr, warmup=args.warmup, scale=args.scale, seed=args.seed, threads=args.threads,
        device=args.device, resume=args.resume, save_every=args.save_every, eval_every=args.eval_every,
        val_windows=args.val_windows, kl_weight=args.kl_weight, temperature=args.temperature,
        hidden_weight=args.hidden_weight, stop_after=args.stop_after, progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads its OpenMP
    from ternfpga.quant.train.loop import train

    report = train(options_from_args(args))
    if args.json:
        print(json.dumps(report))
        return 0
    val = "n/a" if report["val_loss"] is None else f"{report['val_loss']:.4f}"
    loss = "n/a" if report["loss"] is None else f"{report['loss']:.4f}"
    tps = "n/a" if report["tokens_per_s"] is None else f"{report['tokens_per_s']:.0f}"
    state = "complete" if report["complete"] else f"stopped at step {report['steps']} of {report['total_steps']}"
    print(f"{report['arch']} with {report['parameters']:,} parameters ({'ternary QAT' if report['quant'] else 'float'}): "
          f"{report['steps']} steps, {report['tokens']:,} tokens in {report['seconds']:.1f} s ({tps} tokens/s); "
          f"train loss {loss}, val loss {val}; {state}")
    print(f"checkpoint: {report['model_dir']} (next: ternfpga quantize {report['model_dir']} -o MODEL.tern)")
    return 0
