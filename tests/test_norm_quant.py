"""NormQuantOp in the Amaranth simulator: VMEM in the VMEM model, the norm gains in a DDR model (random
latency and stalls), the matmul engine's input played by the testbench (random ``act.ready`` stalls,
every chunk and x_scale write recorded). Every VMEM word, engine chunk and scale is compared with the
ISA model's op_norm_quant (fixed.norm_quant / quantize_absmax), on realistic vectors with outlier
channels and on edge cases: zero vectors, a single non-zero element, saturated words, tiny values (an
exact left shift), n = 1, n not a multiple of the chunk, n = max_k, HEADS with d = 16 and 64 in place,
T = B and T < B, LAST_TOKEN; plus AXI read errors and descriptors beyond the maxima. With
Flag.PRESCANNED the testbench plays the MATMUL unit's per-lane max |h| (other lanes hold garbage): the
same comparisons, the results equal to the unflagged op's, and the scanning pass gone from the cycle
count; a wrong max must change the results (the unit uses it)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator

from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.control.isa import Descriptor, ErrorCode, Flag, NormMode, Op
from ternfpga.rtl.vector.norm_quant import NormQuantOp
from ternfpga.sim.isa_model import Ctx, IsaModel, lane_absmax, pf_word
from ternfpga.sim.models.axi_mem import AxiReadMemory
from ternfpga.sim.models.op_unit import run_op as run_unit_op
from ternfpga.sim.models.vmem import VmemModel
from ternfpga.sim.numerics import pf

SMALL = AccelParams(batch=2, max_hidden=128, max_ffn=352, max_heads=4, max_kv_heads=2, max_head_dim=64,
                    max_ctx=32, max_vocab=512, max_layers=2)
WIDE = SMALL.with_(batch=4)
BASE = 0x2_4000_0000
DDR_BYTES = 0x3000
GAINS = 0x1000
EPS = pf.from_float(1e-6)
FX = 1 << 16


def vector(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """One FX vector of a kind of content."""
    if kind == "real":  # a few 2**16 with outlier channels of +-10**3 * 2**16
        h = rng.normal(0, 2 * FX, n)
        out = rng.choice(n, max(1, n // 64), replace=False)
        h[out] = rng.choice([-1, 1], len(out)) * rng.uniform(200, 1000, len(out)) * FX
        return np.clip(np.round(h), -(1 << 31), (1 << 31) - 1).astype(np.int64)
    if kind == "zero":
        return np.zeros(n, np.int64)
    if kind == "one":  # a single non-zero element
        h = np.zeros(n, np.int64)
        h[rng.integers(n)] = rng.choice([-1, 1]) * int(rng.integers(1, 1 << 31))
        return h
    if kind == "sat":  # saturated words
        h = rng.integers(-(1 << 20), 1 << 20, n)
        h[rng.random(n) < 0.3] = (1 << 31) - 1
        h[rng.random(n) < 0.3] = -(1 << 31)
        return h
    if kind == "tiny":  # |h| < 2**8: an exact left shift (u < 0)
        return rng.integers(-200, 201, n)
    if kind == "neg":  # the largest magnitude is negative and rounds half-way (u = 5)
        h = rng.integers(-(1 << 19), 1 << 19, n)
        h[rng.integers(n)] = -((1 << 20) + (1 << 4))
        return h
    if kind == "tie":  # the largest magnitude both positive and negative, half-way (u = 5)
        h = rng.integers(-(1 << 19), 1 << 19, n)
        h[rng.choice(n, min(n, 2), replace=False)] = [(1 << 20) + (1 << 4), -((1 << 20) + (1 << 4))][:min(n, 2)]
        return h
    if kind == "min":  # -2**31 beside 2**31 - 1 and other huge values: |-2**31| = 2**31 sets t and u
        h = rng.integers(-(1 << 31), 1 << 31, n)
        h[rng.integers(n)] = (1 << 31) - 1
        h[rng.integers(n)] = -(1 << 31)
        return h
    if kind == "top":  # max|h| = 2**31 - 1: M' rounds up to 2**16
        h = rng.integers(-(1 << 30), 1 << 30, n)
        h[rng.integers(n)] = (1 << 31) - 1
        return h
    if kind == "half":  # M = 2**23 (u = 8) and every other element exactly half-way between two zz
        # values, at a zz whose q lies just below a rounding boundary: rounding zz half up matters
        zz = np.arange(1, 1 << 15)
        zz = zz[(zz * 127) % (1 << 15) >= (1 << 14) - 127]
        zz = zz[(zz * 127) % (1 << 15) < 1 << 14]
        h = rng.choice(zz, n) * 256 + 128
        h[rng.integers(n)] = 1 << 23
        return h
    if kind == "rtie":  # M' = 40000, where R = round(127 * 2**24 / M') = 53268 rounds up, and every other
        # element at a zz where zz * R just reaches a rounding boundary of q: rounding R matters
        zz = np.arange(1, 40000)
        zz = zz[((zz * 53268) % (1 << 24) >= 1 << 23) & ((zz * 53268) % (1 << 24) < (1 << 23) + zz)]
        h = rng.choice(zz, n) * rng.choice([-256, 256], n)
        h[rng.integers(n)] = 40000 * 256
        return h
    raise ValueError(kind)


def make_case(params, mode, n, k, T, kinds, rng, *, g_kind="real", g_off=6):
    depth = params.vmem_words
    vmem = rng.integers(-(1 << 31), 1 << 31, (depth, params.batch), dtype=np.int64)
    src = int(rng.integers(0, depth // 2 - n))
    if mode == NormMode.HEADS:
        dst = src
        aux = int(rng.integers(depth // 2, depth - n // k))
    else:
        dst = int(rng.integers(depth // 2, depth - n - 1))
        aux = dst + n
    for t in range(T):
        vmem[src:src + n, t] = vector(kinds[t % len(kinds)], n, rng)
    ddr = bytearray(rng.integers(0, 256, DDR_BYTES, dtype=np.uint8).tobytes())
    if g_kind == "tiny":
        g = rng.integers(-3, 4, n)
    else:
        g = rng.integers(-(1 << 15), 1 << 15, n)
    ddr[GAINS + g_off:GAINS + g_off + 2 * n] = g.astype("<i2").tobytes()
    s_g = pf.from_float(float(rng.uniform(1e-6, 1e-3)))
    desc = Descriptor(op=Op.NORM_QUANT, mode=int(mode), n=n, k=k, src=src, dst=dst, aux=aux,
                      addr0=GAINS + g_off, scale0=(int(s_g.m), int(s_g.e)), scale1=(int(EPS.m), int(EPS.e)))
    return ddr, vmem, desc


def prescan_of(params, vmem, desc, T, rng) -> list[tuple[int, bool]]:
    """The MATMUL unit's per-lane max |h| of the vector at src for lanes < T; garbage in the others."""
    out = [lane_absmax(vmem[desc.src:desc.src + desc.n, t]) for t in range(T)]
    return out + [(int(rng.integers(0, 1 << 32)), bool(rng.integers(2))) for _ in range(T, params.batch)]


