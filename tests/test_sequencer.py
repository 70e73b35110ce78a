"""The sequencer in the Amaranth simulator: programs in a DDR model (random latency and stalls), units
played by the testbench (random op lengths, chosen errors). Checks the op order per block, the block
context each op sees, LAST_BLOCK skipping, the counters, and every fault: a unit's error, an AXI error
on a descriptor fetch, a bad opcode, a fetch past PROGRAM_SIZE, an abort mid-op, a zero count -- each
ends the call with done, the code, the descriptor index and the address, and the next start runs
cleanly."""
from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from ternfpga.rtl.control.isa import Descriptor, Epilogue, ErrorCode, Flag, Op, pack_program
from ternfpga.rtl.control.sequencer import Sequencer
from ternfpga.sim.models.axi_mem import AxiReadMemory

B = 4
UNITS = [(Op.EMBED, Op.NORM_QUANT, Op.BIAS, Op.ROPE, Op.STORE), (Op.MATMUL,), (Op.KV_WRITE, Op.ATTN), (Op.HEAD,)]
BASE = 0x8_0000_0000
PROG = 0x1000
TOKENS = 0x200


def program(n_layers: int = 2) -> list[Descriptor]:
    ds = [Descriptor(op=Op.EMBED, n=64)]
    for i in range(n_layers):
        ds += [Descriptor(op=Op.NORM_QUANT, layer=i), Descriptor(op=Op.MATMUL, layer=i, mode=Epilogue.STORE),
               Descriptor(op=Op.ATTN, layer=i), Descriptor(op=Op.MATMUL, layer=i, mode=Epilogue.RESIDUAL)]
    ds += [Descriptor(op=Op.NORM_QUANT, flags=Flag.LAST_BLOCK | Flag.LAST_TOKEN),
           Descriptor(op=Op.MATMUL, flags=Flag.LAST_BLOCK | Flag.RAW, mode=Epilogue.TOPK),
           Descriptor(op=Op.HEAD, flags=Flag.LAST_BLOCK), Descriptor(op=Op.END)]
    for i, d in enumerate(ds):
        d.spare = i  # lets the fake units see which descriptor they were given
    return ds


def expected_ops(ds, count: int, position: int):
    out = []
    for blk in range(0, count, B):
        last = blk + B >= count
        for d in ds:
            if d.op == Op.END:
                break
            if d.flags & Flag.LAST_BLOCK and not last:
                continue
            out.append((d.spare, min(B, count - blk), position + blk, blk, int(last)))
    return out


def unit_of(op) -> int:
    return next(u for u, ops in enumerate(UNITS) if op in ops)


def run(calls, *, seed=0, mem_errors=None, regs=None):
    """calls: list of dicts {count, position, program bytes, unit_errors {spare: (code, addr)},
    abort_at_op, op_len}. Returns per call (ops seen, status)."""
    dut = Sequencer(batch=B, units=UNITS)
    mem = bytearray(0x10000)
    rng = random.Random(seed)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    ddr = AxiReadMemory(dut.axi, mem, BASE, seed=seed, latency=(1, 40), error_addrs=mem_errors or set())
    ddr.attach(sim)
    results = []
    current = {}

    async def units(ctx):
        pending = None  # (unit, cycles left, error, addr)
        while True:
            _, _, starts, desc, c = await ctx.tick().sample(dut.unit_start, dut.desc, dut.ctx)
            ctx.set(dut.unit_done, 0)
            if starts:
                assert pending is None, "a unit started while another runs"
                assert bin(starts).count("1") == 1
                u = starts.bit_length() - 1
                assert u == unit_of(Op(desc.op)), f"op {Op(desc.op).name} went to unit {u}"
                current["seen"].append((desc.spare, c.T, c.pos0, c.tok0, c.last_block))
                assert c.ddr_base == BASE and c.tokens == TOKENS
                err = current["unit_errors"].get(desc.spare, (0, 0))
                pending = [u, rng.randint(0, current.get("op_len", 12)), *err]
                if current.get("abort_at_op") == len(current["seen"]):
                    ctx.set(dut.abort, 1)
                    await ctx.tick()
                    ctx.set(dut.abort, 0)
                    pending[1] += 5
                ctx.set(dut.unit_stall, 1 << u)
            elif pending is not None:
                if pending[1] == 0:
                    u, _, code, addr = pending
                    ctx.set(dut.unit_done, 1 << u)
                    ctx.set(dut.unit_error[u], code)
                    ctx.set(dut.unit_error_addr[u], addr)
                    ctx.set(dut.unit_stall, 0)
                    pending = None
                else:
                    pending[1] -= 1

    async def host(ctx):
        for call in calls:
            code = call["program"]
            mem[PROG:PROG + len(code)] = code
            current.clear()
            current.update(seen=[], unit_errors=call.get("unit_errors", {}), abort_at_op=call.get("abort_at_op"),
                           op_len=call.get("op_len", 12))
            for name, v in dict(ddr_base=BASE, program=PROG, program_size=call.get("size", len(code)),
                                tokens=TOKENS, position=call["position"], count=call["count"]).items():
                ctx.set(getattr(dut, name), v)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            events = 0
            for _ in range(20000):
                _, _, busy, done, ev = await ctx.tick().sample(dut.busy, dut.done, dut.done_event)
                events += ev
                if done:
                    break
            else:
                raise AssertionError("the call never finished")
            assert not busy
            for _ in range(5):
                await ctx.tick()
            status = {k: ctx.get(getattr(dut, k)) for k in ("error", "error_code", "error_desc", "error_addr")}
            status.update({c: ctx.get(getattr(dut, f"cycles_{c}")) for c in
                           ("total", "matmul", "attention", "vector", "head", "memstall", "ops")})
            status["done_events"] = events + ctx.get(dut.done_event)
            results.append((list(current["seen"]), status))

    sim.add_testbench(units, background=True)
    sim.add_testbench(host)
    sim.run()
    return results


