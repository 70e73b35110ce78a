"""The backend options shared by the commands that run a model (``generate``, ``eval``)."""
from __future__ import annotations

from ternfpga.quant.errors import TernError


def _accel_backends() -> list[str]:
    from ..backend import BACKEND_OPTIONS

    return [name for name, opts in BACKEND_OPTIONS.items() if "params" in opts]


def add_accel_arg(p) -> None:
    from ternfpga.boards.kv260_shell import FIRMWARE_DIR, PARAMS_FILE

    p.add_argument("--accel", metavar="PARAMS.json", default=None,
                   help="--backend sim or kv260: the accelerator's parameters JSON (`ternfpga rtl accel -o` writes "
                        "it; default: sim simulates the default accelerator, kv260 reads "
                        f"{FIRMWARE_DIR}/{PARAMS_FILE}, else the bitstream's parameter registers)")


def open_from_args(args, image):
    """The backend ``args`` name, loaded with ``image`` (``--accel`` only for the accelerator backends)."""
    from ..backend import open_backend

    params = None
    if args.accel is not None:
        from ..driver import params_from_json

        users = _accel_backends()
        if args.backend not in users:
            raise TernError(f"--accel does not apply to the {args.backend} backend",
                            f"drop it, or use --backend {' or '.join(users)}")
        params = params_from_json(args.accel)
    return open_backend(args.backend, image, params=params)
