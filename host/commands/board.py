"""``ternfpga board load | unload | status``: put the accelerator's bitstream and overlay on the KV260, take it
off, and report what the host sees (firmware folder, FPGA manager, UIO device, u-dma-buf, identification).

Loading uses Kria Ubuntu's ``xmutil`` (dfx-mgr) when it is on PATH, else ``fpgautil``; both need root. The
files are the ones ``ternfpga build kv260`` puts in its deploy bundle (boards/kv260_shell.py names them).
``--root DIR`` treats DIR as ``/`` (a stand-in of /sys, /dev and the firmware folder, for testing).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from ternfpga.boards.kv260_shell import APP, BITSTREAM, FIRMWARE_DIR, OVERLAY, PARAMS_FILE, UIO_NAME
from ternfpga.quant.errors import TernError

SHELL_JSON = "shell.json"
UIO_WAIT_S = 2.0  # after loading: how long the UIO device may take to appear
TOOL_TIMEOUT_S = 120
TOOL_FIX = "run it as root (sudo), and check `dmesg` and the firmware folder's files"
NO_TOOL_FIX = ("run on the KV260's Kria Ubuntu, which ships xmutil (xlnx-dfx-mgr) and fpgautil "
               "(fpga-manager-xlnx)")


def register(sub, name: str):
    p = sub.add_parser(name, help="load, unload or inspect the accelerator's bitstream on the KV260",
                       description="Load the ternfpga bitstream and device-tree overlay from "
                                   f"{FIRMWARE_DIR} (xmutil, else fpgautil), unload it, or report the "
                                   "firmware, FPGA manager, UIO device, DDR buffer and the accelerator's "
                                   "identification registers.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    load = actions.add_parser("load", help=f"load {BITSTREAM} and {OVERLAY} (xmutil loadapp {APP}, else fpgautil)")
    unload = actions.add_parser("unload", help="remove the loaded overlay (xmutil unloadapp, else fpgautil -R)")
    status = actions.add_parser("status", help="what is loaded and whether the accelerator answers")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    for q, run in ((load, run_load), (unload, run_unload), (status, run_status)):
        q.add_argument("--root", metavar="DIR", default="/", help=argparse.SUPPRESS)  # a stand-in of / (tests)
        q.set_defaults(run=run)
    return p


# -- the tools ------------------------------------------------------------------------------------
def _tool() -> tuple[str, str]:
    """("xmutil" | "fpgautil", its path)."""
    for name in ("xmutil", "fpgautil"):
        path = shutil.which(name)
        if path:
            return name, path
    raise TernError("neither xmutil nor fpgautil is on PATH", NO_TOOL_FIX)


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    shown = " ".join([Path(argv[0]).name, *argv[1:]])
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise TernError(f"`{shown}` did not finish within {TOOL_TIMEOUT_S} s", TOOL_FIX) from None
    except OSError as e:
        raise TernError(f"`{shown}` could not run ({e.strerror or e})", TOOL_FIX) from None
    if check and r.returncode != 0:
        said = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()] \
            or [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
        last = said[-1] if said else "no output"
        raise TernError(f"`{shown}` failed with exit code {r.returncode}: {last}", TOOL_FIX)
    return r


def _unload(tool: str, path: str, *, check: bool) -> None:
    _run([path, "unloadapp"] if tool == "xmutil" else [path, "-R"], check=check)


# -- load / unload --------------------------------------------------------------------------------
def missing_firmware(fw: Path) -> list[str]:
    """The files xmutil needs that the firmware folder lacks."""
    return [f for f in (BITSTREAM, OVERLAY, SHELL_JSON) if not (fw / f).is_file()]


def run_load(args) -> int:
    from ..kv260_sysfs import find_uio, firmware_dir, list_uio

    root = Path(args.root)
    fw = firmware_dir(root)
    missing = missing_firmware(fw)
    if missing:
        raise TernError(f"the firmware folder {fw} lacks {', '.join(missing)}",
                        f"copy deploy/{APP}/ from `ternfpga build kv260 -o DIR` to {FIRMWARE_DIR}")
    tool, path = _tool()
    _unload(tool, path, check=False)  # nothing loaded is fine; a stale overlay must go first
    if tool == "xmutil":
        _run([path, "loadapp", APP])
    else:
        _run([path, "-b", str(fw / BITSTREAM), "-o", str(fw / OVERLAY)])
    deadline = time.monotonic() + UIO_WAIT_S
    while True:
        try:
            uio = find_uio(root, UIO_NAME)
            break
        except TernError:
            if time.monotonic() >= deadline:
                seen = ", ".join(f"{n} ({node})" for node, n in list_uio(root)) or "none"
                raise TernError(f"{tool} loaded {APP} but no UIO device named '{UIO_NAME}' appeared within "
                                f"{UIO_WAIT_S:.0f} s (found: {seen})",
                                "bind the UIO driver: `sudo modprobe uio_pdrv_genirq of_id=generic-uio` (persist it "
                                "in /etc/modprobe.d), then load again") from None
            time.sleep(0.05)
    buf = _udmabuf_line(root)
    print(f"loaded {APP} with {tool} from {fw}: registers {uio.node} at {uio.addr:#x} ({uio.size:#x} bytes); {buf}")
    return 0


def run_unload(args) -> int:
    tool, path = _tool()
    _unload(tool, path, check=True)
    print(f"unloaded the overlay with {tool}")
    return 0


# -- status ---------------------------------------------------------------------------------------
def _udmabuf_line(root: Path) -> str:
    from ..kv260_sysfs import find_udmabuf

    try:
        b = find_udmabuf(root)
    except TernError as e:
        return f"no DDR buffer ({e})"
    return f"DDR buffer '{b.name}' at {b.phys:#x} ({b.size / 2**20:.1f} MiB)"


def _params_summary(p) -> str:
    return (f"batch {p.batch}, max hidden {p.max_hidden}, ffn {p.max_ffn}, heads {p.max_heads}/{p.max_kv_heads}, "
            f"head dim {p.max_head_dim}, ctx {p.max_ctx}, vocab {p.max_vocab}, layers {p.max_layers}, "
            f"PARAMS_HASH {p.digest():#010x}")


def board_status(root: Path) -> dict:
    """What the host sees of the board under ``root``: every part found, or the error that says why not."""
    from ternfpga.rtl.control.regmap import REGMAP_VERSION
    from ternfpga.sim.numerics.spec import NUMERICS_VERSION

    from .. import regs
    from ..driver import params_from_json
    from ..kv260 import Kv260Transport
    from ..kv260_sysfs import check_uio_map, find_udmabuf, find_uio, firmware_dir, under

    fw = firmware_dir(root)
    files = {f: (fw / f).is_file() for f in (BITSTREAM, OVERLAY, SHELL_JSON, PARAMS_FILE)}
    firmware: dict = {"dir": str(fw), "present": fw.is_dir(), "files": files, "params": None}
    params = None
    if files[PARAMS_FILE]:
        try:
            params = params_from_json(fw / PARAMS_FILE)
            firmware["params"] = dict(params.to_dict(), params_hash=params.digest(), summary=_params_summary(params))
        except TernError as e:
            firmware["error"] = str(e)
    state_file = under(root, "/sys/class/fpga_manager/fpga0/state")
    try:
        fpga = {"state": state_file.read_text().strip()}
    except OSError:
        fpga = {"error": f"{state_file} is not readable (no FPGA manager)"}
    uio: dict = {}
    try:
        u = find_uio(root, UIO_NAME)
        uio = {"node": u.node, "name": u.name, "dev": str(u.dev), "addr": u.addr, "size": u.size}
        check_uio_map(u, regs.REGMAP.span)
    except TernError as e:
        uio["error"] = str(e)
    try:
        b = find_udmabuf(root)
        udmabuf = {"name": b.name, "dev": str(b.dev), "phys_addr": b.phys, "size": b.size}
    except TernError as e:
        udmabuf = {"error": str(e)}
    device: dict = {"error": "no register window (see uio)"}
    if "error" not in uio:
        try:
            t = Kv260Transport(root)
        except TernError as e:
            device = {"error": str(e)}
        else:
            try:
                version = t.read32(regs.VERSION)
                device = {"magic": t.read32(regs.MAGIC), "numerics_version": regs.field(version, "VERSION_NUMERICS"),
                          "regmap_version": regs.field(version, "VERSION_REGMAP"),
                          "params_hash": t.read32(regs.PARAMS_HASH)}
            finally:
                t.close()
            problems = []
            if device["magic"] != regs.MAGIC_VALUE:
                problems.append(f"MAGIC reads {device['magic']:#010x}, expected {regs.MAGIC_VALUE:#010x}")
            for what, key, want in (("numerics", "numerics_version", NUMERICS_VERSION),
                                    ("register-map", "regmap_version", REGMAP_VERSION)):
                if device[key] != want:
                    problems.append(f"{what} version {device[key]}, this host implements {want}")
            if params is not None and device["params_hash"] != params.digest():
                problems.append(f"PARAMS_HASH {device['params_hash']:#010x} is not {PARAMS_FILE}'s "
                                f"{params.digest():#010x}")
            device["ok"] = not problems
            if problems:
                device["problem"] = ", ".join(problems)
    ready = all("error" not in d for d in (uio, udmabuf, device)) and device.get("ok", False)
    return {"root": str(root), "firmware": firmware, "fpga_manager": fpga, "uio": uio, "udmabuf": udmabuf,
            "device": device, "ready": ready}


def status_lines(st: dict) -> list[str]:
    fw = st["firmware"]
    have = [f for f, ok in fw["files"].items() if ok]
    lack = [f for f, ok in fw["files"].items() if not ok]
    line = f"firmware   {fw['dir']}: " + (("has " + ", ".join(have)) if have else "absent" if not fw["present"]
                                         else "empty")
    if lack and have:
        line += f"; lacks {', '.join(lack)}"
    lines = [line]
    if fw["params"]:
        lines.append(f"params     {fw['params']['summary']}")
    elif "error" in fw:
        lines.append(f"params     {fw['error']}")
    lines.append(f"fpga       {st['fpga_manager'].get('state') or st['fpga_manager']['error']}")
    u = st["uio"]
    lines.append(f"uio        {u['error']}" if "error" in u and "node" not in u else
                 f"uio        {u['node']} '{u['name']}' at {u['addr']:#x} ({u['size']:#x} bytes)"
                 + (f"; {u['error']}" if "error" in u else ""))
    b = st["udmabuf"]
    lines.append(f"u-dma-buf  {b['error']}" if "error" in b else
                 f"u-dma-buf  '{b['name']}' at {b['phys_addr']:#x} ({b['size'] / 2**20:.1f} MiB)")
    d = st["device"]
    if "error" in d:
        lines.append(f"device     {d['error']}")
    else:
        line = (f"device     MAGIC {d['magic']:#010x}, numerics v{d['numerics_version']}, register map "
                f"v{d['regmap_version']}, PARAMS_HASH {d['params_hash']:#010x}")
        lines.append(line + ("" if d["ok"] else f"; wrong: {d['problem']}"))
    lines.append(f"ready      {'yes' if st['ready'] else 'no'}")
    return lines


def run_status(args) -> int:
    st = board_status(Path(args.root))
    if args.json:
        print(json.dumps(st))
    else:
        print("\n".join(status_lines(st)))
    return 0
