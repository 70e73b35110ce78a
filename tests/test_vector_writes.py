"""KV_WRITE and STORE op units in the Amaranth simulator, against sim/isa_model.py under random AXI
write stalls and BRESP latency (tests/vector_bench.py)."""
from __future__ import annotations

import numpy as np
import pytest

from ternfpga.rtl.control.isa import Descriptor, ErrorCode, Flag, Op, StoreMode
from ternfpga.rtl.vector import KvWriteOp, StoreOp
from ternfpga.sim.isa_model import Ctx
from ternfpga.sim.models.vmem import to_words

from vector_bench import DDR_BASE, PARAMS, Bench, Case, expect_ok, region_bursts

S = PARAMS.max_ctx  # positions per KV head


def kv_regions(d: Descriptor, c: Ctx) -> list[tuple[int, int]]:
    """The DDR byte regions a KV_WRITE writes, in the order the unit writes them."""
    out = []
    for t in (range(c.T - 1, c.T) if d.flags & Flag.LAST_TOKEN else range(c.T)):
        for h in range(d.kv_heads):
            slot = h * d.stride + c.pos0 + t
            out += [(d.addr0 + slot * d.k, d.addr0 + (slot + 1) * d.k), (d.addr1 + 4 * slot, d.addr1 + 4 * slot + 4)]
    return out


def store_regions(d: Descriptor, c: Ctx) -> list[tuple[int, int]]:
    size = d.n * (1 if d.mode == StoreMode.I8 else 4)
    ts = range(c.T - 1, c.T) if d.flags & Flag.LAST_TOKEN else range(c.T)
    return [(d.addr0 + (c.tok0 + t) * d.stride, d.addr0 + (c.tok0 + t) * d.stride + size) for t in ts]


def make_checker(regions_of):
    def check(bench: Bench, case: Case, model, res: dict) -> None:
        what = case.desc.note
        bench.assert_vmem(model, what)  # nothing written to VMEM
        want = bytearray(model.ddr)
        failed = []
        for lo, hi in regions_of(case.desc, case.ctx):
            for a, n in region_bursts(lo, hi):
                if any(elo < a + 16 * n and a < ehi for elo, ehi in case.write_errors or ()):
                    failed.append(a)
                    want[a:a + 16 * n] = bench.before[a:a + 16 * n]  # a failing burst writes nothing
        bench.assert_ddr(want, what)
        if failed:
            assert res["error"] == ErrorCode.AXI_WRITE, f"{what}: error {res['error']}, expected AXI_WRITE"
            assert res["error_addr"] == DDR_BASE + failed[0], \
                f"{what}: error_addr {res['error_addr']:#x}, expected {DDR_BASE + failed[0]:#x}"
        else:
            expect_ok(res, what)
    return check


def run_cases(dut, cases, seed, stalls, regions_of, params=PARAMS):
    """``stalls``: False, True (random AXI stalls) or "slow" (W mostly stalled: the writer's FIFO fills and
    the unit is back-pressured)."""
    slow = stalls == "slow"
    bench = Bench(dut, params, seed=seed, stalls=bool(stalls), latency=(20, 60) if slow else (1, 30),
                  w_stall=0.9 if slow else None)
    rng = np.random.default_rng(seed)
    for c in cases:
        c.prepare(bench, rng)
    return bench.run([c.case for c in cases], make_checker(regions_of))


class Plan:
    def __init__(self, case: Case, vmem: list[tuple[int, int]]):
        self.case, self.vmem = case, vmem

    def prepare(self, bench: Bench, rng: np.random.Generator) -> None:
        for addr, n in self.vmem:
            bench.vmem.words[addr:addr + n] = to_words(rng.integers(-(1 << 31), 1 << 31, (n, bench.p.batch)))


