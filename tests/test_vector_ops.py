"""BIAS and ROPE op units in the Amaranth simulator, against sim/isa_model.py under random AXI latency
and stalls (tests/vector_bench.py)."""
from __future__ import annotations

import numpy as np
import pytest

from ternfpga.rtl.control.isa import Descriptor, ErrorCode, Flag, Op
from ternfpga.rtl.vector import BiasOp, RopeOp
from ternfpga.sim.isa_model import Ctx
from ternfpga.sim.models.vmem import to_words

from vector_bench import DDR_BASE, PARAMS, Bench, Case, expect_ok, region_bursts

EXTREMES = np.array([(1 << 31) - 1, -(1 << 31), (1 << 31) - 2, -(1 << 31) + 1, 0, -1, 1], np.int64)


def put_i32(ddr: bytearray, off: int, values) -> None:
    ddr[off:off + 4 * len(values)] = np.asarray(values, np.int64).astype("<i4").tobytes()


def fill_vmem(bench: Bench, addr: int, n: int, rng: np.random.Generator) -> None:
    """Random words with the int32 extremes sprinkled in, every lane."""
    B = bench.p.batch
    v = rng.integers(-(1 << 31), 1 << 31, (n, B))
    v[rng.random((n, B)) < 0.1] = rng.choice(EXTREMES)
    bench.vmem.words[addr:addr + n] = to_words(v)


def checker(bench: Bench, case: Case, model, res: dict) -> None:
    what = case.desc.note
    bench.assert_vmem(model, what)
    if case.read_errors:
        assert res["error"] == ErrorCode.AXI_READ, f"{what}: error {res['error']}, expected AXI_READ"
        assert res["error_addr"] == DDR_BASE + case.error_addr, f"{what}: error_addr {res['error_addr']:#x}"
    else:
        expect_ok(res, what)


def first_error_burst(lo: int, hi: int, err: int) -> int:
    """The DDR offset of the burst, of a read of bytes [lo, hi), that holds the beat at ``err``."""
    return next(a for a, n in region_bursts(lo, hi) if a <= err < a + 16 * n)


# -- BIAS ------------------------------------------------------------------------------------------
def bias_cases(bench: Bench, rng: np.random.Generator) -> list[Case]:
    cases = []
    B = bench.p.batch
    # (n, src, dst, addr0, T, flags, pos0)
    plans = [
        (128, 0, 0, 0x1000, B, 0),  # in place, beat-aligned table, every lane
        (37, 200, 300, 0x2004, B, 0),  # disjoint, table at +4
        (64, 400, 400, 0x300C, 1, 0),  # T < B
        (53, 500, 500, 0x4001, B, Flag.LAST_TOKEN),  # odd byte offset: elements cross beats
        (1, 600, 601, 0x5FFE, B, 0),  # a single element across a 4 KiB boundary, 2-byte offset
        (PARAMS.max_q_dim, 1000, 1000, 0x6FF0, B, 0),  # the largest q, crossing 4 KiB
        (0, 0, 0, 0x1000, B, 0),  # nothing to do
    ]
    for i, (n, src, dst, addr0, T, flags) in enumerate(plans):
        fill_vmem(bench, src, max(n, 1), rng)
        b = rng.integers(-(1 << 31), 1 << 31, n)
        b[rng.random(n) < 0.15] = rng.choice(EXTREMES)
        put_i32(bench.ddr, addr0, b)
        d = Descriptor(Op.BIAS, flags=flags, n=n, src=src, dst=dst, addr0=addr0, note=f"bias {i} n={n}")
        cases.append(Case(d, Ctx(T=T, pos0=3, tok0=0, last_block=True)))
    # a read error: the op completes (the errored beat's data is still used) and names the burst
    n, addr0 = 300, 0x7F00
    fill_vmem(bench, 1500, n, rng)
    err = addr0 + 0x130
    d = Descriptor(Op.BIAS, n=n, src=1500, dst=1500, addr0=addr0, note="bias read error")
    cases.append(Case(d, Ctx(T=B, pos0=0, tok0=0, last_block=True), read_errors={err},
                      error_addr=first_error_burst(addr0, addr0 + 4 * n, err)))
    return cases


