"""The ``sim`` backend: the model on the virtual KV260 (sim/kv260/board.py), the accelerator's Verilog in
Verilator on a calibrated model of the KV260's memory system, driven by the same host driver as the board
(host/driver.py). Loading, calls and counters are :class:`DeviceBackend`'s (host/device_backend.py); this
backend builds the board, sized for the model, and adds the simulated DDR traffic and simulation speed to
:meth:`SimBackend.counters`.
"""
from __future__ import annotations

from ternfpga.rtl.accel_params import AccelParams

from .device_backend import CLASSES, DeviceBackend, PhaseStats
from .program import Program, compile_program
from .transport import Transport

DDR_ALIGN = 1 << 20  # the simulated DDR buffer: the model's layout rounded up to whole MiB

__all__ = ["CLASSES", "DDR_ALIGN", "PhaseStats", "SimBackend"]


class SimBackend(DeviceBackend):
    """``params``: the accelerator to simulate (AccelParams() by default: the full-size bitstream; the
    first build of a parameter set takes minutes, later ones are cached). ``read_latency``: the DDR model's
    read latency in PL cycles (0: its calibrated default). ``watchdog_factor``: see host/watchdog.py."""

    name = "sim"

    def __init__(self, params: AccelParams | None = None, *, read_latency: int = 0, seed: int = 1,
                 watchdog_factor: float = 4.0):
        super().__init__(params if params is not None else AccelParams(), watchdog_factor=watchdog_factor)
        self.read_latency = read_latency
        self.seed = seed
        self.board = None

    def _open(self, image) -> tuple[Transport, Program]:
        from ternfpga.sim.kv260.board import SimTransport, VirtualKv260

        prog = compile_program(image, self.params)
        size = -(-prog.layout.total // DDR_ALIGN) * DDR_ALIGN
        self.board = VirtualKv260(self.params, size, read_latency=self.read_latency, seed=self.seed)
        return SimTransport(self.board), prog

    def _traffic(self) -> tuple[int, int]:
        ports = self.board.port_stats()
        return sum(p.read_bytes for p in ports), sum(p.write_bytes for p in ports)

    def _device_extra(self) -> dict:
        cycles, secs = self.board.speed()
        return {"sim_cycles": cycles, "sim_wall_s": secs}

    def close(self) -> None:
        super().close()  # closes the SimTransport, which closes the board
        self.board = None
