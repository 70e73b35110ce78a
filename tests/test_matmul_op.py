"""The MATMUL op unit in the Amaranth simulator: descriptors run back to back on one unit, with AXI memory
models (random latency and stalls) on every weight port, the VMEM model and a top-K consumer; every VMEM
word (written lanes, masked lanes, untouched rows) and every top-K row is compared with the golden
functions, and so is the per-lane max |w| of the words each pass wrote (Flag.PRESCANNED), at done and
still at the next start. The activation lane alone is checked on random and edge values."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.control.isa import Descriptor, Epilogue, ErrorCode, Flag, Op
from ternfpga.rtl.matmul import ActLane, ActMode, MatmulOp
from ternfpga.sim.engine_io import plan_pass
from ternfpga.sim.golden.head import top_k_indices
from ternfpga.sim.golden.matvec import matvec, ternary_acc
from ternfpga.sim.isa_model import lane_absmax
from ternfpga.sim.models.axi_mem import AxiReadMemory
from ternfpga.sim.models.vmem import VmemModel, from_words, to_words
from ternfpga.sim.numerics import pf
from ternfpga.sim.numerics.fixed import gated_act, sat32

DDR_BASE = 0x3_4000_0000
FX_ONE = 1 << 16


def small_params(batch: int) -> AccelParams:
    return AccelParams(batch=batch, max_hidden=64, max_ffn=160, max_heads=4, max_kv_heads=2, max_head_dim=16,
                       max_ctx=16, max_vocab=512, max_layers=2)


# -- the activation lane alone ---------------------------------------------------------------------------

def run_lane(mode: ActMode, xs: np.ndarray, as_: np.ndarray) -> np.ndarray:
    dut = ActLane()
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    got = []

    async def bench(ctx):
        ctx.set(dut.mode, mode)
        rng = random.Random(1)
        i = 0
        for _ in range(3 * len(xs) + 50):  # bounded
            send = i < len(xs) and rng.random() < 0.8
            ctx.set(dut.valid, send)
            if send:
                ctx.set(dut.x, int(xs[i]))
                ctx.set(dut.a, int(as_[i]))
                i += 1
            _, _, ov, o = await ctx.tick().sample(dut.out_valid, dut.out)
            if ov:
                got.append(o)
            if len(got) == len(xs):
                break

    sim.add_testbench(bench)
    sim.run()
    assert len(got) == len(xs)
    return np.array(got, dtype=np.int64)


def lane_inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    lim = 1 << 20  # the sigmoid table's range: [-16, 16) in FX
    seg = np.arange(1024, dtype=np.int64) * 2048 - lim  # every table segment: its start, end, a random point
    xs = np.concatenate([
        seg, seg + 2047, seg + rng.integers(0, 2048, 1024),
        np.arange(-lim - 40, -lim + 40), np.arange(lim - 40, lim + 40), np.arange(-40, 40),
        [-(1 << 31), (1 << 31) - 1, -(1 << 31) + 1, (1 << 31) - 2, 46341 << 8, -(46341 << 8)],
        rng.integers(-(1 << 31), 1 << 31, 1500), rng.integers(-2 * lim, 2 * lim, 1500),
    ]).astype(np.int64)
    as_ = rng.integers(-(1 << 31), 1 << 31, len(xs))
    as_[:6] = [-(1 << 31), (1 << 31) - 1, -(1 << 31), (1 << 31) - 1, 0, 1]
    return xs, as_


@pytest.mark.parametrize("mode", [ActMode.SILU, ActMode.RELU2])
def test_act_lane_matches_gated_act(mode):
    xs, as_ = lane_inputs()
    got = run_lane(mode, xs, as_)
    # gated_act with up = 1.0 (2**16) is exactly its first step: act(x) fits int32 and * 2**16 >> 16 is exact
    want = gated_act(xs, FX_ONE, "silu" if mode == ActMode.SILU else "relu2")
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"x={xs[bad[:5]]}: got {got[bad[:5]]}, want {want[bad[:5]]}"


def test_act_lane_gate_product():
    xs, as_ = lane_inputs()
    got = run_lane(ActMode.GATE, xs, as_)
    want = sat32(pf.rshift_round(as_ * xs, 16))  # gated_act's second step: a * up
    assert (got == want).all()


# -- the op unit -----------------------------------------------------------------------------------------

@dataclass
class MatmulCase:
    """One descriptor and what the testbench needs around it."""

    mode: Epilogue
    T: int
    w: np.ndarray  # ternary [n, k]
    x8: np.ndarray  # [B, k]; lanes >= T hold leftovers that must not matter
    ws: pf.PF
    xs: pf.PF  # [B]
    dst: int = 0
    raw: bool = False
    count: int = 0  # TOPK: the shortlist length
    error_beat: tuple[int, int] | None = None  # (port, beat) of the packed matrix answered SLVERR
    addr0: int = 0  # filled in by the rig
    result: dict = field(default_factory=dict)

    def error_offset(self, params: AccelParams) -> int:
        port, beat = self.error_beat
        return self.addr0 + port * params.engine.layout.port_region_bytes(*self.w.shape) + 16 * beat

    @property
    def y(self) -> np.ndarray:
        """The engine's FX outputs [B, n] per the golden model."""
        if self.raw:
            return ternary_acc(self.w, self.x8)
        return matvec(self.w, self.x8, self.ws, self.xs)


