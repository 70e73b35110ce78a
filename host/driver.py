"""The host driver of the accelerator: one class, written against host/transport.py only, so the same code
runs the board (UIO + u-dma-buf) and the virtual KV260 (sim/kv260/board.py).

- :meth:`Driver.__init__` identifies the device: MAGIC, the numerics and register-map versions, the
  parameter registers and PARAMS_HASH; a device the host cannot drive is refused with one line.
- :meth:`Driver.load` compiles the model's program once, plans the DDR layout, writes the image and the
  program into the DDR buffer and sets the call-independent registers.
- :meth:`Driver.call` runs one call (a prefill of T tokens, run by the sequencer in blocks of B, or one
  decode): token ids, POSITION, COUNT, CONTROL.START, then the interrupt under a watchdog
  (:mod:`ternfpga.host.watchdog`); returns the shortlist and the call's counters.

The sequence is the one tests/test_accel_cocotb.py checks on the RTL (sim/cocotb/tb_accel.py).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ternfpga.quant.errors import TernError
from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.control.codes import ErrorCode, Op
from ternfpga.rtl.control.regmap import PARAM_REGISTERS, REGMAP_VERSION
from ternfpga.sim.golden import Candidates
from ternfpga.sim.numerics.spec import NUMERICS_VERSION

from . import regs
from .ddr import RESULT_BYTES
from .program import Program, check_image, compile_program, device_ctx
from .transport import Transport
from .watchdog import ABORT_WAIT_CYCLES, Watchdog

COUNTERS = ("CYCLES_TOTAL", "CYCLES_MATMUL", "CYCLES_ATTENTION", "CYCLES_VECTOR", "CYCLES_HEAD",
            "CYCLES_MEMSTALL", "OPS")
PARAMS_FIX = ("pass the parameters JSON that `ternfpga rtl accel -o DIR` wrote with the bitstream "
              "(DIR/<top>.json, key \"params\")")
LOAD_CHUNK = 16 << 20  # image bytes copied per write: a large image never sits twice in host memory


def params_from_json(path: str | Path) -> AccelParams:
    """The AccelParams in a parameters JSON written by ``ternfpga rtl accel`` (key ``"params"``); a bare
    dict of AccelParams fields is accepted too."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise TernError(f"accelerator parameters '{path}' do not exist", PARAMS_FIX) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TernError(f"accelerator parameters '{path}' are not readable JSON ({str(e)[:80]})", PARAMS_FIX) \
            from None
    d = doc.get("params", doc) if isinstance(doc, dict) else None
    names = {f.name for f in dataclasses.fields(AccelParams)} - {"extra"}
    if not isinstance(d, dict) or not d or set(d) - names:
        extra = sorted(set(d) - names) if isinstance(d, dict) else []
        raise TernError(f"'{path}' holds no accelerator parameters"
                        + (f" (unknown keys {', '.join(extra[:4])})" if extra else ""), PARAMS_FIX)
    try:
        return AccelParams(**d)
    except TypeError as e:
        raise TernError(f"'{path}': the accelerator parameters are malformed ({e})", PARAMS_FIX) from None


@dataclass(frozen=True)
class DeviceId:
    """What the identification registers say."""

    magic: int
    numerics_version: int
    regmap_version: int
    params_hash: int
    registers: dict  # parameter register name -> value


