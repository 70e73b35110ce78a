"""The backend options shared by the commands that run a model (``generate``, ``eval``)."""
from __future__ import annotations

from ternfpga.quant.errors import TernError


def add_accel_arg(p) -> None:
    p.add_argument("--accel", metavar="PARAMS.json", default=None,
                   help="--backend sim: the accelerator's parameters JSON (`ternfpga rtl accel -o` writes it; "
                        "default: the default accelerator)")


def open_from_args(args, image):
    """The backend ``args`` name, loaded with ``image`` (``--accel`` only for sim)."""
    from ..backend import open_backend

    params = None
    if args.accel is not None:
        from ..driver import params_from_json

        if args.backend != "sim":
            raise TernError(f"--accel does not apply to the {args.backend} backend", "drop it, or use --backend sim")
        params = params_from_json(args.accel)
    return open_backend(args.backend, image, params=params)
