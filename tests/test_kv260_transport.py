"""The ``kv260`` transport and backend (host/kv260.py, host/kv260_sysfs.py) and ``ternfpga board`` against a
stand-in of the board's /sys and /dev in a temporary folder: the UIO register window is a regular file
(mmap works on it), the interrupt a socket pair (arming writes to it, the "device" answers with an event
count), the u-dma-buf a regular file plus its sysfs attributes. No root, no Verilator, no board.

Checked: discovery and 32-bit accesses at the right byte offsets; sysfs number formats; the u-dma-buf's sync
attribute writes and bounds; the interrupt (arming, events, a stale event, timeouts, STATUS after a timeout,
poll mode); one TernError line for every failure (no overlay, wrong map, permission denied, wrong
identification, a model larger than the buffer); the unchanged driver loading and running a call through the
transport; ``board load | unload | status`` with stand-in xmutil and fpgautil scripts.
"""
from __future__ import annotations

import json
import mmap
import os
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ternfpga.boards.kv260_shell import (APP, BITSTREAM, FIRMWARE_DIR, OVERLAY, PARAMS_FILE, REG_BASE, REG_SIZE,
                                         UDMABUF_NAME, UIO_NAME)
from ternfpga.host import kv260_sysfs, regs
from ternfpga.host.cli import main
from ternfpga.host.driver import Driver
from ternfpga.host.kv260 import IRQ_FLOOR_S, Kv260Backend, Kv260Ddr, Kv260Transport
from ternfpga.quant.errors import TernError
from ternfpga.rtl.control.regmap import identification
from ternfpga.sim.cocotb.tb_accel import tiny_params

PARAMS = tiny_params()
DDR_PHYS = 0x6FD0_0000
DDR_SIZE = 64 << 20
CLOCK = 250e6


# -- the stand-in board ----------------------------------------------------------------------------
class Board:
    """A stand-in of the board's /sys and /dev under ``root``."""

    def __init__(self, root: Path):
        self.root = root

    def add_uio(self, index: int, name: str, addr: int = REG_BASE, size: int = REG_SIZE) -> Path:
        d = self.root / "sys/class/uio" / f"uio{index}"
        (d / "maps/map0").mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "maps/map0/addr").write_text(f"0x{addr:016x}\n")  # as the kernel prints a phys_addr_t
        (d / "maps/map0/size").write_text(f"0x{size:016x}\n")
        dev = self.root / "dev" / f"uio{index}"
        dev.parent.mkdir(exist_ok=True)
        dev.write_bytes(bytes(REG_SIZE))
        return dev

    def add_udmabuf(self, name: str = UDMABUF_NAME, size: int = DDR_SIZE, phys: str = f"0x{DDR_PHYS:016x}") -> Path:
        d = self.root / "sys/class/u-dma-buf" / name
        d.mkdir(parents=True)
        (d / "phys_addr").write_text(phys + "\n")
        (d / "size").write_text(f"{size}\n")
        for attr in ("sync_offset", "sync_size", "sync_direction", "sync_for_cpu", "sync_for_device"):
            (d / attr).write_text("0\n")
        dev = self.root / "dev" / name
        dev.parent.mkdir(exist_ok=True)
        with open(dev, "wb") as f:
            f.truncate(size)  # sparse: only what the host writes takes disk space
        return dev

    @property
    def regfile(self) -> Path:
        return self.root / "dev/uio0"

    def set_regs(self, **values: int) -> None:
        with open(self.regfile, "r+b") as f:
            for name, v in values.items():
                f.seek(regs.OFFSETS[name])
                f.write(struct.pack("<I", v))

    def reg(self, name: str) -> int:
        data = self.regfile.read_bytes()
        return struct.unpack_from("<I", data, regs.OFFSETS[name])[0]

    def identify_as(self, params) -> None:
        self.set_regs(**identification(params))

    def attr(self, name: str) -> str:
        return (self.root / "sys/class/u-dma-buf" / UDMABUF_NAME / name).read_text().strip()

    def firmware(self, *files: str, params=None) -> Path:
        fw = self.root / FIRMWARE_DIR.lstrip("/")
        fw.mkdir(parents=True, exist_ok=True)
        for f in files:
            (fw / f).write_text("stand-in\n")
        if params is not None:
            from ternfpga.rtl.generate import accel_metadata

            (fw / PARAMS_FILE).write_text(json.dumps(accel_metadata(params)))
        return fw