def test_blocks_ops_context_and_counters():
    ds = program()
    code = pack_program(ds)
    calls = [dict(program=code, count=10, position=0), dict(program=code, count=1, position=10),
             dict(program=code, count=4, position=11), dict(program=code, count=5, position=15)]
    for (seen, st), call in zip(run(calls, seed=1), calls):
        assert seen == expected_ops(ds, call["count"], call["position"])
        assert st["error"] == 0 and st["done_events"] == 1
        assert st["ops"] == len(seen)
        assert st["matmul"] > 0 and st["attention"] > 0 and st["vector"] > 0 and st["head"] > 0
        assert st["matmul"] + st["attention"] + st["vector"] + st["head"] < st["total"]
        assert st["memstall"] > 0


@pytest.mark.parametrize("case", ["unit_error", "bad_desc", "bad_opcode", "bounds", "fetch_error", "abort",
                                  "zero_count"])
def test_faults_end_the_call_and_the_next_call_runs(case):
    ds = program()
    good = pack_program(ds)
    calls = []
    mem_errors = set()
    if case == "unit_error":
        calls.append(dict(program=good, count=6, position=0, unit_errors={3: (ErrorCode.AXI_WRITE, 0x1234)}))
        want = (ErrorCode.AXI_WRITE, 3, 0x1234)
    elif case == "bad_desc":  # the sequencer names the descriptor, whatever address the unit gives
        calls.append(dict(program=good, count=6, position=0, unit_errors={4: (ErrorCode.BAD_DESC, 0x99)}))
        want = (ErrorCode.BAD_DESC, 4, BASE + PROG + 4 * 64)
    elif case == "bad_opcode":
        bad = list(ds)
        bad[4] = Descriptor(op=99)
        calls.append(dict(program=pack_program(bad), count=2, position=0))
        want = (ErrorCode.BAD_OPCODE, 4, BASE + PROG + 4 * 64)
    elif case == "bounds":  # the program size leaves out END
        calls.append(dict(program=good, count=2, position=0, size=len(good) - 64))
        want = (ErrorCode.PROGRAM_BOUNDS, len(ds) - 1, BASE + PROG + (len(ds) - 1) * 64)
    elif case == "fetch_error":
        addr = BASE + PROG + 5 * 64 + 16  # second beat of descriptor 5
        mem_errors.add(addr)
        calls.append(dict(program=good, count=2, position=0))
        want = (ErrorCode.AXI_READ, 5, BASE + PROG + 5 * 64)  # the failing burst: descriptor 5
    elif case == "abort":
        calls.append(dict(program=good, count=9, position=0, abort_at_op=7, op_len=30))
        want = (ErrorCode.ABORTED, None, None)
    else:
        calls.append(dict(program=good, count=0, position=0))
        want = (ErrorCode.BAD_CALL, 0, 0)
    calls.append(dict(program=good, count=5, position=3))
    res = run(calls, seed=2, mem_errors=mem_errors)
    (seen, st), (seen2, st2) = res
    code, desc, addr = want
    assert st["error"] == 1 and st["error_code"] == code and st["done_events"] == 1
    if desc is not None:
        assert st["error_desc"] == desc
    if addr is not None:
        assert st["error_addr"] == addr
    if case == "abort":
        assert len(seen) == 7  # the op running at the abort completed, nothing after it started
        assert st["error_desc"] == seen[-1][0]
    if case == "fetch_error":
        assert all(s[0] < 5 for s in seen)
    if case in ("unit_error",):
        assert seen[-1][0] == 3
    # the next call is clean and complete
    if case != "fetch_error":
        assert st2["error"] == 0 and seen2 == expected_ops(ds, 5, 3)