def random_case(rng: np.random.Generator, B: int, mode: Epilogue, T: int, n: int, k: int, *,
                scale: tuple[float, float] = (0.002, 0.05), **kw) -> MatmulCase:
    w = rng.integers(-1, 2, (n, k)).astype(np.int8)
    x8 = rng.integers(-127, 128, (B, k)).astype(np.int8)
    x8[0, : min(k, 8)] = 127  # a few saturated inputs
    ws = pf.from_float(np.array([rng.uniform(*scale)]))
    xs = pf.from_float(rng.uniform(0.01, 1.0, B))
    return MatmulCase(mode, T, w, x8, ws, xs, **kw)


class TopKConsumer:
    """The head's top-K selector as the unit sees it: ``clear`` with ``k``, then rows under random
    back-pressure; ``idle`` drops from the cycle after each accepted row (or clear) for a few cycles."""

    def __init__(self, dut, seed: int):
        self.dut, self.rng = dut, random.Random(seed)
        self.k = None
        self.rows: list[tuple[int, int]] = []
        self.clears = 0
        self.busy = 0

    async def process(self, ctx):
        dut = self.dut
        while True:
            ctx.set(dut.topk.ready, self.rng.random() < 0.6)
            ctx.set(dut.topk_idle, self.busy == 0)
            _, _, clear, k, valid, ready, payload = await ctx.tick().sample(
                dut.topk_clear, dut.topk_k, dut.topk.valid, dut.topk.ready, dut.topk.payload)
            self.busy = max(0, self.busy - 1)
            if clear:
                assert self.busy == 0, "clear while the selector is busy"
                self.k, self.rows, self.clears = k, [], self.clears + 1
                self.busy = self.rng.randint(1, 6)
            if valid and ready:
                assert self.k is not None, "a row before clear"
                self.rows.append((payload.row, payload.value))
                self.busy = self.rng.randint(1, 4)


