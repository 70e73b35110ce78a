"""What every backend that runs the accelerator through the host driver (host/driver.py) shares: the ``sim``
backend (the virtual KV260) and the ``kv260`` backend (the board) differ only in how they open the
transport, so the load sequence, the calls, the KV-cache position and the device counters live here.

Load: open the transport, identify the device (:class:`Driver` refuses a wrong bitstream before anything is
written), compile the program for the bitstream's parameters, check the model fits the DDR buffer, then
write it. A prefill of T tokens is one call (the sequencer runs it in blocks of B); a decode is one call of
one token; the figures the device counts come back in :meth:`DeviceBackend.counters`.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

from ternfpga.rtl.accel_params import AccelParams
from ternfpga.sim.golden import Candidates

from .backend import Backend
from .driver import Driver
from .program import Program, compile_program, device_ctx
from .transport import DdrBuffer, Transport

CLASSES = ("matmul", "attention", "vector", "head")
DEFAULT_CLOCK_HZ = 250e6


@dataclass
class PhaseStats:
    """Device figures summed over the calls of one phase (prefill or decode)."""

    calls: int = 0
    tokens: int = 0
    cycles: int = 0
    by_class: dict = field(default_factory=lambda: dict.fromkeys((*CLASSES, "memstall"), 0))
    ops: int = 0
    read_bytes: int = 0
    write_bytes: int = 0

    def add(self, tokens: int, c: dict, read_bytes: int, write_bytes: int) -> None:
        self.calls += 1
        self.tokens += tokens
        self.cycles += c["cycles_total"]
        for k in self.by_class:
            self.by_class[k] += c[f"cycles_{k}"]
        self.ops += c["ops"]
        self.read_bytes += read_bytes
        self.write_bytes += write_bytes

    def to_dict(self, clock_hz: float) -> dict:
        s = self.cycles / clock_hz
        return {"calls": self.calls, "tokens": self.tokens, "cycles": self.cycles, "seconds": s,
                "cycles_by_class": dict(self.by_class), "ops": self.ops, "ddr_read_bytes": self.read_bytes,
                "ddr_write_bytes": self.write_bytes,
                "ddr_gb_s": (self.read_bytes + self.write_bytes) / s / 1e9 if s > 0 else 0.0}


class DeviceBackend(Backend):
    """A model on an accelerator driven by :class:`Driver`. ``params``: the bitstream's AccelParams (None:
    the driver rebuilds them from the parameter registers). Subclasses implement :meth:`_open`."""

    def __init__(self, params: AccelParams | None = None, *, watchdog_factor: float = 4.0):
        super().__init__()
        self.params = params
        self.watchdog_factor = watchdog_factor
        self.driver: Driver | None = None
        self._transport: Transport | None = None
        self._position = 0
        self._ctx = 0
        self._head_k = 0
        self._phases = {"prefill": PhaseStats(), "decode": PhaseStats()}
        self.last_call: dict = {}

    # -- what subclasses provide ----------------------------------------------------------------
    @abstractmethod
    def _open(self, image) -> tuple[Transport, Program | None]:
        """Open the device for ``image``: its transport, and the program if opening needed it compiled."""

    def _check_fits(self, program: Program, ddr: DdrBuffer) -> None:
        """Refuse a model larger than the DDR buffer, before anything is written."""
        program.layout.check_fits(ddr.size)

    def _traffic(self) -> tuple[int, int]:
        """DDR bytes (read, written) by the device so far; (0, 0) where the device does not count them."""
        return 0, 0

    def _device_extra(self) -> dict:
        """Backend-specific entries of ``counters()["device"]``."""
        return {}

    # -- load -----------------------------------------------------------------------------------
    def load(self, image) -> None:
        self.close()
        transport, prog = self._open(image)
        self._transport = transport
        try:
            driver = Driver(transport, self.params, watchdog_factor=self.watchdog_factor)
            if prog is None:
                prog = compile_program(image, driver.params)
            self._check_fits(prog, transport.ddr)
            driver.load(image, image.path, program=prog)
        except BaseException:
            self.close()
            raise
        self.driver = driver
        self._ctx = device_ctx(image, driver.params)
        self._head_k = prog.layout.head_k
        self._position = 0
        self._phases = {"prefill": PhaseStats(), "decode": PhaseStats()}

    def reset(self) -> None:
        # the device's KV cache is addressed by position: a new sequence simply overwrites it
        self._position = 0

    @property
    def position(self) -> int:
        return self._position

    @property
    def max_ctx(self) -> int:
        return self._ctx

    @property
    def head_k(self) -> int:
        return self._head_k

    # -- calls ----------------------------------------------------------------------------------
    def _call(self, tokens: Sequence[int], phase: str) -> Candidates:
        rd0, wr0 = self._traffic()
        cand, c = self.driver.call(tokens, self._position)
        rd1, wr1 = self._traffic()
        rd, wr = rd1 - rd0, wr1 - wr0
        self._phases[phase].add(len(tokens), c, rd, wr)
        self.last_call = dict(c, tokens=len(tokens), position=self._position, ddr_read_bytes=rd, ddr_write_bytes=wr)
        self._position += len(tokens)  # only after the call succeeded: a failed call leaves the cache as it was
        return cand

    def _prefill(self, tokens: Sequence[int]) -> Candidates:
        return self._call(tokens, "prefill")

    def _decode(self, token: int) -> Candidates:
        return self._call([token], "decode")

    def counters(self) -> dict:
        clock = self.driver.t.clock_hz if self.driver else DEFAULT_CLOCK_HZ
        dev = {"clock_hz": clock, **{k: v.to_dict(clock) for k, v in self._phases.items()}}
        if self.driver is not None:
            dev.update(self._device_extra())
        return dict(super().counters(), device=dev)

    def close(self) -> None:
        transport = getattr(self, "_transport", None)  # None too when __init__ did not finish
        if transport is not None:
            transport.close()
        self._transport = None
        self.driver = None

    def __del__(self):
        self.close()
