"""``ternfpga build kv260``: everything up to the board's edge in one folder.

``DIR/`` gets the top's Verilog and constraints (Amaranth's Vivado build plan for :class:`Kv260Platform`,
with the TCL of boards/kv260_flow.py), ``ternfpga.bif``, the overlay source and its ``.dtbo`` (``dtc``),
``shell.json``, ``accel.json`` (the generation parameters the host checks against PARAMS_HASH) and
``deploy/ternfpga/``, the folder to copy to ``/lib/firmware/xilinx/ternfpga/`` on the board. With
``vivado`` and ``bootgen`` on PATH it runs them (a progress line per step) and writes ``report.json``;
without them it says exactly what to run, and ``--finish`` completes the folder afterwards.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ternfpga.quant.errors import TernError
from ternfpga.rtl.accel_params import AccelParams

from .kv260_flow import STEPS, bif, overlay_dtsi, parse_timing, parse_utilization, shell_json, tcl_flow
from .kv260_shell import APP, BITSTREAM, FIRMWARE_DIR, OVERLAY, PARAMS_FILE, achieved_freq_mhz

DEPLOY = Path("deploy") / APP
MIB = 1 << 20
CMA_HINT = 512 * MIB  # above this the KV260's default CMA pool is too small (docs/kv260.md)
DTC_FIX = "install the device-tree compiler (Debian: apt-get install device-tree-compiler; `make setup` does)"


@dataclass
class BuildResult:
    out: Path
    files: list[Path] = field(default_factory=list)
    ran_vivado: bool = False
    report: dict | None = None
    instructions: list[str] = field(default_factory=list)


def _write(path: Path, text: str | bytes) -> Path:
    """Write through a temporary file and a rename: nothing half-written is left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    if isinstance(text, bytes):
        tmp.write_bytes(text)
    else:
        tmp.write_text(text)
    os.replace(tmp, path)
    return path


