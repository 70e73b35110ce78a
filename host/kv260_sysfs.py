"""Finding the accelerator's kernel devices on the KV260: the generic-uio device of its register window and
the u-dma-buf device of its DDR buffer, as sysfs and /dev show them once the overlay is loaded.

Every path is taken under ``root`` (``/`` on the board; the tests pass a folder holding a stand-in of /sys and
/dev), and every failure is one :class:`TernError` line naming what was found and what to do. Used by the
``kv260`` transport (host/kv260.py) and by ``ternfpga board status``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ternfpga.boards.kv260_shell import APP, FIRMWARE_DIR, REG_BASE, UDMABUF_CLASS, UDMABUF_NAME, UIO_NAME
from ternfpga.quant.errors import TernError

OVERLAY_FIX = (f"load the overlay: `ternfpga board load` (or `sudo xmutil loadapp {APP}`) and bind "
               f"uio_pdrv_genirq with of_id=generic-uio")
ACCESS_FIX = ("run as root, or install the udev rule of docs/kv260.md (\"The kv260 transport\") and join its "
              "group")
UDMABUF_FIX = ("install the u-dma-buf kernel module and load the overlay that declares the buffer "
               "(`ternfpga board load`)")


def under(root: Path | str, path: str) -> Path:
    """``path`` (absolute on the board, e.g. ``/sys/class/uio``) inside ``root``."""
    return Path(root) / path.lstrip("/")


def firmware_dir(root: Path | str = "/") -> Path:
    """The firmware folder xmutil loads from (boards/kv260_shell.py FIRMWARE_DIR) under ``root``."""
    return under(root, FIRMWARE_DIR)


def read_attr(path: Path) -> str:
    """A sysfs attribute's text, stripped; a missing or unreadable one is a TernError."""
    try:
        return path.read_text().strip()
    except PermissionError:
        raise TernError(f"permission denied reading {path}", ACCESS_FIX) from None
    except OSError as e:
        raise TernError(f"cannot read {path} ({e.strerror or e})", OVERLAY_FIX) from None


def parse_int(text: str, what: str) -> int:
    """An address or size as the kernel prints it: ``0x``-prefixed hex (``0x000000006fd00000``) or decimal."""
    t = text.strip().lower()
    try:
        if t.startswith("0x"):
            return int(t, 16)
        if t.isdigit():
            return int(t, 10)
    except ValueError:
        pass
    raise TernError(f"{what} reads {text.strip()!r}, not a hex (0x...) or decimal number",
                    "check the kernel driver's version; this host reads the sysfs format of Linux 5.15+")