class Rig:
    """A MatmulOp with memories around it; runs a list of cases in one simulation. The top-K selector is
    :class:`TopKConsumer`, or with ``real_topk`` the head's rtl/head/topk.py."""

    def __init__(self, params: AccelParams, cases: list[MatmulCase], seed: int = 0, real_topk: bool = False):
        self.p, self.cases = params, cases
        lay = params.engine.layout
        rng = random.Random(seed)
        ddr = bytearray()
        self.error_addrs = set()
        for c in cases:
            ddr += bytes(16 * rng.randint(0, 300))  # random 16-byte alignment: bursts cross 4 KiB pages
            c.addr0 = len(ddr)
            ddr += lay.pack(c.w).tobytes()
            if c.error_beat is not None:
                self.error_addrs.add(DDR_BASE + c.error_offset(params))
        self.ddr = bytes(ddr + bytes(64))
        B, depth = params.batch, params.vmem_words
        self.dut = dut = MatmulOp(params)
        self.vmem = VmemModel(B, depth, read=dut.vr, write=dut.vw)
        vrng = np.random.default_rng(seed)
        init = vrng.integers(-(1 << 31), 1 << 31, (depth, B))
        init[::7] = -(1 << 31)
        init[3::7] = (1 << 31) - 1
        self.vmem.words[:] = to_words(init)
        self.initial = self.vmem.words.copy()
        self.top = dut
        self.topk = self.selector = None
        if real_topk:
            from ternfpga.rtl.head.topk import TopK

            self.top = Module()
            self.top.submodules.op = dut
            self.top.submodules.topk = sel = self.selector = TopK(params.max_head_k, params.engine.row_width,
                                                                  params.engine.acc_width)
            wiring.connect(self.top, dut.topk, sel.inp)
            self.top.d.comb += [sel.clear.eq(dut.topk_clear), sel.k.eq(dut.topk_k), dut.topk_idle.eq(sel.idle)]
        else:
            self.topk = TopKConsumer(dut, seed)
        self.bursts: list[tuple[int, int]] = []  # (addr, bytes) of every AR, for the error address

    async def ar_monitor(self, ctx):
        ports = [getattr(self.dut, f"axi{i}") for i in range(self.p.engine.ports)]
        sigs = [s for a in ports for s in (a.arvalid, a.arready, a.araddr, a.arlen)]
        while True:
            vals = (await ctx.tick().sample(*sigs))[2:]
            for i in range(len(ports)):
                v, r, addr, alen = vals[4 * i:4 * i + 4]
                if v and r:
                    self.bursts.append((addr, 16 * (alen + 1)))

    def lane_max(self, ctx) -> list[tuple[int, bool]]:
        dut = self.dut
        return [(ctx.get(dut.lane_absmax[t]), bool(ctx.get(dut.lane_absmax_pos.bit_select(t, 1))))
                for t in range(self.p.batch)]

    async def run_case(self, ctx, c: MatmulCase, rng: random.Random, prev: MatmulCase | None = None,
                       limit: int = 20_000):
        p, dut = self.p, self.dut
        n, k = c.w.shape
        plan = plan_pass(p.engine, n, k, DDR_BASE + c.addr0, c.x8, c.ws, c.xs)
        # the NORM_QUANT unit's part: activations and scales, while the unit is idle
        for b, chunk, word in plan.act_words:
            ctx.set(dut.act.payload, {"b": b, "chunk": chunk, "data": word})
            ctx.set(dut.act.valid, 1)
            await ctx.tick().until(dut.act.ready)
        ctx.set(dut.act.valid, 0)
        for b, (m, e) in enumerate(plan.x_scale):
            ctx.set(dut.xs_we, 1)
            ctx.set(dut.xs_lane, b)
            ctx.set(dut.xs_value, {"m": m, "e": e})
            await ctx.tick()
        ctx.set(dut.xs_we, 0)
        for _ in range(rng.randint(0, 3)):
            await ctx.tick()
        if prev is not None:  # kept from the previous pass's done until this start
            prev.result["lane_max_kept"] = self.lane_max(ctx)
        d = Descriptor(op=Op.MATMUL, flags=Flag.RAW if c.raw else 0, mode=int(c.mode), n=plan.n_rows,
                       k=plan.k_chunks, aux=plan.n_groups, stride=plan.port_stride, scale0=plan.w_scale,
                       dst=c.dst, count=c.count, addr0=c.addr0)
        ctx.set(dut.desc.as_value(), int.from_bytes(d.pack(), "little"))
        ctx.set(dut.ctx, {"T": c.T, "pos0": 5, "tok0": 0, "last_block": 1, "ddr_base": DDR_BASE, "tokens": 0})
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        stalls = 0
        for _ in range(limit):
            _, _, busy, done, err, eaddr, stall, topk_idle = await ctx.tick().sample(
                dut.busy, dut.done, dut.error, dut.error_addr, dut.stall, dut.topk_idle)
            assert busy, "busy must stay high up to and including done"
            stalls += stall
            if done:
                assert topk_idle or c.mode != Epilogue.TOPK, "done before the selector drained"
                c.result["lane_max"] = self.lane_max(ctx)
                break
        else:
            raise AssertionError(f"op {c.mode.name} hung")
        c.result.update(error=err, error_addr=eaddr, stalls=stalls)
        _, _, busy, done = await ctx.tick().sample(dut.busy, dut.done)
        assert not busy and not done, "done is a one-cycle pulse, busy falls after it"
        c.result["vmem"] = self.vmem.words.copy()
        if self.topk is not None:
            c.result["topk"] = (self.topk.clears, self.topk.k, list(self.topk.rows))
        elif c.mode == Epilogue.TOPK:  # read the selector's shortlist (unordered)
            sel, rows = self.selector, []
            for i in range(ctx.get(sel.count)):
                ctx.set(sel.rd_addr, i)
                await ctx.tick()
                rows.append((ctx.get(sel.rd_data.row), ctx.get(sel.rd_data.value)))
            c.result["shortlist"] = rows

    def run(self, seed: int = 0) -> None:
        sim = Simulator(self.top)
        sim.add_clock(1e-8)
        for i in range(self.p.engine.ports):
            AxiReadMemory(getattr(self.dut, f"axi{i}"), self.ddr, DDR_BASE, seed=seed * 31 + i,
                          error_addrs=self.error_addrs).attach(sim)
        self.vmem.attach(sim)
        if self.topk is not None:
            sim.add_testbench(self.topk.process, background=True)
        sim.add_testbench(self.ar_monitor, background=True)

        async def bench(ctx):
            rng = random.Random(seed)
            prev = None
            for c in self.cases:
                await self.run_case(ctx, c, rng, prev)
                prev = c
            for _ in range(5):
                await ctx.tick()
            prev.result["lane_max_kept"] = self.lane_max(ctx)

        sim.add_testbench(bench)
        sim.run()