class Driver:
    """Drives one accelerator through ``transport``. ``params``: the bitstream's generation parameters
    (the ``params`` of its JSON); None rebuilds them from the parameter registers, which works when the
    fields without a register have their defaults. ``watchdog_factor``: margin of the per-call cycle
    budget over the pessimistic estimate of the call's work (host/watchdog.py)."""

    def __init__(self, transport: Transport, params: AccelParams | None = None, *, watchdog_factor: float = 4.0):
        self.t = transport
        self.id = self._identify()
        self.params = self._check_params(params)
        self.watchdog_factor = watchdog_factor
        self.program: Program | None = None
        self.watchdog: Watchdog | None = None
        self.ctx = 0
        self.vocab = 0
        self._pending_budget = 0  # > 0: an aborted call may still be running on the device

    # -- identification -----------------------------------------------------------------------
    def _identify(self) -> DeviceId:
        r = self.t.read32
        magic = r(regs.MAGIC)
        if magic != regs.MAGIC_VALUE:
            raise TernError(f"no ternfpga accelerator answers on {self.t.name}: MAGIC reads {magic:#010x}, "
                            f"expected {regs.MAGIC_VALUE:#010x}",
                            "load the ternfpga bitstream and check the register window (UIO device)")
        version = r(regs.VERSION)
        nv, rv = regs.field(version, "VERSION_NUMERICS"), regs.field(version, "VERSION_REGMAP")
        for what, have, want in (("numerics", nv, NUMERICS_VERSION), ("register-map", rv, REGMAP_VERSION)):
            if have != want:
                raise TernError(f"the bitstream implements {what} version {have}, this host implements {want}",
                                "load a bitstream built by this version of ternfpga, or use the ternfpga release "
                                "that built it")
        values = {name: r(regs.OFFSETS[name]) for name in PARAM_REGISTERS}
        return DeviceId(magic, nv, rv, r(regs.PARAMS_HASH), values)

    def _check_params(self, params: AccelParams | None) -> AccelParams:
        want = self.id.params_hash
        if params is not None:
            if params.digest() != want:
                raise TernError(f"the accelerator parameters given (hash {params.digest():#010x}) are not the "
                                f"bitstream's (PARAMS_HASH {want:#010x})", PARAMS_FIX)
            return params
        kw = {"vmem_depth" if attr == "vmem_words" else attr: self.id.registers[name]
              for name, (attr, _) in PARAM_REGISTERS.items()}
        try:
            rebuilt = AccelParams(**kw)
        except TernError:
            rebuilt = None
        if rebuilt is None or rebuilt.digest() != want:
            raise TernError(f"the bitstream's parameters cannot be rebuilt from its registers (PARAMS_HASH "
                            f"{want:#010x}; some generation parameters have no register)", PARAMS_FIX)
        return rebuilt

    # -- load ---------------------------------------------------------------------------------
    def load(self, image, image_path: str | Path | None = None, program: Program | None = None) -> Program:
        """Compile ``image``'s program (or take ``program``, compiled for these parameters), write the image
        file and the program into the DDR buffer and set DDR_BASE/PROGRAM/PROGRAM_SIZE/TOKENS/IRQ_ENABLE."""
        image_path = Path(image_path if image_path is not None else image.path)
        check_image(image, self.params)  # numerics, trit layout, and every dim against the maxima (check_model)
        self._settle()
        prog = program if program is not None else compile_program(image, self.params,
                                                                   image_bytes=image_path.stat().st_size)
        lay = prog.layout
        ddr = self.t.ddr
        lay.check_fits(ddr.size)
        with open(image_path, "rb") as f:
            at = 0
            while chunk := f.read(LOAD_CHUNK):
                ddr.write(lay.image + at, chunk)
                at += len(chunk)
        if at != lay.image_bytes:
            raise TernError(f"'{image_path}' has {at} bytes, the program was compiled for {lay.image_bytes}",
                            "compile the program for this image")
        ddr.write(lay.program, prog.to_bytes())
        ddr.sync_for_device(0, lay.total)
        w = self.t.write32
        base = ddr.phys
        w(regs.DDR_BASE_LO, base & 0xFFFF_FFFF)
        w(regs.DDR_BASE_HI, base >> 32)
        w(regs.PROGRAM, lay.program)
        w(regs.PROGRAM_SIZE, prog.nbytes)
        w(regs.TOKENS, lay.tokens)
        w(regs.IRQ_ENABLE, regs.IRQ_ENABLE_DONE | regs.IRQ_ENABLE_ERROR)
        self._ack()
        self.program = prog
        self.ctx = device_ctx(image, self.params)
        self.vocab = image.config.vocab
        self.watchdog = Watchdog.for_model(image, prog, self.params)
        return prog

    # -- a call -------------------------------------------------------------------------------
    def budget(self, tokens: int, position: int) -> int:
        """The watchdog's cycle budget for a call of ``tokens`` tokens at ``position``."""
        return self.watchdog.budget(tokens, position, self.watchdog_factor)

    def call(self, ids: Sequence[int], position: int) -> tuple[Candidates, dict]:
        """Run ``ids`` at positions ``position ...``: the shortlist of the last token and the call's
        counters (cycles per class, ops, the watchdog budget)."""
        if self.program is None:
            raise TernError("no model is loaded on the accelerator", "call load(image) first")
        ids = np.asarray(list(ids), np.int64).reshape(-1)
        T = len(ids)
        if T == 0:
            raise TernError("a call needs at least one token", "pass one or more token ids")
        if position < 0 or position + T > self.ctx:
            raise TernError(f"tokens {position}..{position + T - 1} do not fit the device's context of {self.ctx}",
                            "start a new sequence, or re-quantize with a larger --max-ctx")
        if ids.min() < 0 or ids.max() >= self.vocab:
            bad = int(ids[(ids < 0) | (ids >= self.vocab)][0])
            raise TernError(f"token id {bad} is outside the vocabulary", f"use ids in 0..{self.vocab - 1}")
        self._settle()
        lay = self.program.layout
        ddr = self.t.ddr
        ddr.write(lay.tokens, ids.astype("<u4").tobytes())
        ddr.sync_for_device(lay.tokens, 4 * T)
        w = self.t.write32
        w(regs.POSITION, position)
        w(regs.COUNT, T)
        w(regs.CONTROL, regs.CONTROL_START)
        budget = self.budget(T, position)
        if not self.t.wait_irq(budget):
            self._watchdog_fired(budget)
        status = self.t.read32(regs.STATUS)
        if status & regs.STATUS_ERROR:
            self._raise_device_error()
        if status & regs.STATUS_BUSY or not status & regs.STATUS_DONE:
            self._ack()
            raise TernError(f"the accelerator raised its interrupt without finishing the call (STATUS "
                            f"{status:#x})", "reload the bitstream; this is a device fault")
        counters = self.read_counters()
        self._ack()
        ddr.sync_for_cpu(lay.results, RESULT_BYTES * lay.head_k)
        raw = np.frombuffer(ddr.read(lay.results, RESULT_BYTES * lay.head_k), "<u4").reshape(-1, 2)
        cand = Candidates(raw[:, 0].astype(np.int64), raw[:, 1].astype(np.int32).astype(np.int64))
        counters["budget_cycles"] = budget
        return cand, counters

    def read_counters(self) -> dict:
        """The counters of the current or last call: CYCLES_* and OPS (LO first: reading it captures HI)."""
        out = {}
        for name in COUNTERS:
            lo_off, hi_off = regs.PAIRS[name]
            lo = self.t.read32(lo_off)
            out[name.lower()] = lo | self.t.read32(hi_off) << 32
        return out

    # -- faults -------------------------------------------------------------------------------
    def _ack(self) -> None:
        pending = self.t.read32(regs.IRQ_STATUS)
        if pending:
            self.t.write32(regs.IRQ_STATUS, pending)

    def _settle(self) -> None:
        """Before a call or a load: wait (bounded) for a call a watchdog aborted, which a device ends at its
        running op's end; acknowledge what it left."""
        if self.t.read32(regs.STATUS) & regs.STATUS_BUSY:
            budget = self._pending_budget or ABORT_WAIT_CYCLES
            self.t.write32(regs.CONTROL, regs.CONTROL_ABORT)
            if not self.t.wait_irq(budget) and self.t.read32(regs.STATUS) & regs.STATUS_BUSY:
                raise TernError(f"the accelerator is still busy with an aborted call after {budget} more cycles",
                                "the memory system or the bitstream hangs: reload the bitstream (or reboot the "
                                "board) and load the model again")
        self._pending_budget = 0
        self._ack()

    def _watchdog_fired(self, budget: int) -> None:
        self.t.write32(regs.CONTROL, regs.CONTROL_ABORT)
        ms = budget / self.t.clock_hz * 1e3
        if self.t.wait_irq(ABORT_WAIT_CYCLES):
            status = self.t.read32(regs.STATUS)
            code = self.t.read32(regs.ERROR_CODE) if status & regs.STATUS_ERROR else 0
            where = self._where(self.t.read32(regs.ERROR_DESC))
            self._ack()
            if code not in (0, ErrorCode.ABORTED):
                self._raise_device_error()
            raise TernError(f"the call did not finish within its watchdog budget of {budget} cycles ({ms:.1f} ms) "
                            f"and was aborted at {where}",
                            "the accelerator or its memory stalled; the driver stays usable: retry the call")
        self._pending_budget = budget
        raise TernError(f"the call did not finish within its watchdog budget of {budget} cycles ({ms:.1f} ms) and "
                        f"the accelerator did not stop within {ABORT_WAIT_CYCLES} cycles of ABORT (its memory "
                        f"does not answer)", "check the DDR buffer and the memory system; the next call waits for "
                                             "the aborted one to end, or reload the bitstream")

    def _where(self, desc: int) -> str:
        descs = self.program.descs if self.program else []
        if 0 <= desc < len(descs):
            d = descs[desc]
            return f"descriptor {desc} ({Op(d.op).name} {d.note})"
        return f"descriptor {desc}"

    def _raise_device_error(self) -> None:
        code = self.t.read32(regs.ERROR_CODE)
        desc = self.t.read32(regs.ERROR_DESC)
        lo_off, hi_off = regs.PAIRS["ERROR_ADDR"]
        addr = self.t.read32(lo_off)
        addr |= self.t.read32(hi_off) << 32
        self._ack()
        off = addr - self.t.ddr.phys
        region = self._region(off)
        raise TernError(f"the accelerator ended the call with {regs.error_name(code)} at {self._where(desc)}, "
                        f"address {addr:#x}{region} ({regs.ERROR_DOCS.get(code, 'unknown code')})",
                        _ERROR_FIX.get(code, "reload the bitstream and the model; the driver stays usable"))

    def _region(self, off: int) -> str:
        if self.program is None:
            return ""
        for name, start, n in self.program.layout.regions():
            if start <= off < start + max(n, 1):
                return f" (DDR {name} + {off - start:#x})"
        return " (outside the model's DDR regions)"


_ERROR_FIX = {
    ErrorCode.AXI_READ: "check the DDR buffer (its physical address and size) and the memory system; the driver "
                        "stays usable",
    ErrorCode.AXI_WRITE: "check the DDR buffer (its physical address and size) and the memory system; the driver "
                         "stays usable",
    ErrorCode.BAD_OPCODE: "the program in DDR was overwritten: load the model again",
    ErrorCode.PROGRAM_BOUNDS: "the program in DDR was overwritten or PROGRAM_SIZE is wrong: load the model again",
    ErrorCode.ABORTED: "the call was aborted; start it again",
    ErrorCode.BAD_TOKEN: "pass token ids inside the model's vocabulary",
    ErrorCode.BAD_CALL: "pass at least one token",
    ErrorCode.BAD_DESC: "the program does not fit this bitstream's maxima: compile it for this bitstream's "
                        "parameters",
}