def max_model_ddr_bytes(params: AccelParams) -> int:
    """An upper bound of the DDR a model within the maxima needs (host/ddr.py's layout): every layer at
    the maxima (ternary body at 5 trits a byte, int8 head rows beside the ternary head, KV cache of
    ``max_ctx`` positions), rounded up to whole MiB."""
    from ternfpga.host.ddr import DdrLayout

    h, f, q = params.max_hidden, params.max_ffn, params.max_head_dim * params.max_heads
    kv = params.max_head_dim * params.max_kv_heads
    body = params.max_layers * (-(-(h * (q + 2 * kv) + q * h + 3 * h * f) // 5))
    head = -(-(params.max_vocab * h) // 5) + params.max_vocab * h  # ternary head + int8 rescoring rows
    extra = params.max_layers * 4 * (q + 2 * kv + 2 * h) * 4 + (params.max_vocab * h) + (1 << 20)  # norms, biases
    lay = DdrLayout.plan(image_bytes=body + head + extra, layers=params.max_layers, kv_heads=params.max_kv_heads,
                         head_dim=params.max_head_dim, ctx=params.max_ctx, head_k=params.max_head_k,
                         max_descriptors=64 * params.max_layers + 64)
    return -(-lay.total // MIB) * MIB


def generate(out: Path, params: AccelParams, *, freq_mhz: float, ddr_mib: int | None,
             progress: Callable[[str], None]) -> BuildResult:
    """Write every source, the overlay and the deploy folder (no vendor tools needed but ``dtc``)."""
    from .kv260 import TOP_NAME, Kv260Platform, Kv260Top

    dtc = shutil.which("dtc")
    if dtc is None:
        raise TernError("`dtc` is not on PATH: the overlay cannot be compiled", DTC_FIX)
    act, d0, d1 = achieved_freq_mhz(freq_mhz)
    if abs(act - freq_mhz) / freq_mhz > 0.001:
        raise TernError(f"pl_clk0 cannot run at {freq_mhz:g} MHz: the PS's IOPLL divides to {act:.3f} MHz at best",
                        f"use --freq {act:.3f} (or 250 / 300 MHz)")
    ddr = ddr_mib * MIB if ddr_mib else max_model_ddr_bytes(params)
    res = BuildResult(out)
    t0 = time.perf_counter()
    progress(f"[build] generating the Verilog of the accelerator (B = {params.batch}) behind the KV260's PS")
    plat = Kv260Platform(tcl_template=tcl_flow(freq_mhz, params.ports))
    plan = plat.prepare(Kv260Top(params), name=TOP_NAME)
    for name, content in plan.files.items():
        if name.endswith(".bat") or name.endswith(".debug.v"):
            continue
        res.files.append(_write(out / name, content))
    progress(f"[build] Verilog, constraints and TCL written in {time.perf_counter() - t0:.0f} s")

    from ternfpga.rtl.generate import accel_metadata

    meta = dict(accel_metadata(params, TOP_NAME), board="kv260", freq_mhz=freq_mhz, pl0_mhz=round(act, 6),
                ddr_bytes=ddr)
    res.files.append(_write(out / PARAMS_FILE, json.dumps(meta, indent=1) + "\n"))
    res.files.append(_write(out / f"{APP}.bif", bif(f"{TOP_NAME}.bit")))
    res.files.append(_write(out / "shell.json", shell_json()))
    dtsi = _write(out / f"{APP}.dtsi", overlay_dtsi(int(round(freq_mhz * 1e6)), ddr))
    res.files.append(dtsi)
    dtbo = out / OVERLAY
    tmp = dtbo.with_name(dtbo.name + f".tmp-{os.getpid()}")
    r = subprocess.run([dtc, "-@", "-I", "dts", "-O", "dtb", "-o", str(tmp), str(dtsi)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise TernError(f"dtc could not compile {dtsi} (exit {r.returncode}: {last})", "report this as a bug")
    os.replace(tmp, dtbo)
    res.files.append(dtbo)
    progress(f"[build] overlay {dtbo.name}: registers, irq, pl_clk0 {freq_mhz:g} MHz, u-dma-buf {ddr // MIB} MiB")
    if ddr > CMA_HINT:
        progress(f"[build] note: the kernel reserves the {ddr // MIB} MiB buffer from CMA: boot with "
                 f"cma={ddr // MIB + 128}M, or pass --ddr-mib for the models you will run")
    res.files += _deploy(out)
    return res


def _deploy(out: Path) -> list[Path]:
    """Copy what the board needs into ``deploy/ternfpga/`` (the bitstream only once it exists)."""
    dep = out / DEPLOY
    files = []
    for name in (OVERLAY, "shell.json", PARAMS_FILE, BITSTREAM):
        src = out / name
        if src.is_file():
            files.append(_write(dep / name, src.read_bytes()))
    return files


def instructions(out: Path) -> list[str]:
    return [f"cd {out}",
            "vivado -mode batch -source ternfpga.tcl -log ternfpga.log",
            "bootgen -w -arch zynqmp -process_bitstream bin -image ternfpga.bif",
            f"ternfpga build kv260 -o {out} --finish",
            f"then copy {out / DEPLOY}/ to {FIRMWARE_DIR}/ on the board and run `ternfpga board load`"]


def run_vivado(out: Path, progress: Callable[[str], None]) -> None:
    """Run the TCL flow, a progress line per ``TERNFPGA-STEP``; a failure names the log."""
    from .kv260 import TOP_NAME

    cmd = ["vivado", "-mode", "batch", "-nojournal", "-source", f"{TOP_NAME}.tcl", "-log", f"{TOP_NAME}.log"]
    t0 = last = time.perf_counter()
    tail: list[str] = []
    with subprocess.Popen(cmd, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        for line in p.stdout:
            tail = (tail + [line.rstrip()])[-20:]
            if line.startswith("TERNFPGA-STEP "):
                now = time.perf_counter()
                step = line.split()[1]
                n = STEPS.index(step) + 1 if step in STEPS else 0
                progress(f"[vivado {n}/{len(STEPS)}] {step} (previous step {now - last:.0f} s, "
                         f"total {now - t0:.0f} s)")
                last = now
    if p.returncode != 0:
        err = next((t for t in reversed(tail) if t.startswith("ERROR")), tail[-1] if tail else "no output")
        raise TernError(f"vivado failed (exit {p.returncode}): {err[:160]}",
                        f"see {out / (TOP_NAME + '.log')}")


def run_bootgen(out: Path) -> None:
    r = subprocess.run(["bootgen", "-w", "-arch", "zynqmp", "-process_bitstream", "bin", "-image", f"{APP}.bif"],
                       cwd=out, capture_output=True, text=True)
    if r.returncode != 0 or not (out / BITSTREAM).is_file():
        last = ((r.stdout + r.stderr).strip().splitlines() or ["no output"])[-1]
        raise TernError(f"bootgen did not write {BITSTREAM} (exit {r.returncode}: {last[:160]})",
                        f"run it by hand in {out}: bootgen -w -arch zynqmp -process_bitstream bin -image {APP}.bif")


def read_reports(out: Path, freq_mhz: float) -> dict:
    """report.json's content from the routed design's reports."""
    from .kv260 import TOP_NAME

    util = out / f"{TOP_NAME}_utilization.rpt"
    timing = out / f"{TOP_NAME}_timing.rpt"
    if not util.is_file() or not timing.is_file():
        raise TernError(f"no Vivado reports in {out} ({util.name}, {timing.name})",
                        "run the Vivado flow first: " + "; ".join(instructions(out)[:2]))
    rep = {"freq_mhz": freq_mhz, **parse_utilization(util.read_text()), **parse_timing(timing.read_text(), freq_mhz)}
    pl0 = out / f"{TOP_NAME}_pl0.txt"
    if pl0.is_file():
        rep["pl0_act_mhz"] = float(pl0.read_text().strip() or 0)
    return rep


def finish(out: Path, freq_mhz: float, progress: Callable[[str], None]) -> BuildResult:
    """After the vendor tools: the .bit.bin (bootgen when missing), report.json, the deploy folder."""
    from .kv260 import TOP_NAME

    res = BuildResult(out)
    if not (out / BITSTREAM).is_file():
        if not (out / f"{TOP_NAME}.bit").is_file():
            raise TernError(f"no {TOP_NAME}.bit in {out}", "run the Vivado flow first: "
                            + "; ".join(instructions(out)[:2]))
        if shutil.which("bootgen") is None:
            raise TernError("bootgen is not on PATH", f"run `source <Vivado>/settings64.sh`, or bootgen by hand in "
                                                      f"{out}")
        run_bootgen(out)
    res.report = read_reports(out, freq_mhz)
    res.files.append(_write(out / "report.json", json.dumps(res.report, indent=1) + "\n"))
    res.files += _deploy(out)
    res.ran_vivado = True
    r = res.report
    progress(f"[build] report: LUT {r.get('lut')}, FF {r.get('ff')}, DSP {r.get('dsp')}, BRAM {r.get('bram')}, "
             f"URAM {r.get('uram')}, WNS {r.get('wns_ns')} ns, Fmax {r.get('fmax_mhz')} MHz")
    return res


def build_kv260(out: str | Path, params: AccelParams, *, freq_mhz: float = 250.0, ddr_mib: int | None = None,
                run_tools: bool | None = None, progress: Callable[[str], None] = print) -> BuildResult:
    """Generate ``out`` and, when ``run_tools`` (default: vivado and bootgen are on PATH), build the bitstream."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TernError(f"cannot create output folder '{out}' ({e.strerror})", "choose a writable -o folder") from None
    res = generate(out, params, freq_mhz=freq_mhz, ddr_mib=ddr_mib, progress=progress)
    have_tools = shutil.which("vivado") is not None and shutil.which("bootgen") is not None
    if run_tools is None:
        run_tools = have_tools
    if not run_tools:
        res.instructions = instructions(out)
        return res
    if not have_tools:
        raise TernError("vivado and bootgen are not both on PATH", "run `source <Vivado>/settings64.sh` first")
    run_vivado(out, progress)
    done = finish(out, freq_mhz, progress)
    res.files += done.files
    res.report, res.ran_vivado = done.report, True
    return res
