"""Amaranth-simulator bench for one op unit of the accelerator: VMEM model, AXI read/write DDR models
over one bytearray, descriptors run one after another, each checked against sim/isa_model.py."""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.control.isa import Descriptor, ErrorCode
from ternfpga.sim.isa_model import Ctx, IsaModel
from ternfpga.sim.models.axi_mem import AxiReadMemory, AxiWriteMemory
from ternfpga.sim.models.op_unit import run_op
from ternfpga.sim.models.vmem import VmemModel, from_words, to_words

PARAMS = AccelParams(batch=2, max_hidden=128, max_ffn=256, max_heads=4, max_kv_heads=2, max_head_dim=128,
                     max_ctx=64, max_vocab=512, max_layers=2)
DDR_BASE = 0x3_4560_0000  # exercises the upper address bits
DDR_BYTES = 64 * 1024
BEAT = 16
MAX_BURST = 16  # the units' AXI masters


@dataclass
class Case:
    """One descriptor run: the DDR/VMEM contents are whatever the bench holds when it starts."""

    desc: Descriptor
    ctx: Ctx
    read_errors: set[int] | None = None  # DDR offsets of beats answered SLVERR
    write_errors: list[tuple[int, int]] | None = None  # DDR offset ranges whose bursts answer SLVERR
    error_addr: int | None = None  # the DDR offset the op must report with its error


def bursts(offset: int, beats: int) -> list[tuple[int, int]]:
    """How an AXI master splits a command of ``beats`` from DDR ``offset`` (beat-aligned): (offset,
    beats) bursts of at most MAX_BURST that do not cross 4 KiB (DDR_BASE is 4 KiB aligned)."""
    out = []
    while beats:
        n = min(beats, MAX_BURST, (4096 - offset % 4096) // BEAT)
        out.append((offset, n))
        offset, beats = offset + n * BEAT, beats - n
    return out


def region_bursts(lo: int, hi: int) -> list[tuple[int, int]]:
    """Bursts of a command covering DDR bytes [lo, hi)."""
    a = lo // BEAT * BEAT
    return bursts(a, -(-(hi - a) // BEAT))


class Bench:
    def __init__(self, dut, params: AccelParams = PARAMS, *, seed: int = 0, latency=(1, 30),
                 stalls: bool = True, w_stall: float | None = None):
        self.dut, self.p = dut, params
        self.rng = np.random.default_rng(seed)
        self.ddr = bytearray(random.Random(seed).randbytes(DDR_BYTES))
        self.vmem = VmemModel(params.batch, params.vmem_words, read=dut.vr, write=getattr(dut, "vw", None))
        self.vmem.words[:] = self.rng.integers(0, 1 << 32, self.vmem.words.shape)
        s = 0.3 if stalls else 0.0
        self.rmem = self.wmem = None
        if hasattr(dut, "axi"):
            self.rmem = AxiReadMemory(dut.axi, self.ddr, DDR_BASE, seed=seed + 1, ar_stall=s, latency=latency,
                                      r_gap=s * 0.7)
        if hasattr(dut, "axiw"):
            self.wmem = AxiWriteMemory(dut.axiw, self.ddr, DDR_BASE, seed=seed + 2, aw_stall=s,
                                       w_stall=s * 0.7 if w_stall is None else w_stall, latency=latency)
        self.results: list[dict] = []

    # -- expected ---------------------------------------------------------------------------------
    def model(self) -> IsaModel:
        """The ISA model on a copy of the bench's state; ``before`` keeps the DDR as it is now."""
        self.before = bytes(self.ddr)
        m = IsaModel(self.p, bytearray(self.ddr))
        m.vmem = from_words(self.vmem.words).copy()
        return m

    # -- running ----------------------------------------------------------------------------------
    async def run_case(self, ctx, case: Case, limit: int = 20_000) -> dict:
        dut = self.dut
        if self.rmem is not None:
            self.rmem.error_addrs = {DDR_BASE + a for a in (case.read_errors or ())}
        if self.wmem is not None:
            self.wmem.error_ranges = [(DDR_BASE + lo, DDR_BASE + hi) for lo, hi in (case.write_errors or ())]
        c = case.ctx
        r = await run_op(ctx, dut, case.desc, {"T": c.T, "pos0": c.pos0, "tok0": c.tok0, "last_block": c.last_block,
                                               "ddr_base": DDR_BASE}, limit=limit, idle_after=1)
        # cycles counted as before: start edge to done, the done cycle not included
        return {"error": r.error, "error_addr": r.error_addr, "cycles": r.cycles - 1, "stalls": r.stalls}

    def run(self, cases: list[Case], check) -> list[dict]:
        """Run ``cases`` in one simulation; ``check(bench, case, model, result)`` after each (``model``:
        the ISA model's state after the op, started from the bench's state before it)."""
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        self.vmem.attach(sim)
        for mem in (self.rmem, self.wmem):
            if mem is not None:
                mem.attach(sim)

        async def main(ctx):
            for case in cases:
                model = self.model()
                model.execute(case.desc, case.ctx)
                res = await self.run_case(ctx, case)
                check(self, case, model, res)
                self.results.append(res)

        sim.add_testbench(main)
        sim.run()
        return self.results

    # -- checks -----------------------------------------------------------------------------------
    def assert_vmem(self, model: IsaModel, what: str = "") -> None:
        want = to_words(model.vmem)
        bad = np.argwhere(want != self.vmem.words)
        if len(bad):
            a, t = bad[0]
            raise AssertionError(f"{what}: {len(bad)} VMEM words differ, first at {a} lane {t}: "
                                 f"{int(self.vmem.words[a, t]):#x}, expected {int(want[a, t]):#x}")

    def assert_ddr(self, want: bytes | bytearray, what: str = "") -> None:
        if bytes(self.ddr) != bytes(want):
            diff = [i for i in range(len(want)) if self.ddr[i] != want[i]]
            raise AssertionError(f"{what}: {len(diff)} DDR bytes differ, first at {diff[0]:#x}: "
                                 f"{self.ddr[diff[0]]:#x}, expected {want[diff[0]]:#x}")


def expect_ok(res: dict, what: str = "") -> None:
    assert res["error"] == ErrorCode.OK, f"{what}: error {res['error']} at {res['error_addr']:#x}"
