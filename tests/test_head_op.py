"""The HEAD op unit in the Amaranth simulator: the real top-K selector filled with ternary scores, int8
head rows and pf scales in a DDR model with random latency and stalls, x8 and S_x in a VMEM model;
the DDR result is compared byte for byte with sim/golden/head.py ``shortlist``."""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.control.isa import ErrorCode, Op
from ternfpga.rtl.head import TopK
from ternfpga.rtl.head.op import HeadOp
from ternfpga.sim.golden.head import shortlist, top_k_indices
from ternfpga.sim.isa_model import pf_word
from ternfpga.sim.models.axi_mem import AxiReadMemory, AxiWriteMemory
from ternfpga.sim.models.op_unit import run_op
from ternfpga.sim.models.vmem import VmemModel
from ternfpga.sim.numerics import pf
from ternfpga.sim.numerics.pf import PF

P = AccelParams(batch=2, max_hidden=128, max_ffn=256, max_heads=4, max_kv_heads=2, max_head_dim=32, max_ctx=32,
                max_vocab=512, max_head_k=64, max_layers=2)
BASE = 0x12_3400_0000  # DDR_BASE: exercises the upper address bits
ADDR0 = 0x100  # int8 rows
ADDR1 = 0x1_0104  # u32 scales: not beat aligned, so the scale's word in its beat varies
ADDR2 = 0x1_1000  # results, 4 KiB aligned
MEM_BYTES = 0x1_2000
SRC, AUX = 40, 7  # VMEM word addresses of x8 and S_x


@dataclass
class Case:
    n: int
    head8: np.ndarray  # int8 [vocab, n]
    scales: PF  # per row
    x8: np.ndarray  # [n]
    x_scale: PF
    scores: np.ndarray  # ternary scores [vocab]


def make_case(rng: np.random.Generator, vocab: int, n: int, *, dup: int = 0, zero_x: bool = False,
              x_scale: float | None = None) -> Case:
    """Head rows quantized as the quantizer does (S_r = from_float(max|row| / 127)); ``dup`` rows copy
    the best-scored row (equal logits); ternary scores with ties."""
    rows = rng.normal(0, 0.05, (vocab, n)) * rng.uniform(0.2, 3, (vocab, 1))
    scores = rng.integers(-400, 400, vocab)
    if dup:
        best = top_k_indices(scores, 1)[0]
        for r in rng.choice(vocab, dup, replace=False):
            rows[r] = rows[best]
            scores[r] = scores[best] - int(rng.integers(0, 3))
    if vocab > 8:
        rows[rng.integers(vocab)] = 0  # a zero row: scale 0
    scales = pf.from_float(np.abs(rows).max(axis=1) / 127)
    head8 = np.clip(np.round(rows / np.where(scales.m == 0, 1, scales.to_float())[:, None]), -127, 127)
    head8 = head8.astype(np.int8)
    x8 = np.zeros(n, np.int64) if zero_x else rng.integers(-127, 128, n)
    xs = pf.from_float(np.float64(x_scale if x_scale is not None else rng.uniform(0.005, 0.05)))
    return Case(n, head8, scales, x8, xs, scores)