def expected_vmem(before: np.ndarray, c: MatmulCase) -> np.ndarray:
    """The VMEM after case ``c`` per the golden functions (words [depth, B])."""
    want = from_words(before)
    if c.mode == Epilogue.TOPK:
        return to_words(want)
    y = c.y.T[:, : c.T]  # [n, T]
    n = y.shape[0]
    old = want[c.dst:c.dst + n, : c.T]
    if c.mode == Epilogue.STORE:
        new = y
    elif c.mode == Epilogue.RESIDUAL:
        new = sat32(old + y)
    elif c.mode == Epilogue.SILU:
        new = gated_act(y, FX_ONE, "silu")  # the first step alone (exact: see test_act_lane_matches_gated_act)
    elif c.mode == Epilogue.RELU2:
        new = gated_act(y, FX_ONE, "relu2")
    elif c.mode == Epilogue.GATE:
        new = sat32(pf.rshift_round(old * y, 16))
    else:
        raise AssertionError(c.mode)
    want[c.dst:c.dst + n, : c.T] = new
    return to_words(want)


def expected_lane_max(after: np.ndarray, c: MatmulCase, B: int) -> list[tuple[int, bool]]:
    """Per lane, max |w| of the words the pass wrote and whether a w >= 0 reached it ((0, False): none)."""
    if c.mode == Epilogue.TOPK:
        return [(0, False)] * B
    n = c.w.shape[0]
    words = from_words(after[c.dst:c.dst + n])
    return [lane_absmax(words[:, t]) if t < c.T else (0, False) for t in range(B)]


