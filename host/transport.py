"""What the host driver needs from a device, and nothing more: the register window, one DMA-able DDR
buffer, and a way to wait for the interrupt.

Two transports implement it: ``sim`` (the virtual KV260, sim/kv260/board.py) and ``kv260`` (the board:
UIO for the registers and the interrupt, u-dma-buf for the buffer). The driver (host/driver.py) is
written against this interface only, so it runs unchanged on both.
"""
from __future__ import annotations

from abc import ABC, abstractmethod


class DdrBuffer(ABC):
    """A physically contiguous buffer the accelerator reaches through its AXI masters.

    Offsets are bytes from the buffer's start; the accelerator sees offset ``o`` at ``phys + o``.
    ``sync_for_device`` must follow host writes the device will read, ``sync_for_cpu`` must precede
    host reads of what the device wrote (no-ops where the mapping is coherent or simulated).
    """

    @property
    @abstractmethod
    def phys(self) -> int:
        """The buffer's physical (bus) address."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Bytes in the buffer."""

    @abstractmethod
    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None: ...

    @abstractmethod
    def read(self, offset: int, n: int) -> bytes: ...

    def sync_for_device(self, offset: int = 0, n: int | None = None) -> None:
        """Make host writes in [offset, offset + n) visible to the device."""

    def sync_for_cpu(self, offset: int = 0, n: int | None = None) -> None:
        """Make device writes in [offset, offset + n) visible to the host."""


class Transport(ABC):
    """The register window (32-bit words at byte offsets), the DDR buffer and the interrupt."""

    name = "?"

    @abstractmethod
    def read32(self, offset: int) -> int: ...

    @abstractmethod
    def write32(self, offset: int, value: int) -> None: ...

    @property
    @abstractmethod
    def ddr(self) -> DdrBuffer: ...

    @abstractmethod
    def wait_irq(self, budget_cycles: int) -> bool:
        """Wait until the interrupt line is high or ``budget_cycles`` device cycles have passed (the board
        converts them to seconds at its clock); True when the interrupt is high."""

    @property
    @abstractmethod
    def clock_hz(self) -> float:
        """The accelerator's clock (device cycles to seconds)."""

    def close(self) -> None:
        """Release the device."""