def run_op(params, ddr, vmem, desc, T, *, flags=0, seed=0, act_stall=0.3, error_addrs=None, prescan=None,
           slow_gains=False):
    """One op; returns (VMEM words, {(lane, chunk): data}, [(lane, pf word)], error, error_addr, cycles).
    ``prescan``: the (max |h|, reached by h >= 0) per lane on the unit's lane_absmax inputs;
    ``slow_gains``: the gain beats arrive slower than a pass uses them."""
    desc.flags = flags
    dut = NormQuantOp(params)
    slow = dict(latency=(40, 120), r_gap=0.93) if slow_gains else {}
    mem = AxiReadMemory(dut.axi, bytes(ddr), BASE, seed=seed, error_addrs=error_addrs, **slow)
    vm = VmemModel(params.batch, params.vmem_words, read=dut.vr, write=dut.vw)
    vm.words[:] = vmem & 0xFFFF_FFFF
    rng = np.random.default_rng(seed + 100)
    acts: dict[tuple[int, int], int] = {}
    xs: list[tuple[int, int]] = []
    lay = dut.act.payload.shape()
    result = {}

    async def engine(ctx):
        while True:
            ctx.set(dut.act.ready, bool(rng.random() >= act_stall))
            _, _, valid, ready, word, we, lane, value = await ctx.tick().sample(
                dut.act.valid, dut.act.ready, dut.act.payload.as_value(), dut.xs_we, dut.xs_lane,
                dut.xs_value.as_value())
            if valid and ready:
                b = (word >> lay["b"].offset) & ((1 << lay["b"].width) - 1)
                chunk = (word >> lay["chunk"].offset) & ((1 << lay["chunk"].width) - 1)
                assert (b, chunk) not in acts, f"chunk {chunk} of lane {b} sent twice"
                acts[b, chunk] = word >> lay["data"].offset
            if we:
                xs.append((lane, value))

    async def bench(ctx):
        for t, (amax, pos) in enumerate(prescan or ()):
            ctx.set(dut.lane_absmax[t], amax)
            ctx.set(dut.lane_absmax_pos.bit_select(t, 1), pos)
        await ctx.tick()
        r = await run_unit_op(ctx, dut, desc, {"T": T, "ddr_base": BASE}, limit=100_000, idle_after=4)
        result.update(error=r.error, addr=r.error_addr, cycles=r.cycles)
        assert not ctx.get(dut.act.valid), "act.valid after done"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    mem.attach(sim)
    vm.attach(sim)
    sim.add_testbench(engine, background=True)
    sim.add_testbench(bench)
    sim.run()
    return vm.words, acts, xs, result["error"], result["addr"], result["cycles"]


