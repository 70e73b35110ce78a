"""``ternfpga eval``: fidelity of an image against the checkpoint it came from."""
from __future__ import annotations

import json

from ternfpga.quant.errors import TernError

from .backend_args import add_accel_arg, open_from_args


def register(sub, name: str):
    p = sub.add_parser(name, help="fidelity report: golden vs fake-quant float vs float",
                       description="Teacher-forced comparison of the golden (integer) model, the "
                                   "fake-quantized float model and the float model on one token sequence.")
    p.add_argument("--model", required=True, metavar="MODEL.tern")
    p.add_argument("--checkpoint", required=True, metavar="CKPT_DIR", help="the HF checkpoint the image came from")
    p.add_argument("--tokens", type=int, default=64, help="sequence length (default 64)")
    p.add_argument("--backend", default="ref", choices=("ref", "sim"),
                   help="where the device path's shortlists come from: ref (golden model, default) or sim "
                        "(virtual KV260)")
    add_accel_arg(p)
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


def run(args) -> int:
    from ternfpga.quant.checkpoint import Checkpoint
    from ternfpga.quant.image import ModelImage

    from ..evaluate import fidelity

    image = ModelImage.open(args.model)
    ckpt = Checkpoint.open(args.checkpoint)
    check_source(image, ckpt)
    backend = open_from_args(args, image)
    rep = fidelity(image, ckpt, args.tokens, backend=backend)
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
