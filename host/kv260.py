"""The ``kv260`` backend: the accelerator on the board, driven by the same host driver as the virtual KV260.

- :class:`Kv260Transport`: the register window is the generic-uio device named UIO_NAME (its map0 must be the
  bitstream's REG_BASE window), mapped from /dev/uioN; the interrupt is the same device's (re-enable it by
  writing a 32-bit 1, then a 4-byte read returns the event count), or, with ``poll=True``, STATUS is polled.
- :class:`Kv260Ddr`: the DDR buffer is the u-dma-buf named UDMABUF_NAME, mapped cached (opened without
  O_SYNC) and flushed / invalidated explicitly through its sysfs sync attributes.
- :class:`Kv260Backend`: :class:`DeviceBackend` on that transport; the bitstream's parameters come from
  ``accel.json`` in the firmware folder when present, else from its parameter registers.

The names come from boards/kv260_shell.py, shared with the bitstream and overlay build; the sysfs discovery
is host/kv260_sysfs.py.
"""
from __future__ import annotations

import json
import mmap
import os
import select
import struct
import time
from pathlib import Path

import numpy as np

from ternfpga.boards.kv260_shell import DEFAULT_FREQ_MHZ, PARAMS_FILE, UDMABUF_NAME, UIO_NAME
from ternfpga.quant.errors import TernError
from ternfpga.rtl.accel_params import AccelParams

from . import regs
from .device_backend import DeviceBackend
from .driver import params_from_json
from .kv260_sysfs import (OVERLAY_FIX, UDMABUF_FIX, check_uio_map, find_udmabuf, find_uio, firmware_dir,
                          open_device, write_attr)
from .program import Program
from .transport import DdrBuffer, Transport

IRQ_FLOOR_S = 0.010  # added to every wait: scheduling and interrupt latency of a loaded Linux host
POLL_FIRST_S = 20e-6  # poll mode: the first sleep between STATUS reads, doubling up to POLL_MAX_S
POLL_MAX_S = 1e-3
SYNC_TO_DEVICE, SYNC_FROM_DEVICE = 1, 2  # u-dma-buf sync_direction (the kernel's DMA_TO/FROM_DEVICE)
_FINISHED = regs.STATUS_DONE | regs.STATUS_ERROR


