"""``ternfpga eval``: fidelity of an image against the checkpoint it came from, or cross-entropy on a text."""
from __future__ import annotations

import json

from ternfpga.quant.errors import TernError

from .backend_args import add_accel_arg, open_from_args


def register(sub, name: str):
    from ..eval_text import DEFAULT_DEVICE_TOKENS

    p = sub.add_parser(name, help="fidelity report (golden vs fake-quant float vs float), or cross-entropy on a text",
                       description="Teacher-forced comparison of the golden (integer) model, the "
                                   "fake-quantized float model and the float model on one token sequence; with "
                                   "--text, bits per byte and perplexity of each over a text file, in consecutive "
                                   "non-overlapping windows of the model's context.")
    p.add_argument("--model", required=True, metavar="MODEL.tern")
    p.add_argument("--checkpoint", required=True, metavar="CKPT_DIR", help="the HF checkpoint the image came from")
    p.add_argument("--tokens", type=int, default=None, help="sequence length (default 64; not with --text)")
    p.add_argument("--backend", default="ref", choices=("ref", "sim", "kv260"),
                   help="where the device path's shortlists come from: ref (golden model, default), sim "
                        "(virtual KV260) or kv260 (the board). With --text the cross-entropy figures always come "
                        "from the golden model's full logits (a device returns only its top-K shortlist); a "
                        "device backend's shortlist top-1 is compared with the golden top-1 on the first "
                        "--device-tokens positions")
    add_accel_arg(p)
    p.add_argument("--text", metavar="FILE", default=None,
                   help="UTF-8 text file: report bits per byte, perplexity and golden/fake-quant top-1 agreement")
    p.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="--text: use only the text's first N tokens (caps the work)")
    p.add_argument("--window", type=int, default=None, metavar="N",
                   help="--text: tokens per window (default: the image's max context)")
    p.add_argument("--device-tokens", type=int, default=DEFAULT_DEVICE_TOKENS, metavar="N",
                   help=f"--text with --backend sim/kv260: positions compared on the device (default "
                        f"{DEFAULT_DEVICE_TOKENS}; the simulator is slow)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(run=run)
    return p


SOURCE_ROWS = 256  # embedding rows compared by check_source
SOURCE_MIN_COS = 0.9  # per-row int8 keeps cos ~0.9999; unrelated weights give ~0


def check_source(image, ckpt) -> None:
    """Refuse a checkpoint the image was not quantized from. Equal configs are not enough (a different
    seed or fine-tune has the same shapes), so compare a sample of the embedding: the image holds it as
    per-row int8 with positive per-row scales, so each int8 row points the way its float row does."""
    import numpy as np

    if image.config != ckpt.config:
        return  # fidelity() names this mismatch
    n = min(image.config.vocab, SOURCE_ROWS)
    q = image.array("embed.int8")[:n].astype(np.float64)
    w = ckpt.rows("model.embed_tokens.weight", 0, n).double().numpy()
    nq, nw = np.linalg.norm(q, axis=1), np.linalg.norm(w, axis=1)
    both_zero = (nq == 0) & (nw == 0)
    den = np.where(nq * nw > 0, nq * nw, 1.0)
    cos = np.where(both_zero, 1.0, (q * w).sum(1) / den)
    if float(cos.mean()) < SOURCE_MIN_COS:
        raise TernError(f"the image was not quantized from '{ckpt.path}' (same model config, but the embedding "
                        f"weights differ: cosine {float(cos.mean()):.3f})",
                        "pass the checkpoint the image was made from")


def _check_text_args(args) -> None:
    if args.text is not None:
        if args.tokens is not None:
            raise TernError("--tokens does not apply with --text", "use --max-tokens to cap the text")
        if args.device_tokens < 0:
            raise TernError(f"--device-tokens {args.device_tokens} is negative", "use 0 or more")
        return
    for flag, value in (("--max-tokens", args.max_tokens), ("--window", args.window)):
        if value is not None:
            raise TernError(f"{flag} applies only with --text", f"add --text FILE or drop {flag}")


def run(args) -> int:
    from ternfpga.quant.checkpoint import Checkpoint
    from ternfpga.quant.image import ModelImage

    from ..evaluate import fidelity

    _check_text_args(args)
    text = None
    if args.text is not None:
        from ..eval_text import read_text

        text = read_text(args.text)  # fail on a bad file before loading anything
    image = ModelImage.open(args.model)
    ckpt = Checkpoint.open(args.checkpoint)
    check_source(image, ckpt)
    backend = open_from_args(args, image)
    if text is not None:
        return _run_text(args, image, ckpt, text, backend)
    rep = fidelity(image, ckpt, 64 if args.tokens is None else args.tokens, backend=backend)
    if args.json:
        print(json.dumps(rep))
        return 0
    print(f"fidelity over {rep['tokens']} teacher-forced tokens ({image.config.architecture}, "
          f"{image.config.layers} layers, hidden {image.config.hidden})")
    print(f"{'pair':<24}{'logits cos mean':>16}{'cos min':>10}{'top-1 agree':>13}")
    for key in ("golden_vs_fakequant", "fakequant_vs_float", "golden_vs_float"):
        r = rep[key]
        print(f"{key:<24}{r['cosine_mean']:>16.5f}{r['cosine_min']:>10.5f}{r['top1_agree']:>13.3f}")
    print(f"device path on {rep['backend']} (ternary top-{rep['head_k']} + int8 rescoring): top-1 = float top-1 "
          f"for {rep['device_top1_vs_float']:.3f} of positions; float top-1 in shortlist "
          f"{rep['float_top1_in_shortlist']:.3f}")
    print(f"{'layer':<8}{'res cos golden/fq':>19}{'res cos fq/float':>18}{'max |res|':>12}")
    for r in rep["layers"]:
        print(f"{str(r['layer']):<8}{r['golden_vs_fakequant']:>19.6f}{r['fakequant_vs_float']:>18.6f}{r['golden_max_abs']:>12.2f}")
    print(f"residual range headroom: {rep['residual_saturation_headroom']:.1f}x below the FX limit 32768")
    return 0


def _run_text(args, image, ckpt, text: str, backend) -> int:
    from ..eval_text import evaluate_text

    rep = evaluate_text(image, ckpt, text, max_tokens=args.max_tokens, window=args.window,
                        backend=backend, device_tokens=args.device_tokens)
    if args.json:
        print(json.dumps(rep))
        return 0
    print(f"'{args.text}': {rep['tokens']} predicted tokens, {rep['bytes']} bytes ({rep['tokens_used']} of "
          f"{rep['text_tokens']} tokens in {rep['windows']} windows of up to {rep['window']})")
    print(f"{'model':<12}{'bits/byte':>11}{'perplexity':>12}{'top-1 acc':>11}")
    for key in ("golden", "fake_quant", "float"):
        print(f"{key:<12}{rep['bits_per_byte'][key]:>11.4f}{rep['perplexity'][key]:>12.3f}"
              f"{rep['top1_accuracy'][key]:>11.3f}")
    print(f"top-1 agreement golden vs fake-quant: {rep['top1_agreement']:.4f}")
    dev = rep.get("device")
    if dev and dev["positions"]:
        print(f"device {dev['backend']}: shortlist top-1 = golden top-1 on {dev['top1_vs_golden']:.3f} of the first "
              f"{dev['positions']} positions (= golden shortlist top-1 on {dev['top1_vs_golden_shortlist']:.3f})")
    return 0