class Bench:
    """HeadOp with a real TopK on its candidate port, a shared DDR bytearray and a VMEM model."""

    def __init__(self, seed: int, *, params: AccelParams = P, read_latency=(1, 30), write_latency=(1, 20),
                 ar_stall=0.3, r_gap=0.2, read_errors=None, write_errors=None):
        self.p = params
        self.op = op = HeadOp(params)
        self.topk = topk = TopK(params.max_head_k, params.engine.row_width, params.engine.acc_width)
        self.top = m = Module()
        m.submodules.op, m.submodules.topk = op, topk
        m.d.comb += [topk.rd_addr.eq(op.cand_addr), op.cand_data.eq(topk.rd_data), op.cand_count.eq(topk.count)]
        self.rng = random.Random(seed)
        self.mem = bytearray(random.Random(seed + 1).randbytes(MEM_BYTES))
        self.rd = AxiReadMemory(op.axi, self.mem, BASE, seed=seed + 2, latency=read_latency, ar_stall=ar_stall,
                                r_gap=r_gap, error_addrs=read_errors)
        self.wr = AxiWriteMemory(op.axiw, self.mem, BASE, seed=seed + 3, latency=write_latency,
                                 error_ranges=write_errors)
        self.vmem = VmemModel(params.batch, params.vmem_words, read=op.vr)

    def load(self, case: Case, T: int) -> None:
        """Rows, scales and garbage results in DDR; x8 and S_x in lane T - 1, other lanes garbage."""
        vocab, n = case.head8.shape
        self.mem[ADDR0:ADDR0 + vocab * n] = case.head8.tobytes()
        words = pf_word(case.scales) & 0xFFFF_FFFF
        self.mem[ADDR1:ADDR1 + 4 * vocab] = words.astype("<u4").tobytes()
        self.mem[ADDR2:] = random.Random(vocab + n).randbytes(MEM_BYTES - ADDR2)
        self.before = bytes(self.mem)
        for lane in range(self.p.batch):
            junk = np.random.default_rng(lane).integers(-(1 << 31), 1 << 31, n + 1)
            self.vmem.load(SRC, lane, junk[:n])
            self.vmem.load(AUX, lane, junk[n:])
        self.vmem.load(SRC, T - 1, case.x8)
        self.vmem.load(AUX, T - 1, [int(pf_word(case.x_scale))])

    async def fill_topk(self, ctx, scores, k: int) -> None:
        topk = self.topk
        ctx.set(topk.k, k)
        ctx.set(topk.clear, 1)
        await ctx.tick()
        ctx.set(topk.clear, 0)
        for row, value in enumerate(scores):
            ctx.set(topk.inp.valid, 1)
            ctx.set(topk.inp.payload, {"row": row, "value": int(value)})
            while True:
                _, _, took = await ctx.tick().sample(topk.inp.ready)
                if took:
                    break
        ctx.set(topk.inp.valid, 0)
        for _ in range(10 * self.p.max_head_k + 100):
            if ctx.get(topk.idle):
                return
            await ctx.tick()
        raise AssertionError("top-K selector did not settle")

    async def run_op(self, ctx, n: int, k: int, T: int, limit: int = 20_000) -> tuple[int, int, int, int]:
        """Start one HEAD op; check busy/done; return (error, error_addr, cycles, stall cycles)."""
        for _ in range(self.rng.randrange(3)):
            await ctx.tick()
        r = await run_op(ctx, self.op, {"op": Op.HEAD, "n": n, "count": k, "src": SRC, "aux": AUX,
                                        "addr0": ADDR0, "addr1": ADDR1, "addr2": ADDR2},
                         {"T": T, "ddr_base": BASE}, limit=limit, idle_after=1)
        return r.error, r.error_addr, r.cycles, r.stalls

    def result(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        raw = np.frombuffer(bytes(self.mem[ADDR2:ADDR2 + 8 * count]), "<u4").reshape(count, 2)
        return raw[:, 0].astype(np.int64), raw[:, 1].view("<i4").astype(np.int64)

    def check(self, case: Case, k: int) -> None:
        want = shortlist(case.scores, case.head8, case.scales, case.x8, case.x_scale, k)
        ids, logits = self.result(len(want))
        np.testing.assert_array_equal(ids, want.ids)
        np.testing.assert_array_equal(logits, want.logits_fx)
        # nothing else written: rows, scales and the bytes after the result are untouched
        end = ADDR2 + 8 * len(want)
        assert self.mem[:ADDR2] == self.before[:ADDR2] and self.mem[end:] == self.before[end:]

    def simulate(self, bench) -> None:
        sim = Simulator(self.top)
        sim.add_clock(1e-8)
        self.rd.attach(sim)
        self.wr.attach(sim)
        self.vmem.attach(sim)
        sim.add_testbench(bench)
        sim.run()


@pytest.mark.parametrize("vocab,n,k,T,kw", [
    (200, 128, 1, 2, {}),  # K = 1, T = B
    (300, 48, 8, 1, {}),  # K = 8, T < B
    (512, 128, 64, 2, {"dup": 5}),  # K = max_head_k, identical rows: equal logits, lower id first
    (20, 16, 64, 1, {}),  # vocab < K: 20 candidates; one-beat rows
    (100, 64, 33, 2, {"zero_x": True}),  # x8 = 0: every logit 0, ordered by id; odd count
    (150, 128, 40, 1, {"x_scale": 300.0}),  # logits saturate to int32: ties at the extremes
])
def test_head_matches_golden(vocab, n, k, T, kw):
    seed = vocab + n + k
    b = Bench(seed)
    case = make_case(np.random.default_rng(seed), vocab, n, **kw)
    b.load(case, T)

    async def bench(ctx):
        await b.fill_topk(ctx, case.scores, k)
        error, _, _, _ = await b.run_op(ctx, n, k, T)
        assert error == ErrorCode.OK

    b.simulate(bench)
    b.check(case, k)


def test_head_back_to_back_and_latency():
    """Three ops on one unit (new shortlist and x8 each). A 100-cycle read latency hides behind the x8
    load and the rows stream at one beat per cycle; a 400-cycle one shows as stall cycles."""
    b = Bench(7, read_latency=(100, 100), ar_stall=0.0, r_gap=0.0)
    rng = np.random.default_rng(7)
    n, k, T = 128, 64, 2
    beats = k * (n // 16 + 1)
    phases = []  # (cycle the first beat is taken, cycle the sort starts) per op

    async def monitor(ctx):
        now, first = 0, None
        async for _, _, took, go in ctx.tick().sample(b.op.fetch.beats.valid & b.op.fetch.beats.ready, b.op.rank.go):
            now += 1
            if took and first is None:
                first = now
            if go:
                phases.append((first, now))
                first = None

    async def bench(ctx):
        for latency in (None, 100, 400):
            case = make_case(rng, 256, n, dup=2)
            b.load(case, T)
            if latency:
                b.rd.latency = (latency, latency)
            await b.fill_topk(ctx, case.scores, k)
            error, _, cycles, stalls = await b.run_op(ctx, n, k, T)
            assert error == ErrorCode.OK
            b.check(case, k)
            if latency == 100:
                first, go = phases[-1]
                assert go - first < beats + 30, (first, go)  # one beat per cycle
                assert stalls < 10 and cycles < (n + 1) + beats + k * 14 + 150, (cycles, stalls)
            elif latency == 400:
                assert stalls > 400 - (n + 1) - 20, stalls  # the first beat comes after the x8 load

    sim = Simulator(b.top)
    sim.add_clock(1e-8)
    b.rd.attach(sim)
    b.wr.attach(sim)
    b.vmem.attach(sim)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(bench)
    sim.run()


def _error_case(seed: int):
    rng = np.random.default_rng(seed)
    case = make_case(rng, 128, 128)
    return case, top_k_indices(case.scores, 64)


@pytest.mark.parametrize("which", ["row", "scale"])
def test_head_read_error_then_clean_op(which):
    """A SLVERR beat: every requested beat is still taken, AXI_READ names the failing burst, nothing is
    written; the next op (error cleared) is exact."""
    case, rows = _error_case(11)
    r = int(rows[17])
    n = 128
    row_addr = BASE + ADDR0 + r * n
    scale_beat = (BASE + ADDR1 + 4 * r) & ~15
    bad = row_addr + 16 * 3 if which == "row" else scale_beat
    want_addr = row_addr if which == "row" else scale_beat  # the burst's address (a row is one burst)
    b = Bench(11, read_errors={bad})

    async def bench(ctx):
        b.load(case, 2)
        await b.fill_topk(ctx, case.scores, 64)
        error, addr, _, _ = await b.run_op(ctx, n, 64, 2)
        assert (error, addr) == (ErrorCode.AXI_READ, want_addr)
        assert b.mem == bytearray(b.before), "a failed op wrote DDR"
        assert b.rd.beats_served == 64 * (n // 16 + 1)  # every beat requested and taken
        b.rd.error_addrs.clear()
        error, _, _, _ = await b.run_op(ctx, n, 64, 2)
        assert error == ErrorCode.OK
        b.check(case, 64)

    b.simulate(bench)


def test_head_write_error_then_clean_op():
    """SLVERR on the second 256-byte burst of the result: AXI_WRITE with its address after every B."""
    case, _ = _error_case(12)
    failing = BASE + ADDR2 + 256
    b = Bench(12, write_errors=[(failing + 8, failing + 9)])

    async def bench(ctx):
        b.load(case, 1)
        await b.fill_topk(ctx, case.scores, 64)
        error, addr, _, _ = await b.run_op(ctx, 128, 64, 1)
        assert (error, addr) == (ErrorCode.AXI_WRITE, failing)
        assert b.wr.bursts_written == 2 and not b.wr.resps  # 64 entries: 32 beats, two bursts, both answered
        b.wr.error_ranges.clear()
        error, _, _, _ = await b.run_op(ctx, 128, 64, 1)
        assert error == ErrorCode.OK
        b.check(case, 64)

    b.simulate(bench)


def test_head_bad_desc_and_empty_shortlist():
    """n = 0, not a multiple of 16, or above max_hidden: BAD_DESC with address 0 and no DDR access; an
    empty shortlist finishes OK without a DDR access."""
    case = make_case(np.random.default_rng(3), 64, 128)
    b = Bench(3)

    async def bench(ctx):
        b.load(case, 2)
        await b.fill_topk(ctx, case.scores, 16)
        for n in (0, 120, 136, 144, 1 << 20):
            error, addr, cycles, _ = await b.run_op(ctx, n, 16, 2)
            assert (error, addr) == (ErrorCode.BAD_DESC, 0) and cycles < 5
        await b.fill_topk(ctx, [], 16)
        error, addr, cycles, _ = await b.run_op(ctx, 128, 16, 2)
        assert (error, addr) == (ErrorCode.OK, 0) and cycles < 5
        assert b.rd.beats_served == 0 and b.wr.bursts_written == 0 and b.vmem.reads == 0
        assert b.mem == bytearray(b.before)

    b.simulate(bench)


@pytest.mark.parametrize("batch,max_head_k,k", [(1, 4, 4), (3, 1, 1)])
def test_head_small_generations(batch, max_head_k, k):
    """One token lane (no lane pick), a three-lane VMEM, a one-entry shortlist."""
    params = AccelParams(batch=batch, max_hidden=32, max_ffn=64, max_heads=2, max_kv_heads=1, max_head_dim=16,
                         max_ctx=8, max_vocab=64, max_head_k=max_head_k, max_layers=1)
    b = Bench(batch, params=params)
    case = make_case(np.random.default_rng(batch), 64, 32, dup=1)
    b.load(case, batch)

    async def bench(ctx):
        await b.fill_topk(ctx, case.scores, k)
        error, _, _, _ = await b.run_op(ctx, 32, k, batch)
        assert error == ErrorCode.OK

    b.simulate(bench)
    b.check(case, k)