def check_cases(rig: Rig) -> None:
    prev = rig.initial
    for i, c in enumerate(rig.cases):
        want = expected_vmem(prev, c)
        got = c.result["vmem"]
        bad = np.argwhere(got != want)
        assert bad.size == 0, (f"case {i} ({c.mode.name}, T={c.T}): {len(bad)} wrong words, first (addr, lane) "
                               f"{bad[0].tolist()}: got {from_words(got[tuple(bad[0])])}, "
                               f"want {from_words(want[tuple(bad[0])])}")
        want_max = expected_lane_max(want, c, rig.p.batch)
        assert c.result["lane_max"] == want_max, f"case {i} ({c.mode.name}, T={c.T}): lane max"
        assert c.result["lane_max_kept"] == want_max, f"case {i} ({c.mode.name}): lane max not kept to the next start"
        assert c.result["error"] == (ErrorCode.AXI_READ if c.error_beat is not None else ErrorCode.OK)
        prev = got


def run_rig(params: AccelParams, cases: list[MatmulCase], seed: int, real_topk: bool = False) -> Rig:
    rig = Rig(params, cases, seed, real_topk)
    rig.run(seed)
    return rig


@pytest.mark.parametrize("batch", [4, 2])
def test_every_epilogue_mode_matches_golden(batch):
    """Every mode with T = B and T < B (masked lanes keep their words), RAW, and the MLP chain
    (SILU into a buffer, then GATE on it = gated_act) -- one unit, back to back."""
    rng = np.random.default_rng(batch)
    B, depth = batch, small_params(batch).vmem_words
    lo = B - 1
    cases = [
        random_case(rng, B, Epilogue.STORE, B, 70, 47, dst=0),
        random_case(rng, B, Epilogue.STORE, lo, 40, 160, dst=100, scale=(0.5, 2.0)),  # saturating requant
        random_case(rng, B, Epilogue.RESIDUAL, B, 90, 33, dst=20, scale=(0.05, 0.5)),  # old words at +-2**31
        random_case(rng, B, Epilogue.RESIDUAL, lo, 64, 64, dst=200),
        # the MLP: act(gate) into 300.., then * up
        random_case(rng, B, Epilogue.SILU, B, 96, 80, dst=300),
        random_case(rng, B, Epilogue.GATE, B, 96, 80, dst=300),
        random_case(rng, B, Epilogue.RELU2, lo, 50, 45, dst=420, scale=(0.002, 0.2)),
        random_case(rng, B, Epilogue.GATE, lo, 50, 45, dst=420),
        random_case(rng, B, Epilogue.SILU, lo, 30, 20, dst=480, scale=(0.01, 0.3)),
        random_case(rng, B, Epilogue.RELU2, B, 30, 20, dst=520, scale=(0.05, 0.5)),
        random_case(rng, B, Epilogue.GATE, B, 33, 50, dst=265, scale=(0.05, 0.5)),  # random old words
        random_case(rng, B, Epilogue.STORE, B, 77, 100, dst=depth - 77, raw=True),
        random_case(rng, B, Epilogue.RESIDUAL, lo, 20, 10, dst=150, raw=True),
    ]
    rig = run_rig(small_params(batch), cases, seed=batch)
    check_cases(rig)
    # the MLP chain, end to end against gated_act
    silu, gate = cases[4], cases[5]
    h = from_words(gate.result["vmem"])[300:396, :B]
    assert (h == gated_act(silu.y, gate.y, "silu").T).all()
    relu, gate2 = cases[6], cases[7]
    h = from_words(gate2.result["vmem"])[420:470, :lo]
    assert (h == gated_act(relu.y[:lo], gate2.y[:lo], "relu2").T).all()
    assert any(c.result["stalls"] > 0 for c in cases), "the weight streams never waited for DDR"
    seen = {m for c in cases for m in c.result["lane_max"]}
    assert (1 << 31, False) in seen and ((1 << 31) - 1, True) in seen, "the lane max never saw -2**31 / 2**31 - 1"