def write_attr(path: Path, value: int) -> None:
    """Write ``value`` (decimal) to a sysfs attribute in one write, as ``echo value > path`` does."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except PermissionError:
        raise TernError(f"permission denied writing {path}", ACCESS_FIX) from None
    except OSError as e:
        raise TernError(f"cannot open {path} ({e.strerror or e})", UDMABUF_FIX) from None
    try:
        os.write(fd, f"{value}\n".encode())
    except OSError as e:
        raise TernError(f"writing {value} to {path} failed ({e.strerror or e})",
                        "check the u-dma-buf module's version (sync_* attributes) and the offset and size") from None
    finally:
        os.close(fd)


def open_device(path: Path, what: str) -> int:
    """``os.open(path, O_RDWR)``: a file descriptor on a /dev node, or one TernError line."""
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except PermissionError:
        raise TernError(f"permission denied opening {path} ({what})", ACCESS_FIX) from None
    except FileNotFoundError:
        raise TernError(f"{path} ({what}) does not exist although sysfs lists the device",
                        "check that udev created the device node (`udevadm trigger`), or reload the overlay") from None
    except OSError as e:
        raise TernError(f"cannot open {path} ({what}): {e.strerror or e}", OVERLAY_FIX) from None


@dataclass(frozen=True)
class UioDevice:
    """One UIO device and its first memory map (the register window)."""

    node: str  # uioN
    name: str
    sysfs: Path
    dev: Path
    addr: int
    size: int


def list_uio(root: Path | str = "/") -> list[tuple[str, str]]:
    """(uioN, name) of every UIO device, in index order."""
    base = under(root, "/sys/class/uio")
    if not base.is_dir():
        return []
    out = []
    for d in base.iterdir():
        if d.name.startswith("uio") and d.name[3:].isdigit():
            try:
                name = (d / "name").read_text().strip()
            except OSError:
                name = "?"
            out.append((d.name, name))
    return sorted(out, key=lambda x: int(x[0][3:]))


def find_uio(root: Path | str = "/", name: str = UIO_NAME) -> UioDevice:
    """The UIO device named ``name`` with its map0 address and size (not checked here)."""
    found = list_uio(root)
    hits = [node for node, n in found if n == name]
    if not hits:
        seen = ", ".join(f"{n} ({node})" for node, n in found) or "none"
        raise TernError(f"no UIO device is named '{name}' (found: {seen})", OVERLAY_FIX)
    if len(hits) > 1:
        raise TernError(f"{len(hits)} UIO devices are named '{name}' ({', '.join(hits)})",
                        "unload the extra overlays (`ternfpga board unload`, `sudo fpgautil -R`) and load it once")
    node = hits[0]
    sysfs = under(root, "/sys/class/uio") / node
    m = sysfs / "maps" / "map0"
    if not m.is_dir():
        raise TernError(f"UIO device {node} ('{name}') has no memory map",
                        "the overlay's register node needs reg = <0x0 0xa0000000 0x0 0x10000>: rebuild it with "
                        "`ternfpga build kv260`")
    return UioDevice(node, name, sysfs, under(root, "/dev") / node, parse_int(read_attr(m / "addr"), f"{m}/addr"),
                     parse_int(read_attr(m / "size"), f"{m}/size"))


def check_uio_map(dev: UioDevice, extent: int) -> None:
    """The map must be the bitstream's register window: at REG_BASE and at least ``extent`` bytes."""
    if dev.addr != REG_BASE:
        raise TernError(f"UIO device {dev.node} ('{dev.name}') maps {dev.addr:#x}, the accelerator's registers are "
                        f"at {REG_BASE:#x}", "load the overlay `ternfpga build kv260` wrote for this bitstream "
                                             "(`ternfpga board load`)")
    if dev.size < extent:
        raise TernError(f"UIO device {dev.node} ('{dev.name}') maps {dev.size:#x} bytes, the register map needs "
                        f"{extent:#x}", "load the overlay `ternfpga build kv260` wrote for this bitstream")


@dataclass(frozen=True)
class UdmabufDevice:
    """One u-dma-buf buffer: its sysfs folder, /dev node, physical address and size."""

    name: str
    sysfs: Path
    dev: Path
    phys: int
    size: int


def list_udmabuf(root: Path | str = "/") -> list[str]:
    """Names of every u-dma-buf device."""
    base = under(root, f"/sys/class/{UDMABUF_CLASS}")
    return sorted(d.name for d in base.iterdir()) if base.is_dir() else []


def find_udmabuf(root: Path | str = "/", name: str = UDMABUF_NAME) -> UdmabufDevice:
    """The u-dma-buf named ``name``, else the only one there is."""
    found = list_udmabuf(root)
    if name not in found:
        if len(found) != 1:
            raise TernError(f"no u-dma-buf device is named '{name}' (found: {', '.join(found) or 'none'})",
                            UDMABUF_FIX)
        name = found[0]
    sysfs = under(root, f"/sys/class/{UDMABUF_CLASS}") / name
    size = parse_int(read_attr(sysfs / "size"), f"{sysfs}/size")
    if size <= 0:
        raise TernError(f"the u-dma-buf '{name}' is empty (size {size})", UDMABUF_FIX)
    return UdmabufDevice(name, sysfs, under(root, "/dev") / name,
                         parse_int(read_attr(sysfs / "phys_addr"), f"{sysfs}/phys_addr"), size)