class Kv260Ddr(DdrBuffer):
    """The u-dma-buf buffer ``name`` under ``root``, mapped whole. Host writes the device reads must be
    followed by :meth:`sync_for_device` (cache flush), device writes the host reads preceded by
    :meth:`sync_for_cpu` (invalidate); the driver does both."""

    def __init__(self, root: Path | str = "/", name: str = UDMABUF_NAME):
        self.dev = find_udmabuf(root, name)
        fd = open_device(self.dev.dev, f"the u-dma-buf '{self.dev.name}'")
        try:
            self._mm = mmap.mmap(fd, self.dev.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            raise TernError(f"cannot map {self.dev.size} bytes of {self.dev.dev} ({e.strerror or e})",
                            UDMABUF_FIX) from None
        finally:
            os.close(fd)  # the mapping outlives the descriptor

    @property
    def phys(self) -> int:
        return self.dev.phys

    @property
    def size(self) -> int:
        return self.dev.size

    def _span(self, offset: int, n: int, what: str) -> None:
        if offset < 0 or n < 0 or offset + n > self.dev.size:
            raise TernError(f"DDR {what} of {n} bytes at offset {offset:#x} is outside the u-dma-buf "
                            f"'{self.dev.name}' ({self.dev.size:#x} bytes)",
                            "the DDR layout exceeds the buffer: load an overlay with a larger buffer")

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        data = memoryview(data).cast("B")
        self._span(offset, len(data), "write")
        self._mm[offset:offset + len(data)] = data

    def read(self, offset: int, n: int) -> bytes:
        self._span(offset, n, "read")
        return self._mm[offset:offset + n]

    def _sync(self, attr: str, direction: int, offset: int, n: int | None) -> None:
        n = self.dev.size - offset if n is None else n
        self._span(offset, n, attr.replace("_", " "))
        if n == 0:
            return
        s = self.dev.sysfs
        write_attr(s / "sync_offset", offset)
        write_attr(s / "sync_size", n)
        write_attr(s / "sync_direction", direction)
        write_attr(s / attr, 1)

    def sync_for_device(self, offset: int = 0, n: int | None = None) -> None:
        self._sync("sync_for_device", SYNC_TO_DEVICE, offset, n)

    def sync_for_cpu(self, offset: int = 0, n: int | None = None) -> None:
        self._sync("sync_for_cpu", SYNC_FROM_DEVICE, offset, n)

    def close(self) -> None:
        if not self._mm.closed:
            self._mm.close()


class Kv260Transport(Transport):
    """The accelerator's registers, interrupt and DDR buffer on the board.

    ``root``: where /sys and /dev are (``/`` on the board). ``clock_hz``: the PL clock, turning watchdog budgets
    (device cycles) into seconds. ``poll``: wait by reading STATUS instead of sleeping on the interrupt (for an
    overlay without the interrupt, or to measure latency). ``irq_fd``: the descriptor the interrupt is armed and
    read on (default: the UIO device's own)."""

    name = "kv260"

    def __init__(self, root: Path | str = Path("/"), clock_hz: float = DEFAULT_FREQ_MHZ * 1e6, poll: bool = False,
                 *, irq_fd: int | None = None):
        self.root = Path(root)
        self._clock_hz = float(clock_hz)
        self.poll = poll
        self._ddr: Kv260Ddr | None = None
        self.uio = find_uio(self.root, UIO_NAME)
        check_uio_map(self.uio, regs.REGMAP.span)
        self.name = f"kv260 {self.uio.dev}"
        self._fd = open_device(self.uio.dev, f"the accelerator's registers, UIO '{self.uio.name}'")
        try:
            self._mm = mmap.mmap(self._fd, self.uio.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            os.close(self._fd)
            raise TernError(f"cannot map the register window of {self.uio.dev} ({e.strerror or e})",
                            OVERLAY_FIX) from None
        # one aligned 32-bit load or store per access: the AXI4-Lite port takes whole words only
        self._words = np.frombuffer(self._mm, dtype="<u4")
        self._irq_fd = self._fd if irq_fd is None else irq_fd

    # -- registers ------------------------------------------------------------------------------
    def _index(self, offset: int) -> int:
        if offset % 4 or not 0 <= offset < len(self._words) * 4:
            raise TernError(f"register offset {offset:#x} is not a word inside the {self.uio.size:#x}-byte window",
                            "use the offsets of host/regs.py")
        return offset >> 2

    def read32(self, offset: int) -> int:
        return int(self._words[self._index(offset)])

    def write32(self, offset: int, value: int) -> None:
        if not 0 <= value <= 0xFFFF_FFFF:
            raise TernError(f"register value {value:#x} does not fit 32 bits", "write a 32-bit value")
        self._words[self._index(offset)] = value

    # -- DDR and clock --------------------------------------------------------------------------
    @property
    def ddr(self) -> Kv260Ddr:
        if self._ddr is None:
            self._ddr = Kv260Ddr(self.root)
        return self._ddr

    @property
    def clock_hz(self) -> float:
        return self._clock_hz

    # -- the interrupt --------------------------------------------------------------------------
    def finished(self) -> bool:
        """STATUS says the call ended (done or error, not busy): what raises the interrupt."""
        s = self.read32(regs.STATUS)
        return bool(s & _FINISHED) and not s & regs.STATUS_BUSY

    def wait_irq(self, budget_cycles: int) -> bool:
        timeout = max(budget_cycles, 0) / self._clock_hz + IRQ_FLOOR_S
        return self._poll_status(timeout) if self.poll else self._wait_uio(timeout)

    def _poll_status(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        pause = POLL_FIRST_S
        while True:
            if self.finished():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(2 * pause, POLL_MAX_S)

    def _wait_uio(self, timeout: float) -> bool:
        """Arm, then sleep on the UIO descriptor. The line is level-high and the kernel masks it when it fires,
        so a call that ended before arming raises it again right after: arming late loses nothing. An event
        left from an earlier wait that timed out is drained first, so it is not taken for this call's."""
        if self._readable(0):
            self._read_event()
        self._arm()
        if self._readable(timeout):
            self._read_event()
            return True
        return self.finished()  # an interrupt lost on the way (or not wired): STATUS decides

    def _readable(self, timeout: float) -> bool:
        r, _, _ = select.select([self._irq_fd], [], [], max(timeout, 0.0))
        return bool(r)

    def _arm(self) -> None:
        try:
            os.write(self._irq_fd, struct.pack("=I", 1))
        except OSError as e:
            raise TernError(f"cannot enable the interrupt of {self.uio.dev} ({e.strerror or e})",
                            "the overlay must give the register node its interrupt (interrupts = <0 89 4>); "
                            "or open the kv260 backend with poll=True") from None

    def _read_event(self) -> int:
        try:
            raw = os.read(self._irq_fd, 4)
        except OSError as e:
            raise TernError(f"reading the interrupt of {self.uio.dev} failed ({e.strerror or e})",
                            "reload the overlay (`ternfpga board load`)") from None
        return struct.unpack("=I", raw)[0] if len(raw) == 4 else 0

    def close(self) -> None:
        if self._ddr is not None:
            self._ddr.close()
            self._ddr = None
        if getattr(self, "_mm", None) is not None and not self._mm.closed:
            del self._words  # the array holds the mapping's buffer: release it before unmapping
            self._mm.close()
            os.close(self._fd)


def firmware_clock_hz(doc: dict) -> float | None:
    """The PL clock the parameters JSON records (``clock_hz`` or ``freq_mhz``), if any."""
    for key, scale in (("clock_hz", 1.0), ("freq_mhz", 1e6)):
        v = doc.get(key) if isinstance(doc, dict) else None
        if isinstance(v, (int, float)) and v > 0:
            return float(v) * scale
    return None


class Kv260Backend(DeviceBackend):
    """The model on the KV260. ``params``: the bitstream's AccelParams (default: ``accel.json`` in the firmware
    folder under ``root``; without it the driver rebuilds them from the parameter registers). ``poll``: see
    :class:`Kv260Transport`. The identification (MAGIC, versions, PARAMS_HASH) runs before anything is
    written, and a model larger than the u-dma-buf is refused before its first byte is copied."""

    name = "kv260"

    def __init__(self, params: AccelParams | None = None, *, root: Path | str = "/", poll: bool = False,
                 watchdog_factor: float = 4.0):
        self.root = Path(root)
        self.poll = poll
        self.clock_hz = DEFAULT_FREQ_MHZ * 1e6
        path = firmware_dir(self.root) / PARAMS_FILE
        if path.is_file():
            if params is None:
                params = params_from_json(path)
            try:
                self.clock_hz = firmware_clock_hz(json.loads(path.read_text())) or self.clock_hz
            except (OSError, ValueError):
                pass  # params_from_json has already named any problem with the file it needed
        super().__init__(params, watchdog_factor=watchdog_factor)

    def _open(self, image) -> tuple[Transport, Program | None]:
        t = None
        try:
            t = Kv260Transport(self.root, self.clock_hz, self.poll)
            t.ddr  # the buffer too: a board without it cannot run anything
        except TernError as e:
            if t is not None:
                t.close()
            raise TernError(f"backend 'kv260' is not available: {e}") from None
        return t, None

    def _check_fits(self, program: Program, ddr: DdrBuffer) -> None:
        need = program.layout.total
        if need > ddr.size:
            raise TernError(f"the model needs {need / 2**20:.1f} MiB of DDR, the u-dma-buf '{ddr.dev.name}' holds "
                            f"{ddr.size / 2**20:.1f} MiB", "load an overlay with a larger buffer (and enough CMA, "
                                                           "kernel option cma=), or re-quantize with a smaller "
                                                           "--max-ctx")