def test_topk_read_error_and_stall():
    """TOPK (RAW sums of lane T-1 to the selector, clear with k first, done after the selector drains),
    then a pass whose weight read answers SLVERR: AXI_READ with the failing burst's address, the pass
    still completes and writes its rows."""
    B = 4
    rng = np.random.default_rng(11)
    cases = [
        random_case(rng, B, Epilogue.TOPK, 3, 200, 64, raw=True, count=17),
        random_case(rng, B, Epilogue.STORE, B, 120, 90, dst=40, error_beat=(1, 13)),
        random_case(rng, B, Epilogue.TOPK, B, 90, 30, raw=True, count=300),  # count beyond max_head_k
        random_case(rng, B, Epilogue.STORE, 2, 30, 30, dst=0),  # clean again: error cleared
    ]
    params = small_params(B)
    rig = run_rig(params, cases, seed=5)
    check_cases(rig)
    for i in (0, 2):
        c = cases[i]
        clears, k, rows = c.result["topk"]
        assert clears == (1 if i == 0 else 2)
        assert k == min(c.count, params.max_head_k)
        acc = ternary_acc(c.w, c.x8)[c.T - 1]
        got = dict(rows)
        assert len(got) == len(rows) == c.w.shape[0], "every row exactly once"
        assert all(got[r] == acc[r] for r in range(c.w.shape[0]))
        assert (top_k_indices(np.array([got[r] for r in range(len(got))]), k) == top_k_indices(acc, k)).all()
    err = cases[1]
    bad = DDR_BASE + err.error_offset(params)
    burst = [a for a, size in rig.bursts if a <= bad < a + size]
    assert len(burst) == 1
    assert err.result["error_addr"] == burst[0]
    assert cases[3].result["error_addr"] == 0


def test_topk_into_the_head_selector():
    """TOPK into the real streaming top-K selector: its shortlist is the golden top_k_indices of the RAW
    sums of lane T-1; two selections back to back, a STORE in between."""
    pytest.importorskip("ternfpga.rtl.head.topk")
    B = 2
    rng = np.random.default_rng(12)
    cases = [
        random_case(rng, B, Epilogue.TOPK, 2, 300, 40, raw=True, count=25),
        random_case(rng, B, Epilogue.STORE, 1, 20, 20, dst=10),
        random_case(rng, B, Epilogue.TOPK, 1, 120, 96, raw=True, count=7),
    ]
    rig = run_rig(small_params(B), cases, seed=9, real_topk=True)
    check_cases(rig)
    for c in (cases[0], cases[2]):
        acc = ternary_acc(c.w, c.x8)[c.T - 1]
        want = top_k_indices(acc, c.count)
        got = c.result["shortlist"]
        assert sorted(r for r, _ in got) == sorted(want.tolist())
        assert all(v == acc[r] for r, v in got)


def test_lane_max_ties_and_signs():
    """The per-lane max of the words written: +M and -M both written (reached by w >= 0), only -M, a
    TOPK pass (clears it: nothing written), a pass with T < B (lanes >= T read 0); raw sums, exact."""
    B, k = 2, 40
    rng = np.random.default_rng(13)

    def case(rows_pm, T, mode=Epilogue.STORE, **kw):
        w = rng.integers(-1, 2, (24, k)).astype(np.int8)
        w[0] = 1 if rows_pm[0] else 0
        w[1] = -1 if rows_pm[1] else 0
        x8 = rng.integers(1, 128, (B, k)).astype(np.int8)  # positive: only an all +1 (-1) row reaches +-sum
        c = random_case(rng, B, mode, T, 24, k, raw=True, **kw)
        c.w, c.x8 = w, x8
        return c

    cases = [case((True, True), B, dst=10), case((False, True), B, dst=40),
             case((True, True), B, Epilogue.TOPK, count=5), case((False, True), 1, dst=70),
             case((True, False), B, Epilogue.RESIDUAL, dst=70)]
    rig = run_rig(small_params(B), cases, seed=13)
    check_cases(rig)
    sums = [c.x8.astype(np.int64).sum(axis=1) for c in cases]
    assert cases[0].result["lane_max"] == [(int(sums[0][t]), True) for t in range(B)]
    assert cases[1].result["lane_max"] == [(int(sums[1][t]), False) for t in range(B)]
    assert cases[2].result["lane_max"] == [(0, False)] * B
    assert cases[3].result["lane_max"] == [(int(sums[3][0]), False), (0, False)]