def check(params, ddr, vmem, desc, T, *, flags=0, seed=0, act_stall=0.3, prescan=None, slow_gains=False) -> int:
    """Run the op and compare everything with the ISA model; returns the cycle count."""
    words, acts, xs, err, _, cycles = run_op(params, ddr, vmem, desc, T, flags=flags, seed=seed, act_stall=act_stall,
                                             prescan=prescan, slow_gains=slow_gains)
    assert err == ErrorCode.OK
    model = IsaModel(params, ddr)
    model.vmem[:] = vmem
    # the model without the flag: the same results (its precondition, a MATMUL before, is not modelled here)
    model.op_norm_quant(replace(desc, flags=flags & ~Flag.PRESCANNED), Ctx(T=T, pos0=0, tok0=0, last_block=True))
    want = model.vmem & 0xFFFF_FFFF
    bad = np.argwhere(words != want)
    assert not len(bad), f"VMEM differs at (addr, lane) {bad[:6].tolist()} of {len(bad)}"
    tokens = [T - 1] if flags & Flag.LAST_TOKEN else list(range(T))
    tpl = params.engine.trits_per_lane
    if desc.mode == NormMode.HEADS:
        assert not acts and not xs
        return cycles
    chunks = -(-desc.n // tpl)
    assert sorted(acts) == [(t, c) for t in tokens for c in range(chunks)]
    for (t, c), data in acts.items():
        got = np.frombuffer(data.to_bytes(tpl, "little"), np.int8).astype(np.int64)
        assert np.array_equal(got, model.x8[t, c * tpl:(c + 1) * tpl]), (t, c)
    want_xs = [(t, int(pf_word(pf.PF(model.x_scale.m[t], model.x_scale.e[t]))) & 0xFFFF_FFFF) for t in tokens]
    assert xs == want_xs
    return cycles


@pytest.mark.parametrize("mode", [NormMode.RMS, NormMode.ABSMAX], ids=["rms", "absmax"])
@pytest.mark.parametrize("case", [
    dict(params=WIDE, n=352, T=4, kinds=("real", "zero", "sat", "one")),  # n = max_k, T = B
    dict(params=WIDE, n=37, T=3, kinds=("tiny", "neg", "top"), stall=0.9),  # n % 5 != 0, T < B, slow engine
    dict(params=SMALL, n=200, T=2, kinds=("half", "rtie")),
    dict(params=SMALL, n=1, T=2, kinds=("real", "tiny")),
    dict(params=SMALL, n=96, T=2, kinds=("real",), flags=Flag.LAST_TOKEN),
    dict(params=SMALL.with_(batch=1), n=80, T=1, kinds=("neg",)),
], ids=["max", "odd", "half", "n1", "last", "b1"])
def test_norm_quant_matches_the_isa_model(mode, case):
    seed = int(mode) * 10 + case["n"]
    rng = np.random.default_rng(seed)
    ddr, vmem, desc = make_case(case["params"], mode, case["n"], 0, case["T"], case["kinds"], rng)
    check(case["params"], ddr, vmem, desc, case["T"], flags=case.get("flags", 0), seed=seed,
          act_stall=case.get("stall", 0.3))


def reduction_shift_case():
    """t only shows through double rounding: these 16 values and gains (found by search) give other int8
    values or another scale if t were one larger or smaller."""
    rng = np.random.default_rng(106)
    h, g = rng.integers(-(1 << 26), 1 << 26, 16), rng.integers(-(1 << 15), 1 << 15, 16)
    ddr, vmem, desc = make_case(SMALL, NormMode.RMS, 16, 0, 1, ("zero",), np.random.default_rng(1), g_off=0)
    vmem[desc.src:desc.src + 16, 0] = h
    ddr[GAINS:GAINS + 32] = g.astype("<i2").tobytes()
    s_g = pf.from_float(3e-4)
    desc.scale0 = (int(s_g.m), int(s_g.e))
    return ddr, vmem, desc


def test_rms_depends_on_the_exact_reduction_shift():
    ddr, vmem, desc = reduction_shift_case()
    check(SMALL, ddr, vmem, desc, 1, seed=106)


def test_rms_tiny_gains_and_values_shift_left():
    rng = np.random.default_rng(5)
    ddr, vmem, desc = make_case(SMALL, NormMode.RMS, 64, 0, 2, ("tiny", "one"), rng, g_kind="tiny", g_off=0)
    check(SMALL, ddr, vmem, desc, 2, seed=5, act_stall=0.0)


@pytest.mark.parametrize("d,heads,T,flags", [(64, 4, 2, 0), (16, 5, 3, 0), (16, 3, 4, Flag.LAST_TOKEN)])
def test_heads_quantize_each_head_in_place(d, heads, T, flags):
    rng = np.random.default_rng(d + heads)
    params = WIDE if T > 2 else SMALL
    ddr, vmem, desc = make_case(params, NormMode.HEADS, d * heads, d, T, ("real", "half", "top", "neg"), rng)
    for t in range(T):  # one head of each lane is all zero, another holds one value
        vmem[desc.src + d:desc.src + 2 * d, t] = 0
        vmem[desc.src + 2 * d + t, t] = -(1 << 31)
    check(params, ddr, vmem, desc, T, flags=flags, seed=d)


PRESCANNED_CASES = [
    dict(params=WIDE, n=352, T=4, kinds=("real", "min", "zero", "tie")),  # n = max_k, T = B
    dict(params=WIDE, n=37, T=3, kinds=("neg", "sat", "top"), stall=0.9),
    dict(params=SMALL, n=200, T=2, kinds=("half", "rtie")),
    dict(params=SMALL, n=64, T=2, kinds=("tiny", "one")),
    dict(params=SMALL, n=1, T=2, kinds=("neg", "min")),
    dict(params=WIDE, n=96, T=3, kinds=("real", "sat", "neg"), flags=Flag.LAST_TOKEN),
    dict(params=SMALL.with_(batch=1), n=80, T=1, kinds=("min",)),
]


@pytest.mark.parametrize("mode", [NormMode.RMS, NormMode.ABSMAX], ids=["rms", "absmax"])
@pytest.mark.parametrize("case", PRESCANNED_CASES, ids=["max", "odd", "half", "tiny", "n1", "last", "b1"])
def test_prescanned_matches_the_isa_model(mode, case):
    """Flag.PRESCANNED: bit for bit the golden functions, on the lanes' own max (garbage elsewhere)."""
    params, T, flags = case["params"], case["T"], case.get("flags", 0)
    seed = 1000 + int(mode) * 10 + case["n"]
    rng = np.random.default_rng(seed)
    ddr, vmem, desc = make_case(params, mode, case["n"], 0, T, case["kinds"], rng)
    check(params, ddr, vmem, desc, T, flags=flags | Flag.PRESCANNED, seed=seed, act_stall=case.get("stall", 0.3),
          prescan=prescan_of(params, vmem, desc, T, rng))


@pytest.mark.parametrize("g_off", [0, 6])
def test_prescanned_rms_waits_for_each_gain_beat(g_off):
    """Without the MAX pass, STATS starts while the gains are still arriving (slower than it reads them
    here): each element waits for its beat (the buffer starts with zeros, so an early read shows)."""
    rng = np.random.default_rng(80 + g_off)
    ddr, vmem, desc = make_case(WIDE, NormMode.RMS, 352, 0, 2, ("real", "min"), rng, g_off=g_off)
    cycles = check(WIDE, ddr, vmem, desc, 2, flags=Flag.PRESCANNED, seed=g_off, act_stall=0.0,
                   prescan=prescan_of(WIDE, vmem, desc, 2, rng), slow_gains=True)
    assert cycles > 352 * 12 // 8, "the gains did not arrive slower than the pass reads them"


@pytest.mark.parametrize("mode", [NormMode.RMS, NormMode.ABSMAX], ids=["rms", "absmax"])
def test_prescanned_skips_the_first_pass(mode):
    """The same words, chunks and scales as the unflagged op, about n cycles fewer per lane."""
    n, T = 352, 4
    rng = np.random.default_rng(70 + int(mode))
    ddr, vmem, desc = make_case(WIDE, mode, n, 0, T, ("real", "min", "tie", "sat"), rng)
    plain = run_op(WIDE, ddr, vmem, desc, T, act_stall=0.0)
    fast = run_op(WIDE, ddr, vmem, desc, T, flags=Flag.PRESCANNED, act_stall=0.0,
                  prescan=prescan_of(WIDE, vmem, desc, T, rng))
    assert plain[3] == fast[3] == ErrorCode.OK
    assert np.array_equal(plain[0], fast[0]) and plain[1] == fast[1] and plain[2] == fast[2]
    saved = plain[5] - fast[5]  # (RMS: the gains' read still hides, now under the STATS pass)
    assert T * n - 40 <= saved <= T * n + 40, f"{plain[5]} -> {fast[5]} cycles"


@pytest.mark.parametrize("mode,kind,wrong", [
    (NormMode.ABSMAX, "neg", lambda m, p: (m, True)),  # the extreme taken as positive: M' rounds the other way
    (NormMode.ABSMAX, "real", lambda m, p: (2 * m + 1, p)),  # another u
    (NormMode.RMS, None, lambda m, p: (2 * m, p)),  # t one larger
    (NormMode.RMS, None, lambda m, p: (m // 2, p)),  # t one smaller
], ids=["sign", "u", "t+1", "t-1"])
def test_prescanned_uses_the_given_max(mode, kind, wrong):
    """A wrong max on the inputs changes the results: the flagged op does not scan the vector itself."""
    rng = np.random.default_rng(9)
    if kind is None:
        ddr, vmem, desc = reduction_shift_case()
    else:
        ddr, vmem, desc = make_case(SMALL, mode, 96, 0, 1, (kind,), rng)
    pre = prescan_of(SMALL, vmem, desc, 1, rng)
    plain = run_op(SMALL, ddr, vmem, desc, 1, act_stall=0.0)
    good = run_op(SMALL, ddr, vmem, desc, 1, flags=Flag.PRESCANNED, act_stall=0.0, prescan=pre)
    bad = run_op(SMALL, ddr, vmem, desc, 1, flags=Flag.PRESCANNED, act_stall=0.0, prescan=[wrong(*pre[0])] + pre[1:])
    assert np.array_equal(good[0], plain[0]) and good[2] == plain[2]
    assert not np.array_equal(bad[0], plain[0]) or bad[2] != plain[2]


def test_heads_ignore_prescanned():
    """HEADS takes no per-lane max: with the flag (and garbage on the inputs) it still scans each head."""
    rng = np.random.default_rng(44)
    ddr, vmem, desc = make_case(WIDE, NormMode.HEADS, 64 * 3, 64, 3, ("real", "neg", "min"), rng)
    check(WIDE, ddr, vmem, desc, 3, flags=Flag.PRESCANNED, seed=44,
          prescan=[(int(rng.integers(0, 1 << 32)), bool(rng.integers(2))) for _ in range(WIDE.batch)])


def test_gain_read_error_finishes_with_the_burst_address():
    rng = np.random.default_rng(3)
    ddr, vmem, desc = make_case(SMALL, NormMode.RMS, 300, 0, 2, ("real",), rng, g_off=0)
    bad = BASE + GAINS + 16 * 16  # the first beat of the second 16-beat burst
    *_, err, addr, _ = run_op(SMALL, ddr, vmem, desc, 2, seed=3, error_addrs={bad})
    assert (err, addr) == (ErrorCode.AXI_READ, bad)


@pytest.mark.parametrize("mode,n,k", [(NormMode.RMS, 0, 0), (NormMode.ABSMAX, 353, 0), (NormMode.HEADS, 64, 0),
                                      (NormMode.HEADS, 100, 64), (NormMode.HEADS, 64, 1 << 20), (3, 16, 0)])
def test_refuses_a_descriptor_beyond_the_maxima(mode, n, k):
    rng = np.random.default_rng(0)
    ddr, vmem, desc = make_case(SMALL, NormMode.ABSMAX, 8, 0, 2, ("real",), rng)
    desc.mode, desc.n, desc.k = int(mode), n, k
    words, acts, xs, err, _, cycles = run_op(SMALL, ddr, vmem, desc, 2)
    assert err == ErrorCode.BAD_DESC and cycles < 10
    assert np.array_equal(words, vmem & 0xFFFF_FFFF) and not acts and not xs