@pytest.mark.parametrize("seed, stalls", [(1, True), (2, False)])
def test_bias(seed, stalls):
    dut = BiasOp(PARAMS)
    bench = Bench(dut, seed=seed, stalls=stalls)
    rng = np.random.default_rng(seed)
    cases = bias_cases(bench, rng)
    results = bench.run(cases, checker)
    if not stalls:
        # throughput: about one element per cycle once the first beat is in
        big = results[5]
        elems = PARAMS.max_q_dim * PARAMS.batch
        assert big["cycles"] < elems + 80, f"{big['cycles']} cycles for {elems} elements"


# -- ROPE ------------------------------------------------------------------------------------------
def put_table(bench: Bench, off: int, rows: int, half: int, rng: np.random.Generator) -> None:
    """A random int16 table [rows, half] at DDR ``off``, with the int16 extremes sprinkled in."""
    t = rng.integers(-(1 << 14), (1 << 14) + 1, (rows, half))
    t[rng.random((rows, half)) < 0.05] = rng.choice([-(1 << 15), (1 << 15) - 1, 1 << 14, -(1 << 14)])
    bench.ddr[off:off + 2 * t.size] = t.astype("<i2").tobytes()


def rope_cases(bench: Bench, rng: np.random.Generator) -> list[Case]:
    cases = []
    B = bench.p.batch
    ctx_max = PARAMS.max_ctx
    # (heads, k, src, dst, cos, sin, T, flags, pos0)
    plans = [
        (4, 64, 0, 0, 0x1000, 0x3000, B, 0, 0),  # in place, aligned tables, position 0
        (2, 128, 300, 300, 0x5002, 0x8006, B, 0, ctx_max - B),  # 2-byte-offset tables, the table's end
        (1, 16, 700, 800, 0xB00F, 0xC001, 1, 0, 5),  # odd offsets: entries cross beats; T < B; disjoint
        (4, 128, 900, 900, 0x1000, 0x5002, B, Flag.LAST_TOKEN, ctx_max - B),  # (tables reused)
        (3, 16, 1500, 1500, 0xD000, 0xD100, B, 0, 2),
        (0, 64, 0, 0, 0x1000, 0x3000, B, 0, 0),  # no heads: nothing to do
    ]
    tables = {}
    for i, (heads, k, src, dst, cos, sin, T, flags, pos0) in enumerate(plans):
        for off in (cos, sin):
            if tables.get(off) != k:
                put_table(bench, off, ctx_max, k // 2, rng)
                tables[off] = k
        fill_vmem(bench, src, max(heads * k, 1), rng)
        d = Descriptor(Op.ROPE, flags=flags, heads=heads, k=k, src=src, dst=dst, addr0=cos, addr1=sin,
                       note=f"rope {i} heads={heads} k={k}")
        cases.append(Case(d, Ctx(T=T, pos0=pos0, tok0=0, last_block=True)))
    # a read error in the second token's sin row
    heads, k, cos, sin, pos0 = 2, 64, 0x1000, 0x3000, 7
    fill_vmem(bench, 2000, heads * k, rng)
    err = sin + (pos0 + 1) * k + 16
    d = Descriptor(Op.ROPE, heads=heads, k=k, src=2000, dst=2000, addr0=cos, addr1=sin, note="rope read error")
    cases.append(Case(d, Ctx(T=B, pos0=pos0, tok0=0, last_block=True), read_errors={err},
                      error_addr=first_error_burst(sin + (pos0 + 1) * k, sin + (pos0 + 1) * k + k, err)))
    return cases


@pytest.mark.parametrize("seed, stalls", [(3, True), (4, False)])
def test_rope(seed, stalls):
    dut = RopeOp(PARAMS)
    bench = Bench(dut, seed=seed, stalls=stalls)
    rng = np.random.default_rng(seed)
    results = bench.run(rope_cases(bench, rng), checker)
    if not stalls:
        # throughput: one element per cycle once the first token's two rows (k/2 cycles) are in
        big = results[1]
        elems = 2 * 128 * PARAMS.batch
        assert big["cycles"] < elems + 64 + 80, f"{big['cycles']} cycles for {elems} elements"


def test_single_lane():
    """B = 1: the lane pick and the token cursor degenerate to one lane."""
    params = PARAMS.with_(batch=1)
    for unit, cases, seed in ((BiasOp, bias_cases, 11), (RopeOp, rope_cases, 12)):
        bench = Bench(unit(params), params, seed=seed)
        rng = np.random.default_rng(seed)
        bench.run(cases(bench, rng)[:3], checker)
