"""The ``sim`` backend: the model on the virtual KV260 (sim/kv260/board.py), the accelerator's Verilog in
Verilator on a calibrated model of the KV260's memory system, driven by the same host driver as the board
(host/driver.py). A prefill of T tokens is one call (the sequencer runs it in blocks of B); a decode is one
call of one token. Every figure the device counts comes back in :meth:`SimBackend.counters`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ternfpga.rtl.accel_params import AccelParams
from ternfpga.sim.golden import Candidates

from .backend import Backend
from .driver import Driver
from .program import compile_program, device_ctx

DDR_ALIGN = 1 << 20  # the simulated DDR buffer: the model's layout rounded up to whole MiB
CLASSES = ("matmul", "attention", "vector", "head")


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


class SimBackend(Backend):
    """``params``: the accelerator to simulate (AccelParams() by default: the full-size bitstream; the
    first build of a parameter set takes minutes, later ones are cached). ``read_latency``: the DDR model's
    read latency in PL cycles (0: its calibrated default). ``watchdog_factor``: see host/watchdog.py."""

    name = "sim"

    def __init__(self, params: AccelParams | None = None, *, read_latency: int = 0, seed: int = 1,
                 watchdog_factor: float = 4.0):
        super().__init__()
        self.params = params if params is not None else AccelParams()
        self.read_latency = read_latency
        self.seed = seed
        self.watchdog_factor = watchdog_factor
        self.board = None
        self.driver: Driver | None = None
        self._position = 0
        self._ctx = 0
        self._head_k = 0
        self._phases = {"prefill": PhaseStats(), "decode": PhaseStats()}
        self.last_call: dict = {}

    def load(self, image) -> None:
        from ternfpga.sim.kv260.board import SimTransport, VirtualKv260

        prog = compile_program(image, self.params)
        self.close()
        size = -(-prog.layout.total // DDR_ALIGN) * DDR_ALIGN
        self.board = VirtualKv260(self.params, size, read_latency=self.read_latency, seed=self.seed)
        self.driver = Driver(SimTransport(self.board), self.params, watchdog_factor=self.watchdog_factor)
        self.driver.load(image, image.path, program=prog)
        self._ctx = device_ctx(image, self.params)
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

    def _call(self, tokens: Sequence[int], phase: str) -> Candidates:
        before = self.board.port_stats()
        cand, c = self.driver.call(tokens, self._position)
        after = self.board.port_stats()
        rd = sum(a.read_bytes - b.read_bytes for a, b in zip(after, before))
        wr = sum(a.write_bytes - b.write_bytes for a, b in zip(after, before))
        self._phases[phase].add(len(tokens), c, rd, wr)
        self.last_call = dict(c, tokens=len(tokens), position=self._position, ddr_read_bytes=rd, ddr_write_bytes=wr)
        self._position += len(tokens)  # only after the call succeeded: a failed call leaves the cache as it was
        return cand

    def _prefill(self, tokens: Sequence[int]) -> Candidates:
        return self._call(tokens, "prefill")

    def _decode(self, token: int) -> Candidates:
        return self._call([token], "decode")

    def counters(self) -> dict:
        clock = self.driver.t.clock_hz if self.driver else 250e6
        dev = {"clock_hz": clock, **{k: v.to_dict(clock) for k, v in self._phases.items()}}
        if self.board is not None:
            cycles, secs = self.board.speed()
            dev["sim_cycles"], dev["sim_wall_s"] = cycles, secs
        return dict(super().counters(), device=dev)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
        self.board = None
        self.driver = None

    def __del__(self):
        self.close()
