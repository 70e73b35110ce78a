"""The ATTN op unit in the Amaranth simulator: K/V rows and pf scales in the KV-cache layout in a DDR
model with random latency and stalls, q8 / q scales in a VMEM model; every output word is compared with
``sim/isa_model.py`` ``IsaModel.op_attn`` (which calls ``sim/golden/attention.py`` ``attend``) on the same
DDR and VMEM."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.sim import Simulator

from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.attention import AttentionOp
from ternfpga.rtl.control.isa import Descriptor, ErrorCode, Op
from ternfpga.sim.golden.attention import logit_constant
from ternfpga.sim.isa_model import Ctx, IsaModel, pf_word
from ternfpga.sim.models.axi_mem import AxiReadMemory
from ternfpga.sim.models.op_unit import run_op
from ternfpga.sim.models.vmem import VmemModel, from_words
from ternfpga.sim.numerics.fixed import quantize_absmax
from ternfpga.sim.numerics.spec import FX_ONE_LSB

SMALL = dict(batch=2, max_hidden=64, max_ffn=128, max_heads=8, max_kv_heads=2, max_head_dim=64, max_ctx=32,
             max_vocab=512, max_layers=2)
P1 = AccelParams(**SMALL, q_lanes=1)
P4 = AccelParams(**SMALL, q_lanes=4)
P5 = AccelParams(**SMALL, q_lanes=5)
P8 = AccelParams(**SMALL, q_lanes=8)
P128 = AccelParams(**{**SMALL, "max_hidden": 128, "max_heads": 4, "max_head_dim": 128}, q_lanes=4)
BASE = 0x12_3400_0000  # DDR_BASE: exercises the upper address bits
MEM_BYTES = 0x8000
SRC, AUX, DST = 3, 1000, 1200  # VMEM word addresses of q8, the q scales and the output


@dataclass
class Layout:
    """The KV cache of one layer in DDR (host/ddr.py KvLayer): S positions per KV head."""

    S: int = 40
    addr0: int = 0x0100  # K rows
    addr1: int = 0x2100  # V rows
    addr2: int = 0x4104  # K scales: not beat aligned (word 1 of its beat)
    addr3: int = 0x4F0C  # V scales: word 3


@dataclass
class Case:
    H: int
    KVH: int
    d: int
    T: int
    pos0: int
    lay: Layout = field(default_factory=Layout)

    def desc(self, **over) -> dict:
        c = logit_constant(self.d)
        fields = dict(op=Op.ATTN, heads=self.H, kv_heads=self.KVH, k=self.d, src=SRC, aux=AUX, dst=DST,
                      stride=self.lay.S, scale0=(int(c.m), int(c.e)), addr0=self.lay.addr0,
                      addr1=self.lay.addr1, addr2=self.lay.addr2, addr3=self.lay.addr3)
        fields.update(over)
        return fields


def fill(case: Case, rng: np.random.Generator, mem: bytearray, vmem: VmemModel, *, zero_v=(), zero_q=(),
         big=False, dead_kv=()) -> None:
    """K/V rows and scales of every cache slot (quantize_absmax of random FX vectors, per position and KV
    head, as the model does), q8 and q scales per token lane and head. ``zero_v``: positions whose V
    vectors are 0 (scale 0); ``dead_kv``: KV heads with no V at all; ``zero_q``: (t, h) with a zero query;
    ``big``: wide logit range (p shifts to 0)."""
    S, KVH, d = case.lay.S, case.KVH, case.d
    spread = rng.uniform(0.05, 3.0, (S, KVH, 1))
    k_fx = np.round(rng.normal(0, 1, (S, KVH, d)) * spread * 65536 * (40 if big else 1)).astype(np.int64)
    v_fx = np.round(rng.normal(0, 1, (S, KVH, d)) * spread * 65536).astype(np.int64)
    for j in zero_v:
        v_fx[j] = 0
    for h in dead_kv:
        v_fx[:, h] = 0
    k8, ks = quantize_absmax(k_fx, FX_ONE_LSB)
    v8, vs = quantize_absmax(v_fx, FX_ONE_LSB)
    lay = case.lay
    for h in range(KVH):
        for p in range(S):
            slot = h * S + p
            mem[lay.addr0 + slot * d:lay.addr0 + (slot + 1) * d] = k8[p, h].astype(np.int8).tobytes()
            mem[lay.addr1 + slot * d:lay.addr1 + (slot + 1) * d] = v8[p, h].astype(np.int8).tobytes()
            mem[lay.addr2 + 4 * slot:lay.addr2 + 4 * slot + 4] = (int(pf_word(ks.take(np.s_[p, h]))) & 0xFFFF_FFFF).to_bytes(4, "little")
            mem[lay.addr3 + 4 * slot:lay.addr3 + 4 * slot + 4] = (int(pf_word(vs.take(np.s_[p, h]))) & 0xFFFF_FFFF).to_bytes(4, "little")
    q_fx = np.round(rng.normal(0, 1, (vmem.lanes, case.H, d)) * 65536 * (40 if big else 1)).astype(np.int64)
    for t, h in zero_q:
        q_fx[t, h] = 0
    q8, qs = quantize_absmax(q_fx, FX_ONE_LSB)
    for t in range(vmem.lanes):
        vmem.load(SRC, t, q8[t].reshape(-1))
        vmem.load(AUX, t, pf_word(qs.take(np.s_[t])))
        vmem.load(DST, t, rng.integers(-(1 << 31), 1 << 31, case.H * d))  # garbage to overwrite


class Bench:
    def __init__(self, params: AccelParams, seed: int, *, latency=(1, 30), ar_stall=0.3, r_gap=0.2,
                 error_addrs=None):
        self.p = params
        self.op = op = AttentionOp(params)
        self.rng = random.Random(seed)
        self.mem = bytearray(random.Random(seed + 1).randbytes(MEM_BYTES))
        self.rd = AxiReadMemory(op.axi, self.mem, BASE, seed=seed + 2, latency=latency, ar_stall=ar_stall,
                                r_gap=r_gap, error_addrs=error_addrs)
        self.vmem = VmemModel(params.batch, params.vmem_words, read=op.vr, write=op.vw)

    async def run_op(self, ctx, case: Case, limit: int = 100_000, **over) -> tuple[int, int, int, int]:
        """One ATTN op; checks busy/done; returns (error, error_addr, cycles, stall cycles)."""
        fields = case.desc(**over)
        m, e = fields.pop("scale0")
        for _ in range(self.rng.randrange(3)):
            await ctx.tick()
        r = await run_op(ctx, self.op, {**fields, "scale0": {"m": m, "e": e}},
                         {"T": case.T, "pos0": case.pos0, "ddr_base": BASE}, limit=limit, idle_after=1)
        return r.error, r.error_addr, r.cycles, r.stalls

    def expected(self, case: Case, vmem_words: np.ndarray) -> np.ndarray:
        """IsaModel.op_attn on the same DDR and VMEM: the VMEM afterwards (signed words)."""
        isa = IsaModel(self.p, self.mem)
        isa.vmem = from_words(vmem_words).copy()
        isa.op_attn(Descriptor(**case.desc()), Ctx(T=case.T, pos0=case.pos0, tok0=0, last_block=True))
        return isa.vmem

    def simulate(self, bench) -> None:
        sim = Simulator(self.op)
        sim.add_clock(1e-8)
        self.rd.attach(sim)
        self.vmem.attach(sim)
        sim.add_testbench(bench)
        sim.run()


def run_case(params: AccelParams, case: Case, seed: int, bus: dict | None = None, **fill_kw) -> int:
    """Run one op against the golden model; returns its cycles."""
    b = Bench(params, seed, **(bus or {}))
    fill(case, np.random.default_rng(seed), b.mem, b.vmem, **fill_kw)
    want = b.expected(case, b.vmem.words)
    cycles = []

    async def bench(ctx):
        error, _, n, _ = await b.run_op(ctx, case)
        assert error == ErrorCode.OK
        cycles.append(n)

    b.simulate(bench)
    got = from_words(b.vmem.words)
    np.testing.assert_array_equal(got[DST:DST + case.H * case.d], want[DST:DST + case.H * case.d])
    np.testing.assert_array_equal(got, want)  # nothing else written (other lanes, other words)
    return cycles[0]


@pytest.mark.parametrize("params,case,kw", [
    # decode, GQA 7:1 in one chunk (8 lanes), the generation's max ctx
    (P8, Case(H=7, KVH=1, d=64, T=1, pos0=31), {}),
    # decode, 2:1, ctx 1, one-beat rows
    (P4, Case(H=4, KVH=2, d=16, T=1, pos0=0), {}),
    # prefill block (T = B, causal within it), 1:1, some V vectors zero (scale 0)
    (P4, Case(H=2, KVH=2, d=32, T=2, pos0=5), {"zero_v": (0, 3, 6)}),
    # 7:1 with more pairs than lanes (14 pairs on 4 lanes: 4 chunks), a zero query, a 16-key tile + 1
    (P4, Case(H=7, KVH=1, d=16, T=2, pos0=15), {"zero_q": ((1, 3),)}),
    # wide logit range (p shifts to 0), a KV head without any live V key (output 0)
    (P4, Case(H=4, KVH=2, d=48, T=2, pos0=20), {"big": True, "dead_kv": (1,)}),
    # one lane (a chunk per pair); S = 33: the scale arrays' word offset differs per KV head (0/1, 2/3)
    (P1, Case(H=2, KVH=2, d=32, T=2, pos0=3, lay=Layout(S=33, addr2=0x4100, addr3=0x4F08)), {}),
    # 5 lanes (pipelines with 3 and 2 lanes): 6 pairs per KV head, chunks of 5 and 1, max ctx
    (P5, Case(H=6, KVH=2, d=16, T=2, pos0=30), {"zero_v": (31,)}),
    # head_dim 128
    (P128, Case(H=4, KVH=2, d=128, T=1, pos0=20, lay=Layout(addr1=0x2900, addr2=0x5104, addr3=0x5F0C)), {}),
])
def test_attention_matches_golden(params, case, kw):
    run_case(params, case, seed=case.H * 100 + case.d + case.pos0, **kw)


def test_attention_errors_and_back_to_back():
    """BAD_DESC for each field beyond the maxima (at once, nothing written); an AXI read error in the
    K rows (the op finishes: AXI_READ with the failing burst's address); then a clean op on the same
    unit."""
    case = Case(H=4, KVH=2, d=32, T=2, pos0=9)
    bad_addr = BASE + case.lay.addr0 + (1 * case.lay.S + 3) * case.d  # KV head 1, key 3
    b = Bench(P4, 11, error_addrs={bad_addr})
    fill(case, np.random.default_rng(11), b.mem, b.vmem)
    before = b.vmem.words.copy()
    want = b.expected(case, before)

    async def bench(ctx):
        for over, T, pos0 in [({"k": 24}, 2, 9), ({"k": 80}, 2, 9), ({"k": 0}, 2, 9), ({"heads": 9}, 2, 9),
                              ({"heads": 3}, 2, 9), ({"kv_heads": 0}, 2, 9), ({"heads": 0}, 2, 9),
                              ({}, 2, 31), ({"addr0": 0x108}, 2, 9), ({"addr3": 0x4F0E}, 2, 9)]:
            bad = Case(case.H, case.KVH, case.d, T, pos0, case.lay)
            error, addr, cycles, _ = await b.run_op(ctx, bad, **over)
            assert (error, addr) == (ErrorCode.BAD_DESC, 0), over
            assert cycles < 20
        assert (b.vmem.words == before).all()
        error, addr, _, _ = await b.run_op(ctx, case)
        assert error == ErrorCode.AXI_READ
        assert addr % 16 == 0 and addr <= bad_addr < addr + 128 * 16 and addr // 4096 == bad_addr // 4096
        b.rd.error_addrs.clear()
        b.vmem.words[:] = before
        error, _, _, _ = await b.run_op(ctx, case)
        assert error == ErrorCode.OK

    b.simulate(bench)
    np.testing.assert_array_equal(from_words(b.vmem.words), want)


def test_attention_decode_throughput():
    """Decode of 7 query heads on one KV head at d = 64 and 8 lanes, DDR without stalls (20-cycle
    latency): the K and V passes run at one beat per cycle, so each key costs 2 d / 16 = 8 cycles; the
    rest is LOAD and OUT (one VMEM access per element each) and a fixed pipeline fill."""
    bus = {"latency": (20, 20), "ar_stall": 0.0, "r_gap": 0.0}
    cycles = {n: run_case(P8, Case(H=7, KVH=1, d=64, T=1, pos0=n - 1), seed=n, bus=bus) for n in (16, 32)}
    vmem = 2 * 7 * (64 + 1)
    for n, c in cycles.items():
        assert c <= vmem + 8 * n + 300, (n, c)
    assert cycles[32] - cycles[16] <= 8 * 16 + 16, cycles


def test_attention_stall_on_slow_ddr():
    """A 600-cycle DDR latency outlasts the query load: the op waits for its first K beats (stall), and
    the results are still exact."""
    case = Case(H=2, KVH=1, d=32, T=1, pos0=12)
    b = Bench(P4, 3, latency=(600, 600), ar_stall=0.0, r_gap=0.0)
    fill(case, np.random.default_rng(3), b.mem, b.vmem)
    want = b.expected(case, b.vmem.words)
    got = []

    async def bench(ctx):
        got.append(await b.run_op(ctx, case))

    b.simulate(bench)
    error, _, cycles, stalls = got[0]
    assert error == ErrorCode.OK
    assert 600 - 2 * 33 - 50 <= stalls < cycles
    np.testing.assert_array_equal(from_words(b.vmem.words), want)


def test_attention_different_ops_back_to_back():
    """Two ops of different geometry on one unit (d 64 then 16, 4:1 then 1:1, prefill then decode): no
    state of the first leaks into the second."""
    a = Case(H=4, KVH=1, d=64, T=2, pos0=20)
    b_case = Case(H=2, KVH=2, d=16, T=1, pos0=3)
    b = Bench(P4, 21)
    rng = np.random.default_rng(21)
    results = []

    async def bench(ctx):
        for case in (a, b_case):
            fill(case, rng, b.mem, b.vmem)
            want = b.expected(case, b.vmem.words)
            error, _, _, _ = await b.run_op(ctx, case)
            assert error == ErrorCode.OK
            results.append((from_words(b.vmem.words), want))

    b.simulate(bench)
    for got, want in results:
        np.testing.assert_array_equal(got, want)
