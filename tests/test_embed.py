"""EmbedOp in the Amaranth simulator: the embedding table, its scales and the token ids in a DDR model
(random latency and stalls), VMEM in the VMEM model; every written word compared with the ISA model's
op_embed (fixed.requant), plus BAD_TOKEN, AXI read errors and descriptors beyond the maxima."""
from __future__ import annotations


import numpy as np
import pytest
from amaranth.sim import Simulator

from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.control.isa import Descriptor, ErrorCode, Flag, Op
from ternfpga.rtl.vector.embed import EmbedOp
from ternfpga.sim.isa_model import Ctx, DeviceError, IsaModel
from ternfpga.sim.models.axi_mem import AxiReadMemory
from ternfpga.sim.models.op_unit import run_op
from ternfpga.sim.models.vmem import VmemModel

SMALL = AccelParams(batch=2, max_hidden=128, max_ffn=352, max_heads=4, max_kv_heads=2, max_head_dim=64,
                    max_ctx=32, max_vocab=512, max_layers=2)
WIDE = SMALL.with_(batch=4)
BASE = 0x3_0000_0000  # DDR_BASE: exercises the upper address bits
TABLE, SCALES, TOKENS = 0x1000, 0x12000, 0x13004  # TOKENS is 4-byte aligned only
DDR_BYTES = 0x14000


def make_ddr(rng: np.random.Generator, vocab: int, n: int) -> bytearray:
    ddr = bytearray(rng.integers(0, 256, DDR_BYTES, dtype=np.uint8).tobytes())
    e8 = rng.integers(-127, 128, (vocab, n), dtype=np.int64)
    ddr[TABLE:TABLE + vocab * n] = e8.astype(np.int8).tobytes()
    m = rng.integers(1 << 15, 1 << 16, vocab)
    e = rng.integers(-40, -12, vocab)
    e[rng.random(vocab) < 0.1] = rng.integers(-8, 4)  # saturating rows
    zero = rng.random(vocab) < 0.05
    m[zero], e[zero] = 0, 0
    words = (m | (e & 0xFFFF) << 16).astype(np.uint32)
    ddr[SCALES:SCALES + 4 * vocab] = words.astype("<u4").tobytes()
    return ddr


def set_tokens(ddr: bytearray, tok0: int, ids: list[int]) -> None:
    off = TOKENS + 4 * tok0
    ddr[off:off + 4 * len(ids)] = np.asarray(ids, dtype="<u4").tobytes()


