"""Verilog generation of the matmul engine (``ternfpga rtl engine``) and of the whole accelerator
(``ternfpga rtl accel``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from amaranth.back import verilog

from ternfpga.quant.errors import TernError

from .engine import MatmulEngine
from .params import EngineParams

TOP_NAME = "tern_matmul_engine"
ACCEL_TOP = "tern_accel"


def engine_verilog(params: EngineParams, name: str = TOP_NAME) -> str:
    return verilog.convert(MatmulEngine(params), name=name, emit_src=False)


def write_engine(params: EngineParams, out_dir: str | Path, name: str = TOP_NAME) -> list[Path]:
    """Write ``<name>.v`` and ``<name>.json`` (the parameters) into ``out_dir`` (temp files renamed)."""
    text = engine_verilog(params, name)
    meta = dict(params.to_dict(), top=name, acc_width=params.acc_width, trits_per_lane=params.trits_per_lane,
                layout=params.layout.to_dict())
    return _write(out_dir, name, text, meta)


def accel_verilog(params, name: str = ACCEL_TOP) -> str:
    from .accel import Accelerator

    return verilog.convert(Accelerator(params), name=name, emit_src=False)


def accel_metadata(params, name: str = ACCEL_TOP) -> dict:
    """What a host needs to know about a generated accelerator (the parameters JSON)."""
    from ternfpga.sim.numerics.spec import NUMERICS_VERSION

    from .control.regmap import REGMAP, identification

    eng = params.engine
    return {"top": name, "params": params.to_dict(), "params_hash": params.digest(),
            "numerics_version": NUMERICS_VERSION, "regmap_version": REGMAP.version,
            "identification": identification(params),
            "engine": dict(eng.to_dict(), acc_width=eng.acc_width, layout=eng.layout.to_dict()),
            "ports": {"axi": [f"hp{i}" for i in range(params.ports)], "axi_lite": "s_axil", "irq": "irq"}}


def write_accel(params, out_dir: str | Path, name: str = ACCEL_TOP) -> list[Path]:
    """Write the accelerator's ``<name>.v`` and ``<name>.json`` into ``out_dir`` (temp files renamed)."""
    return _write(out_dir, name, accel_verilog(params, name), accel_metadata(params, name))


def _write(out_dir: str | Path, name: str, text: str, meta: dict) -> list[Path]:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TernError(f"cannot create output folder '{out}' ({e.strerror})", "choose a writable -o folder") from None
    written = []
    for path, content in ((out / f"{name}.v", text), (out / f"{name}.json", json.dumps(meta, indent=1) + "\n")):
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        tmp.write_text(content)
        os.replace(tmp, path)
        written.append(path)
    return written
