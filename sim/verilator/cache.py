"""Generated Verilog cached on disk: converting a large design takes many seconds, and the harness builds
key on the text anyway. The key is the top's name, its parameters and a hash of every RTL source plus the
Amaranth version, so any RTL edit makes a new entry."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def rtl_digest() -> str:
    """Hash of the RTL sources and the Amaranth version."""
    import amaranth

    h = hashlib.sha256(amaranth.__version__.encode())
    rtl = REPO_ROOT / "rtl"
    for f in sorted(rtl.rglob("*.py")):
        h.update(str(f.relative_to(rtl)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def verilog_cached(top: str, params: dict, make: Callable[[], str], root: Path) -> str:
    """``make()``'s Verilog, kept under ``root/verilog/<top>-<key>.v`` (written to a temp file, renamed)."""
    key = hashlib.sha256((json.dumps(params, sort_keys=True) + rtl_digest()).encode()).hexdigest()[:16]
    path = Path(root) / "verilog" / f"{top}-{key}.v"
    if path.is_file():
        return path.read_text()
    text = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return text
