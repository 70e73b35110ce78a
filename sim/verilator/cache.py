"""Generated Verilog cached on disk: converting a large design takes many seconds, and the harness builds
key on the text anyway. The key is the top's name, its parameters and a hash of every RTL source plus the
Amaranth version, so any RTL edit makes a new entry."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
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


def cached_build(build_dir: Path, product: Path, cmd: list[str], *,
                 fail: Callable[[subprocess.CompletedProcess, Path], Exception],
                 prepare: Callable[[], None] | None = None, finish: Callable[[], None] | None = None,
                 env: dict | None = None) -> bool:
    """Run the compiler command ``cmd`` in ``build_dir`` unless a finished build of ``product`` is there
    (a ``.built`` stamp, touched only after a successful build). Holds the folder's lock, so two processes
    never interleave a build; ``prepare`` runs under it first (e.g. writing the Verilog), ``finish`` after a
    successful command and before the stamp (e.g. an analysis of the build's output). The command line
    and its output go to ``build.log``; a failure raises ``fail(result, log)``. True when it built now."""
    from ternfpga.sim.cocotb.build import build_lock

    build_dir.mkdir(parents=True, exist_ok=True)
    stamp = build_dir / ".built"
    with build_lock(build_dir):
        if stamp.is_file() and product.is_file():
            return False
        if prepare is not None:
            prepare()
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=build_dir, capture_output=True, text=True, env=env)
        log = build_dir / "build.log"
        log.write_text(" ".join(cmd) + "\n" + res.stdout + res.stderr + f"\n{time.perf_counter() - t0:.0f} s\n")
        if res.returncode != 0 or not product.is_file():
            raise fail(res, log)
        if finish is not None:
            finish()
        stamp.touch()
    return True
