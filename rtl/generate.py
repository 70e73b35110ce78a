"""Verilog generation of the matmul engine (``ternfpga rtl engine``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from amaranth.back import verilog

from ternfpga.quant.errors import TernError

from .engine import MatmulEngine
from .params import EngineParams

TOP_NAME = "tern_matmul_engine"


def engine_verilog(params: EngineParams, name: str = TOP_NAME) -> str:
    return verilog.convert(MatmulEngine(params), name=name, emit_src=False)


def write_engine(params: EngineParams, out_dir: str | Path, name: str = TOP_NAME) -> list[Path]:
    """Write ``<name>.v`` and ``<name>.json`` (the parameters) into ``out_dir`` (temp files renamed)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TernError(f"cannot create output folder '{out}' ({e.strerror})", "choose a writable -o folder") from None
    text = engine_verilog(params, name)
    meta = dict(params.to_dict(), top=name, acc_width=params.acc_width, trits_per_lane=params.trits_per_lane,
                layout=params.layout.to_dict())
    written = []
    for path, content in ((out / f"{name}.v", text), (out / f"{name}.json", json.dumps(meta, indent=1) + "\n")):
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        tmp.write_text(content)
        os.replace(tmp, path)
        written.append(path)
    return written