def run_embed(params: AccelParams, ddr: bytearray, desc: Descriptor, T: int, tok0: int, *, seed: int = 0,
              error_addrs: set[int] | None = None, vmem_init: np.ndarray | None = None):
    """One op; returns (VMEM words, error, error_addr, cycles from start to done)."""
    dut = EmbedOp(params)
    mem = AxiReadMemory(dut.axi, bytes(ddr), BASE, seed=seed, error_addrs=error_addrs)
    vm = VmemModel(params.batch, params.vmem_words, write=dut.vw)
    if vmem_init is not None:
        vm.words[:] = vmem_init & 0xFFFF_FFFF
    result = {}

    async def bench(ctx):
        await ctx.tick()
        r = await run_op(ctx, dut, desc, {"T": T, "tok0": tok0, "ddr_base": BASE, "tokens": TOKENS}, limit=50_000,
                         idle_after=3)
        result.update(error=r.error, addr=r.error_addr, cycles=r.cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    mem.attach(sim)
    vm.attach(sim)
    sim.add_testbench(bench)
    sim.run()
    return vm.words, result["error"], result["addr"], result["cycles"]


def expected(params: AccelParams, ddr: bytearray, desc: Descriptor, T: int, tok0: int, vmem_init: np.ndarray):
    model = IsaModel(params, ddr)
    model.vmem[:] = vmem_init
    model.tokens_off = TOKENS
    model.op_embed(desc, Ctx(T=T, pos0=0, tok0=tok0, last_block=True))
    return model.vmem & 0xFFFF_FFFF


def random_vmem(params: AccelParams, rng) -> np.ndarray:
    return rng.integers(-(1 << 31), 1 << 31, (params.vmem_words, params.batch), dtype=np.int64)


@pytest.mark.parametrize("params,n,vocab,T,flags,seed", [
    (SMALL, 128, 512, 2, 0, 1),  # T = B, the largest row and vocabulary
    (SMALL, 48, 300, 1, 0, 2),  # T < B
    (WIDE, 16, 100, 4, 0, 3),  # one-beat rows, 4 lanes
    (WIDE, 64, 257, 3, Flag.LAST_TOKEN, 4),
    (SMALL.with_(batch=1), 32, 64, 1, 0, 5),
])
def test_embed_rows_match_the_isa_model(params, n, vocab, T, flags, seed):
    rng = np.random.default_rng(seed)
    ddr = make_ddr(rng, vocab, n)
    tok0 = int(rng.integers(0, 5))
    ids = [0, vocab - 1] + [int(x) for x in rng.integers(0, vocab, T)]
    ids = ids[:T] if T > 1 else [vocab - 1]
    set_tokens(ddr, tok0, ids)
    dst = int(rng.integers(0, params.vmem_words - n))
    desc = Descriptor(op=Op.EMBED, flags=flags, n=n, k=vocab, dst=dst, addr0=TABLE, addr1=SCALES)
    init = random_vmem(params, rng)
    words, err, _, cycles = run_embed(params, ddr, desc, T, tok0, seed=seed, vmem_init=init)
    assert err == ErrorCode.OK
    want = expected(params, ddr, desc, T, tok0, init)
    assert np.array_equal(words, want), np.argwhere(words != want)[:8]
    tokens = 1 if flags & Flag.LAST_TOKEN else T
    assert cycles < tokens * (n + 8) + 400


def test_embed_bad_token_reports_its_address():
    rng = np.random.default_rng(7)
    params, n, vocab, T, tok0 = WIDE, 32, 200, 4, 3
    ddr = make_ddr(rng, vocab, n)
    set_tokens(ddr, tok0, [5, 199, 200, 1 << 31])
    desc = Descriptor(op=Op.EMBED, n=n, k=vocab, dst=0, addr0=TABLE, addr1=SCALES)
    init = random_vmem(params, rng)
    with pytest.raises(DeviceError) as exc:
        expected(params, ddr, desc, T, tok0, init.copy())
    assert exc.value.code == ErrorCode.BAD_TOKEN
    words, err, addr, _ = run_embed(params, ddr, desc, T, tok0, seed=7, vmem_init=init)
    assert err == ErrorCode.BAD_TOKEN
    assert addr == BASE + exc.value.addr == BASE + TOKENS + 4 * (tok0 + 2)


@pytest.mark.parametrize("where", ["ids", "row", "scale"])
def test_embed_read_error_finishes_with_the_burst_address(where):
    rng = np.random.default_rng(11)
    params, n, vocab, T, tok0 = WIDE, 64, 100, 4, 0
    ddr = make_ddr(rng, vocab, n)
    ids = [3, 50, 77, 99]
    set_tokens(ddr, tok0, ids)
    if where == "ids":
        bad = BASE + (TOKENS & ~15)
    elif where == "row":
        bad = BASE + TABLE + ids[1] * n  # a row's first beat starts its burst
    else:
        bad = BASE + ((SCALES + 4 * ids[2]) & ~15)
    desc = Descriptor(op=Op.EMBED, n=n, k=vocab, dst=0, addr0=TABLE, addr1=SCALES)
    _, err, addr, _ = run_embed(params, ddr, desc, T, tok0, seed=11, error_addrs={bad})
    assert (err, addr) == (ErrorCode.AXI_READ, bad)


@pytest.mark.parametrize("n,k", [(24, 100), (0, 100), (144, 100), (64, 513), (64, 0)])
def test_embed_refuses_a_descriptor_beyond_the_maxima(n, k):
    ddr = bytearray(DDR_BYTES)
    desc = Descriptor(op=Op.EMBED, n=n, k=k, dst=0, addr0=TABLE, addr1=SCALES)
    words, err, _, cycles = run_embed(SMALL, ddr, desc, 2, 0)
    assert err == ErrorCode.BAD_DESC and cycles < 5
    assert not words.any()