@pytest.fixture
def board(tmp_path) -> Board:
    b = Board(tmp_path / "root")
    b.add_uio(0, UIO_NAME)
    b.add_udmabuf()
    b.identify_as(PARAMS)
    return b


@pytest.fixture
def transport(board):
    t = Kv260Transport(board.root, CLOCK)
    yield t
    t.close()


def one_line(e: pytest.ExceptionInfo, *keywords: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "; " in msg, msg
    for k in keywords:
        assert k in msg, f"{k!r} not in: {msg}"
    return msg


# -- discovery and registers -----------------------------------------------------------------------
def test_registers_land_at_their_byte_offsets(board, transport):
    assert transport.uio.node == "uio0" and transport.uio.addr == REG_BASE and transport.uio.size == REG_SIZE
    before = np.frombuffer(board.regfile.read_bytes(), "<u4").copy()
    transport.write32(regs.POSITION, 0xDEADBEEF)
    transport.write32(regs.DDR_BASE_HI, 0x12)
    data = board.regfile.read_bytes()
    assert data[regs.POSITION:regs.POSITION + 4] == struct.pack("<I", 0xDEADBEEF)
    assert data[regs.DDR_BASE_HI:regs.DDR_BASE_HI + 4] == bytes([0x12, 0, 0, 0])
    changed = np.flatnonzero(np.frombuffer(data, "<u4") != before) * 4
    assert changed.tolist() == sorted([regs.POSITION, regs.DDR_BASE_HI])
    board.set_regs(COUNT=0x01020304)
    assert transport.read32(regs.COUNT) == 0x01020304
    assert transport.read32(regs.MAGIC) == regs.MAGIC_VALUE
    assert transport.read32(regs.POSITION) == 0xDEADBEEF
    for bad in (2, REG_SIZE, -4):
        with pytest.raises(TernError, match="not a word inside"):
            transport.read32(bad)
    with pytest.raises(TernError, match="does not fit 32 bits"):
        transport.write32(regs.COUNT, 1 << 32)


def test_finds_its_uio_among_others(tmp_path):
    b = Board(tmp_path)
    b.add_uio(0, "axi-pmon", addr=0xFFA0_0000)
    b.add_uio(1, UIO_NAME)
    t = Kv260Transport(tmp_path)
    try:
        assert t.uio.node == "uio1" and t.uio.dev == tmp_path / "dev/uio1"
    finally:
        t.close()


def test_no_overlay_loaded_lists_the_uio_devices_found(tmp_path):
    b = Board(tmp_path)
    with pytest.raises(TernError) as e:
        Kv260Transport(tmp_path)
    one_line(e, f"no UIO device is named '{UIO_NAME}' (found: none)", "ternfpga board load", "of_id=generic-uio")
    b.add_uio(0, "axi-pmon")
    b.add_uio(3, "pynq")
    with pytest.raises(TernError) as e:
        Kv260Transport(tmp_path)
    one_line(e, "(found: axi-pmon (uio0), pynq (uio3))", f"xmutil loadapp {APP}")


def test_wrong_map_address_or_size(tmp_path):
    Board(tmp_path).add_uio(0, UIO_NAME, addr=0x8000_0000)
    with pytest.raises(TernError) as e:
        Kv260Transport(tmp_path)
    one_line(e, "maps 0x80000000", "registers are at 0xa0000000", "ternfpga board load")
    small = tmp_path / "small"
    Board(small).add_uio(0, UIO_NAME, size=0x40)
    with pytest.raises(TernError) as e:
        Kv260Transport(small)
    one_line(e, "maps 0x40 bytes", f"needs {regs.REGMAP.span:#x}")


@pytest.mark.parametrize("text,value", [("0x000000006fd00000\n", 0x6FD00000), (f"{0x6FD00000}\n", 0x6FD00000),
                                        ("0x0000000000010000", 0x10000), ("0X6FD00000", 0x6FD00000)])
def test_sysfs_numbers(text, value):
    assert kv260_sysfs.parse_int(text, "x") == value


@pytest.mark.parametrize("text", ["", "6fd00000", "0xzz", "-1"])
def test_sysfs_numbers_refused(text):
    with pytest.raises(TernError) as e:
        kv260_sysfs.parse_int(text, "phys_addr")
    one_line(e, "phys_addr reads", "not a hex")


@pytest.mark.parametrize("which", ["uio", "u-dma-buf"])
def test_permission_denied_names_the_device_and_the_udev_rule(board, monkeypatch, which):
    real = os.open
    target = board.regfile if which == "uio" else board.root / "dev" / UDMABUF_NAME

    def denying(path, flags, *a, **kw):
        if Path(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, flags, *a, **kw)

    monkeypatch.setattr(kv260_sysfs.os, "open", denying)
    with pytest.raises(TernError) as e:
        Kv260Transport(board.root).ddr
    one_line(e, f"permission denied opening {target}", "run as root", "udev rule", "docs/kv260.md")


# -- the DDR buffer --------------------------------------------------------------------------------
def test_ddr_maps_reads_and_writes(board):
    ddr = Kv260Ddr(board.root)
    try:
        assert ddr.phys == DDR_PHYS and ddr.size == DDR_SIZE
        ddr.write(0x1000, b"\x01\x02\x03")
        ddr.write(DDR_SIZE - 2, bytearray(b"\xaa\xbb"))
        ddr.write(0x2000, memoryview(np.arange(4, dtype="<u4")))
        assert ddr.read(0x1000, 3) == b"\x01\x02\x03" and ddr.read(0x2000, 16) == np.arange(4, dtype="<u4").tobytes()
        with open(board.root / "dev" / UDMABUF_NAME, "rb") as f:
            f.seek(0x1000)
            assert f.read(3) == b"\x01\x02\x03"
            f.seek(DDR_SIZE - 2)
            assert f.read() == b"\xaa\xbb"
        for op in (lambda: ddr.write(DDR_SIZE - 1, b"xy"), lambda: ddr.read(DDR_SIZE, 1),
                   lambda: ddr.read(-1, 1), lambda: ddr.sync_for_cpu(DDR_SIZE - 4, 8)):
            with pytest.raises(TernError) as e:
                op()
            one_line(e, "outside the u-dma-buf", f"'{UDMABUF_NAME}'", "larger buffer")
    finally:
        ddr.close()


def test_ddr_phys_addr_in_decimal(tmp_path):
    b = Board(tmp_path)
    b.add_udmabuf(phys=str(DDR_PHYS), size=1 << 20)
    ddr = Kv260Ddr(tmp_path)
    assert ddr.phys == DDR_PHYS and ddr.size == 1 << 20
    ddr.close()


def test_ddr_sync_writes_the_attributes(board):
    ddr = Kv260Ddr(board.root)
    ddr.sync_for_device(0x100, 0x40)
    assert [board.attr(a) for a in ("sync_offset", "sync_size", "sync_direction", "sync_for_device")] == \
        ["256", "64", "1", "1"]
    assert board.attr("sync_for_cpu") == "0"
    ddr.sync_for_cpu(0x2000)  # to the end of the buffer
    assert [board.attr(a) for a in ("sync_offset", "sync_size", "sync_direction", "sync_for_cpu")] == \
        [str(0x2000), str(DDR_SIZE - 0x2000), "2", "1"]
    ddr.close()


def test_udmabuf_discovery(tmp_path):
    b = Board(tmp_path)
    with pytest.raises(TernError) as e:
        Kv260Ddr(tmp_path)
    one_line(e, f"no u-dma-buf device is named '{UDMABUF_NAME}' (found: none)", "install the u-dma-buf")
    b.add_udmabuf("udmabuf0", size=1 << 20)
    ddr = Kv260Ddr(tmp_path)  # the only one there is
    assert ddr.dev.name == "udmabuf0" and ddr.size == 1 << 20
    ddr.close()
    b.add_udmabuf("udmabuf1", size=1 << 20)
    with pytest.raises(TernError) as e:
        Kv260Ddr(tmp_path)
    one_line(e, "(found: udmabuf0, udmabuf1)")


# -- the interrupt ---------------------------------------------------------------------------------
@pytest.fixture
def irq(board):
    """(transport, device end of the interrupt socket pair)."""
    host, device = socket.socketpair()
    t = Kv260Transport(board.root, CLOCK, irq_fd=host.fileno())
    yield t, device
    t.close()
    host.close()
    device.close()


def answer_arm(device: socket.socket, events: int = 1) -> threading.Thread:
    """The device: when the host arms the interrupt, raise it (the event count)."""
    def run():
        assert device.recv(4) == struct.pack("=I", 1)
        device.sendall(struct.pack("=I", events))
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def test_interrupt_arms_then_returns_the_event(irq):
    t, device = irq
    th = answer_arm(device)
    t0 = time.monotonic()
    assert t.wait_irq(int(CLOCK))  # a 1 s budget; the event comes at once
    assert time.monotonic() - t0 < 0.5
    th.join(1)


def test_interrupt_timeout_at_the_clock(irq, board):
    t, device = irq
    budget = int(0.05 * CLOCK)
    t0 = time.monotonic()
    assert not t.wait_irq(budget)
    dt = time.monotonic() - t0
    assert 0.05 + IRQ_FLOOR_S * 0.9 <= dt < 0.5, dt
    assert device.recv(4) == struct.pack("=I", 1)  # it armed
    # timed out, but the call had ended (an edge lost on the way): STATUS decides
    board.set_regs(STATUS=regs.STATUS_DONE)
    assert t.wait_irq(1000)
    board.set_regs(STATUS=regs.STATUS_DONE | regs.STATUS_BUSY)
    assert not t.wait_irq(1000)


def test_stale_interrupt_is_not_taken_for_the_next_call(irq):
    t, device = irq
    device.sendall(struct.pack("=I", 7))  # an event left from a wait that timed out
    assert not t.wait_irq(1000)


def test_interrupt_that_cannot_be_enabled(board, tmp_path):
    ro = os.open(tmp_path / "ro", os.O_RDONLY | os.O_CREAT)
    t = Kv260Transport(board.root, CLOCK, irq_fd=ro)
    try:
        with pytest.raises(TernError) as e:
            t.wait_irq(1000)
        one_line(e, "cannot enable the interrupt", "interrupts = <0 89 4>", "poll=True")
    finally:
        t.close()
        os.close(ro)


def test_poll_mode_reads_status(board):
    t = Kv260Transport(board.root, CLOCK, poll=True)
    try:
        t0 = time.monotonic()
        assert not t.wait_irq(int(0.02 * CLOCK))
        assert time.monotonic() - t0 >= 0.02 + IRQ_FLOOR_S * 0.9
        threading.Timer(0.03, lambda: board.set_regs(STATUS=regs.STATUS_DONE | regs.STATUS_ERROR)).start()
        t0 = time.monotonic()
        assert t.wait_irq(int(CLOCK))
        assert time.monotonic() - t0 < 0.5
    finally:
        t.close()


# -- identification through the transport ----------------------------------------------------------
def test_identification(board, transport):
    assert Driver(transport, PARAMS).params == PARAMS
    assert Driver(transport).params.digest() == PARAMS.digest()  # rebuilt from the registers
    board.set_regs(MAGIC=0x12345678)
    with pytest.raises(TernError) as e:
        Driver(transport)
    one_line(e, "MAGIC reads 0x12345678, expected 0x4e524554", f"kv260 {board.regfile}")


def test_wrong_numerics_version_names_both(board, transport):
    from ternfpga.sim.numerics.spec import NUMERICS_VERSION

    board.set_regs(VERSION=identification(PARAMS)["VERSION"] + 1)
    with pytest.raises(TernError) as e:
        Driver(transport, PARAMS)
    one_line(e, f"bitstream implements numerics version {NUMERICS_VERSION + 1}, this host implements "
                f"{NUMERICS_VERSION}")


def test_wrong_params_hash(board, transport):
    board.set_regs(PARAMS_HASH=PARAMS.digest() ^ 1)
    with pytest.raises(TernError) as e:
        Driver(transport, PARAMS)
    one_line(e, "not the bitstream's", "rtl accel")


# -- the backend -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from ternfpga.quant.image import ModelImage
    from ternfpga.sim.presets import preset_image

    return ModelImage.open(preset_image(tmp_path_factory.mktemp("kv260img"), "tiny-qwen2"))


def test_backend_refuses_a_model_larger_than_the_buffer(tmp_path, image):
    b = Board(tmp_path)
    b.add_uio(0, UIO_NAME)
    b.identify_as(PARAMS)
    dev = b.add_udmabuf(size=64 << 10)
    b.firmware(params=PARAMS)
    before = b.regfile.read_bytes()
    be = Kv260Backend(root=tmp_path)
    with pytest.raises(TernError) as e:
        be.load(image)
    one_line(e, "the model needs", f"the u-dma-buf '{UDMABUF_NAME}' holds 0.1 MiB", "larger buffer", "--max-ctx")
    assert not any(dev.read_bytes()) and b.regfile.read_bytes() == before  # nothing written
    assert be.driver is None


def test_backend_not_available_without_the_overlay(tmp_path, image):
    with pytest.raises(TernError) as e:
        Kv260Backend(root=tmp_path).load(image)
    one_line(e, "backend 'kv260' is not available: no UIO device is named", "ternfpga board load")


def test_backend_refuses_a_wrong_bitstream_before_writing(board, image):
    board.firmware(params=PARAMS.with_(max_ctx=64))  # accel.json of another bitstream
    with pytest.raises(TernError) as e:
        Kv260Backend(root=board.root).load(image)
    one_line(e, "not the bitstream's")
    assert not any((board.root / "dev" / UDMABUF_NAME).read_bytes()[:1 << 20])


class FakeDevice:
    """Ends every START at once: STATUS done, IRQ_STATUS, counters, a shortlist in the results region."""

    def __init__(self, board: Board, results: int, head_k: int):
        self.stop = threading.Event()
        self.starts = []
        with open(board.regfile, "r+b") as f:
            self.regs = np.frombuffer(mmap.mmap(f.fileno(), REG_SIZE), "<u4")
        with open(board.root / "dev" / UDMABUF_NAME, "r+b") as g:
            self.ddr = mmap.mmap(g.fileno(), DDR_SIZE)
        self.results, self.head_k = results, head_k
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        r = self.regs
        while not self.stop.is_set():
            if r[regs.CONTROL >> 2] & regs.CONTROL_START:
                r[regs.CONTROL >> 2] = 0
                self.starts.append((int(r[regs.POSITION >> 2]), int(r[regs.COUNT >> 2])))
                shortlist = np.zeros((self.head_k, 2), "<u4")
                shortlist[:, 0] = np.arange(self.head_k)[::-1] + 1
                shortlist[:, 1] = np.arange(self.head_k, dtype=np.int32)[::-1].astype("<u4")
                self.ddr[self.results:self.results + shortlist.nbytes] = shortlist.tobytes()
                r[regs.CYCLES_TOTAL_LO >> 2] = 5000
                r[regs.CYCLES_MATMUL_LO >> 2] = 3000
                r[regs.OPS_LO >> 2] = 42
                r[regs.IRQ_STATUS >> 2] = regs.IRQ_STATUS_DONE
                r[regs.STATUS >> 2] = regs.STATUS_DONE
            time.sleep(0.001)


def test_backend_loads_and_runs_a_call_with_the_unchanged_driver(board, image):
    board.firmware(params=PARAMS)
    be = Kv260Backend(root=board.root, poll=True)
    be.load(image)
    try:
        lay = be.driver.program.layout
        assert be.driver.params.digest() == PARAMS.digest() and be.max_ctx == min(PARAMS.max_ctx, 64)
        data = (board.root / "dev" / UDMABUF_NAME).read_bytes()
        assert data[lay.image:lay.image + lay.image_bytes] == Path(image.path).read_bytes()
        assert board.reg("DDR_BASE_LO") == DDR_PHYS and board.reg("DDR_BASE_HI") == 0
        assert board.reg("PROGRAM") == lay.program and board.reg("TOKENS") == lay.tokens
        assert board.attr("sync_for_device") == "1" and board.attr("sync_size") == str(lay.total)
        dev = FakeDevice(board, lay.results, lay.head_k)
        try:
            cand = be.prefill([3, 5, 7])
        finally:
            dev.stop.set()
            dev.th.join(1)
        assert dev.starts == [(0, 3)] and be.position == 3
        assert cand.ids.tolist()[:3] == [lay.head_k, lay.head_k - 1, lay.head_k - 2]
        assert np.frombuffer(board.root.joinpath("dev", UDMABUF_NAME).read_bytes()[lay.tokens:lay.tokens + 12],
                             "<u4").tolist() == [3, 5, 7]
        assert board.attr("sync_for_cpu") == "1" and board.attr("sync_direction") == "2"
        c = be.counters()["device"]
        assert c["clock_hz"] == CLOCK and c["prefill"]["cycles"] == 5000 and c["prefill"]["ops"] == 42
    finally:
        be.close()


def test_backend_watchdog_on_a_device_that_never_ends(board, image):
    be = Kv260Backend(root=board.root, poll=True)  # no accel.json: parameters from the registers
    be.load(image)
    try:
        assert be.driver.params.digest() == PARAMS.digest()
        be.driver.watchdog_factor = 0  # the budget is the floor: a few ms
        with pytest.raises(TernError) as e:
            be.decode(1)
        one_line(e, "did not finish within its watchdog budget", "did not stop")
        assert be.position == 0
    finally:
        be.close()


def test_clock_from_the_firmware_json(board):
    fw = board.firmware(params=PARAMS)
    doc = json.loads((fw / PARAMS_FILE).read_text())
    (fw / PARAMS_FILE).write_text(json.dumps(dict(doc, freq_mhz=187.5)))
    assert Kv260Backend(root=board.root).clock_hz == 187.5e6


# -- the command line ------------------------------------------------------------------------------
def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def clean_error(rc: int, out: str, err: str, *keywords: str) -> str:
    assert rc == 2 and out == "" and "Traceback" not in err, (rc, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "; " in lines[0], err
    for k in keywords:
        assert k in lines[0], f"{k!r} not in: {lines[0]}"
    return lines[0]


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """A bin folder on PATH for stand-in xmutil / fpgautil scripts that log their arguments."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "tools.log"
    monkeypatch.setenv("PATH", str(bindir))

    def add(name: str, fail: str | None = None, code: int = 3) -> None:
        body = f'echo "{name} $*" >> "{log}"\n'
        if fail is not None:
            body += f'case "$*" in {fail}*) echo "working..."; echo "{name}: $* refused" >&2; exit {code};; esac\n'
        p = bindir / name
        p.write_text("#!/bin/sh\n" + body + "exit 0\n")
        p.chmod(0o755)

    add.log = lambda: log.read_text().splitlines() if log.exists() else []
    return add


def test_board_load_with_xmutil(capsys, board, tools):
    board.firmware(BITSTREAM, OVERLAY, "shell.json")
    tools("xmutil")
    tools("fpgautil")
    rc, out, err = run_cli(capsys, "board", "load", "--root", board.root)
    assert rc == 0, err
    assert tools.log() == ["xmutil unloadapp", f"xmutil loadapp {APP}"]
    assert len(out.splitlines()) == 1 and out.startswith(f"loaded {APP} with xmutil")
    assert f"uio0 at {REG_BASE:#x}" in out and f"'{UDMABUF_NAME}' at {DDR_PHYS:#x} (64.0 MiB)" in out


def test_board_load_with_fpgautil(capsys, board, tools):
    fw = board.firmware(BITSTREAM, OVERLAY, "shell.json")
    tools("fpgautil", fail="-R")  # nothing loaded: the first -R fails, the load goes on
    rc, out, err = run_cli(capsys, "board", "load", "--root", board.root)
    assert rc == 0, err
    assert tools.log() == ["fpgautil -R", f"fpgautil -b {fw / BITSTREAM} -o {fw / OVERLAY}"]
    assert out.startswith(f"loaded {APP} with fpgautil")


def test_board_load_missing_firmware(capsys, board, tools):
    board.firmware(OVERLAY)
    tools("xmutil")
    rc, out, err = run_cli(capsys, "board", "load", "--root", board.root)
    clean_error(rc, out, err, f"lacks {BITSTREAM}, shell.json", f"copy deploy/{APP}/", "ternfpga build kv260",
                FIRMWARE_DIR)
    assert tools.log() == []


def test_board_load_failing_tool(capsys, board, tools):
    board.firmware(BITSTREAM, OVERLAY, "shell.json")
    tools("xmutil", fail="loadapp", code=5)
    rc, out, err = run_cli(capsys, "board", "load", "--root", board.root)
    clean_error(rc, out, err, f"`xmutil loadapp {APP}` failed with exit code 5: xmutil: loadapp {APP} refused",
                "sudo")


def test_board_load_without_uio(capsys, tmp_path, tools, monkeypatch):
    import ternfpga.host.commands.board as cmd

    monkeypatch.setattr(cmd, "UIO_WAIT_S", 0.1)
    b = Board(tmp_path / "root")
    b.add_uio(0, "axi-pmon")
    b.firmware(BITSTREAM, OVERLAY, "shell.json")
    tools("xmutil")
    rc, out, err = run_cli(capsys, "board", "load", "--root", b.root)
    clean_error(rc, out, err, f"no UIO device named '{UIO_NAME}' appeared", "(found: axi-pmon (uio0))",
                "modprobe uio_pdrv_genirq of_id=generic-uio")


def test_board_without_tools(capsys, board, tools):
    board.firmware(BITSTREAM, OVERLAY, "shell.json")
    for action in ("load", "unload"):
        rc, out, err = run_cli(capsys, "board", action, "--root", board.root)
        clean_error(rc, out, err, "neither xmutil nor fpgautil is on PATH", "Kria Ubuntu")


def test_board_unload(capsys, board, tools):
    tools("xmutil")
    rc, out, err = run_cli(capsys, "board", "unload")
    assert rc == 0 and out == "unloaded the overlay with xmutil\n" and tools.log() == ["xmutil unloadapp"]
    tools("xmutil", fail="unloadapp", code=1)
    rc, out, err = run_cli(capsys, "board", "unload")
    clean_error(rc, out, err, "`xmutil unloadapp` failed with exit code 1: xmutil: unloadapp refused")


def test_board_status(capsys, board):
    board.firmware(BITSTREAM, OVERLAY, "shell.json", params=PARAMS)
    fpga = board.root / "sys/class/fpga_manager/fpga0"
    fpga.mkdir(parents=True)
    (fpga / "state").write_text("operating\n")
    rc, out, err = run_cli(capsys, "board", "status", "--root", board.root, "--json")
    assert rc == 0, err
    st = json.loads(out)
    assert st["ready"] is True and st["fpga_manager"] == {"state": "operating"}
    assert all(st["firmware"]["files"].values()) and st["firmware"]["params"]["params_hash"] == PARAMS.digest()
    assert st["uio"]["node"] == "uio0" and st["uio"]["addr"] == REG_BASE and st["uio"]["size"] == REG_SIZE
    assert st["udmabuf"] == {"name": UDMABUF_NAME, "dev": str(board.root / "dev" / UDMABUF_NAME),
                             "phys_addr": DDR_PHYS, "size": DDR_SIZE}
    d = st["device"]
    assert d["ok"] and d["magic"] == regs.MAGIC_VALUE and d["params_hash"] == PARAMS.digest()
    rc, out, err = run_cli(capsys, "board", "status", "--root", board.root)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[-1] == "ready      yes"
    assert any(ln.startswith("device     MAGIC 0x4e524554") for ln in lines), out
    assert any(ln.startswith("params     batch 4, max hidden 128") for ln in lines), out
    assert f"uio        uio0 '{UIO_NAME}' at 0xa0000000 (0x10000 bytes)" in lines


def test_board_status_wrong_bitstream_and_nothing_loaded(capsys, board, tmp_path):
    board.firmware(params=PARAMS.with_(max_ctx=64))
    board.set_regs(MAGIC=0)
    rc, out, err = run_cli(capsys, "board", "status", "--root", board.root, "--json")
    d = json.loads(out)["device"]
    assert rc == 0 and not d["ok"] and "MAGIC reads 0x00000000" in d["problem"] and "PARAMS_HASH" in d["problem"]
    rc, out, err = run_cli(capsys, "board", "status", "--root", tmp_path / "empty")
    assert rc == 0, err
    assert "absent" in out and "no UIO device is named" in out and "ready      no" in out


def test_accel_applies_to_kv260_only_among_the_device_backends(capsys, image):
    rc, out, err = run_cli(capsys, "generate", "--model", image.path, "--prompt-ids", "1", "--backend", "ref",
                           "--accel", "x.json")
    clean_error(rc, out, err, "--accel does not apply to the ref backend", "--backend sim or kv260")


def test_accel_is_read_for_kv260(capsys, image, tmp_path):
    from ternfpga.rtl.generate import accel_metadata

    path = tmp_path / "accel.json"
    path.write_text(json.dumps(accel_metadata(PARAMS)))
    rc, out, err = run_cli(capsys, "generate", "--model", image.path, "--prompt-ids", "1", "--backend", "kv260",
                           "--accel", tmp_path / "missing.json")
    clean_error(rc, out, err, "missing.json' do not exist")
    if Path("/sys/class/uio").is_dir():
        pytest.skip("this machine has UIO devices: the rest needs a machine without the overlay")
    rc, out, err = run_cli(capsys, "generate", "--model", image.path, "--prompt-ids", "1", "--backend", "kv260",
                           "--accel", path)
    clean_error(rc, out, err, "backend 'kv260' is not available: no UIO device is named")