# -- KV_WRITE --------------------------------------------------------------------------------------
def kv_plans(B: int = PARAMS.batch) -> list[Plan]:
    plans = []
    # (kv_heads, k, src, aux, rows, scales, T, flags, pos0)
    for i, (kvh, k, src, aux, rows, scales, T, flags, pos0) in enumerate([
        (2, 64, 0, 200, 0x0000, 0x8004, B, 0, 0),  # position 0, scales at +4 in their beat
        (1, 128, 300, 500, 0x2000, 0x9008, B, 0, S - B),  # the cache's last positions
        (2, 16, 600, 700, 0x4000, 0x900C, 1, 0, 9),  # T < B
        (2, 128, 800, 1100, 0x4000, 0x9100, B, Flag.LAST_TOKEN, 30),
        (1, 16, 1200, 1300, 0x6FF0, 0xA000, B, 0, 0),  # a row at the end of a 4 KiB page
    ]):
        d = Descriptor(Op.KV_WRITE, flags=flags, kv_heads=kvh, k=k, src=src, aux=aux, stride=S, addr0=rows,
                       addr1=scales, note=f"kv {i} kv_heads={kvh} k={k}")
        plans.append(Plan(Case(d, Ctx(T=T, pos0=pos0, tok0=0, last_block=True)), [(src, kvh * k), (aux, kvh)]))
    # write errors: one K row and one scale fail; the op still writes everything else
    d = Descriptor(Op.KV_WRITE, kv_heads=2, k=64, src=0, aux=200, stride=S, addr0=0x0000, addr1=0x8004,
                   note="kv write error")
    c = Ctx(T=B, pos0=20, tok0=0, last_block=True)
    errs = [(0x0000 + (S + 21) * 64 + 5, 0x0000 + (S + 21) * 64 + 6), (0x8004 + 4 * 20, 0x8004 + 4 * 20 + 1)]
    plans.append(Plan(Case(d, c, write_errors=errs), [(0, 128), (200, 2)]))
    return plans


@pytest.mark.parametrize("seed, stalls", [(5, True), (6, False), (9, "slow")])
def test_kv_write(seed, stalls):
    # (a KV_WRITE's at most 36 beats fit in the writer's FIFO: "slow" checks long W/B waits only)
    results = run_cases(KvWriteOp(PARAMS), kv_plans(), seed, stalls, kv_regions)
    if not stalls:
        big = results[1]  # 1 head of 128 per token: one word per cycle, plus the setup and last BRESP
        words = (128 + 1) * PARAMS.batch
        assert big["cycles"] < words + 80, f"{big['cycles']} cycles for {words} words"


# -- STORE -----------------------------------------------------------------------------------------
def store_plans(B: int = PARAMS.batch) -> list[Plan]:
    plans = []
    # (mode, n, src, addr0, stride, T, flags, tok0)
    for i, (mode, n, src, addr0, stride, T, flags, tok0) in enumerate([
        (StoreMode.I32, 128, 0, 0x1000, 512, B, 0, 0),
        (StoreMode.I8, 128, 200, 0x2000, 128, B, 0, 5),
        (StoreMode.I32, 5, 400, 0x3000, 32, B, 0, 1),  # a partial last beat
        (StoreMode.I8, 37, 500, 0x3800, 48, 1, 0, 0),  # T < B
        (StoreMode.I32, 1, 600, 0x4000, 16, B, Flag.LAST_TOKEN, 7),  # a single word
        (StoreMode.I8, 19, 700, 0x4803, 64, B, 0, 2),  # rows at byte offset 3
        (StoreMode.I32, 9, 800, 0x5004, 48, B, 0, 0),  # rows at byte offset 4
        (StoreMode.I32, 600, 1000, 0x6000, 2400, B, 0, 3),  # long rows across 4 KiB pages
        (StoreMode.I8, 0, 0, 0x1000, 16, B, 0, 0),  # nothing to do
    ]):
        d = Descriptor(Op.STORE, mode=int(mode), flags=flags, n=n, src=src, addr0=addr0, stride=stride,
                       note=f"store {i} {mode.name} n={n}")
        plans.append(Plan(Case(d, Ctx(T=T, pos0=0, tok0=tok0, last_block=True)), [(src, max(n, 1))]))
    d = Descriptor(Op.STORE, mode=int(StoreMode.I32), n=100, src=0, addr0=0x1000, stride=512, note="store write error")
    errs = [(0x1000 + 512 + 300, 0x1000 + 512 + 301)]
    plans.append(Plan(Case(d, Ctx(T=B, pos0=0, tok0=0, last_block=True), write_errors=errs), [(0, 100)]))
    return plans


@pytest.mark.parametrize("seed, stalls", [(7, True), (8, False), (10, "slow")])
def test_store(seed, stalls):
    results = run_cases(StoreOp(PARAMS), store_plans(), seed, stalls, store_regions)
    if stalls == "slow":
        assert sum(r["stalls"] for r in results) > 0, "the slow DDR never back-pressured the unit"
    if not stalls:
        big = results[7]
        words = 600 * PARAMS.batch
        assert big["cycles"] < words + 80, f"{big['cycles']} cycles for {words} words"


def test_single_lane():
    """B = 1: the lane pick and the token cursor degenerate to one lane."""
    params = PARAMS.with_(batch=1)
    run_cases(KvWriteOp(params), kv_plans(1)[:3], 13, True, kv_regions, params)
    run_cases(StoreOp(params), store_plans(1)[:3], 14, True, store_regions, params)
