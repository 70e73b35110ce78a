"""``ternfpga quantize CKPT_DIR -o MODEL.tern``: turn a Hugging Face checkpoint into a model image."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ternfpga.quant.errors import TernError


def register(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="quantize a Hugging Face checkpoint into a .tern model image",
        description="Ternarize every decoder linear (BitNet b1.58 absmean), int8 the embedding and the exact "
                    "head, and write one self-describing .tern image.")
    p.add_argument("ckpt", metavar="CKPT_DIR", help="folder with config.json, model.safetensors and tokenizer.json")
    p.add_argument("-o", "--output", metavar="MODEL.tern", required=True, help="image to write")
    p.add_argument("--scale", choices=("tensor", "channel"), default="tensor",
                   help="absmean scale per tensor (BitNet b1.58, default) or per output row")
    p.add_argument("--head-k", type=int, default=256, metavar="K",
                   help="candidates the ternary head shortlists for exact int8 rescoring (default 256)")
    p.add_argument("--max-ctx", type=int, default=None, metavar="N",
                   help="longest context (RoPE table length); default min(max_position_embeddings, 2048)")
    p.add_argument("--json", metavar="REPORT.json", default=None, help="also write the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(run=run)
    return p


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON via a temp file in the same folder and a rename: readers never see half a file."""
    if not path.parent.is_dir():
        raise TernError(f"report folder '{path.parent}' does not exist", "create it first or choose another --json path")
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise TernError(f"cannot write '{path}' ({e.strerror})", "check the folder's permissions") from None


def format_report(report: dict) -> str:
    lines = [f"{'layer':>5}  {'linear':<6} {'shape':>13}  {'rel err':>8}  {'zero frac':>9}"]
    for layer in report["layers"]:
        for short, st in layer["linears"].items():
            shape = "x".join(str(d) for d in st["shape"])
            lines.append(f"{layer['layer']:>5}  {short:<6} {shape:>13}  {st['rel_err']:>8.4f}  {st['zero_frac']:>9.4f}")
    h = report["head"]
    shape = "x".join(str(d) for d in h["shape"])
    lines.append(f"{'head':>5}  {'trits':<6} {shape:>13}  {h['rel_err']:>8.4f}  {h['zero_frac']:>9.4f}")
    t = report["totals"]
    lines.append(
        f"{t['ternary_weights']:,} ternary weights at {t['bits_per_weight']:.3f} bits/weight "
        f"({t['payload_bits_per_weight']:.3f} without 4 KiB alignment); image {t['image_bytes'] / 2**20:.1f} MiB "
        f"-> {report['output']} in {t['elapsed_s']:.1f} s")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ternfpga.quant.quantize import QuantizeOptions, quantize_checkpoint

    json_path = Path(args.json) if args.json else None
    if json_path is not None and not json_path.parent.is_dir():  # fail before the long work, not after
        raise TernError(f"report folder '{json_path.parent}' does not exist", "create it first or choose another --json path")
    opts = QuantizeOptions(scale=args.scale, head_k=args.head_k, max_ctx=args.max_ctx, progress=not args.no_progress)
    report = quantize_checkpoint(args.ckpt, args.output, opts)
    print(format_report(report))
    if json_path is not None:
        write_json_atomic(json_path, report)
    return 0
