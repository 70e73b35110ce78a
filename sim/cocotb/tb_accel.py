"""cocotb testbench of the whole accelerator (rtl/accel.py) on Verilator, run by tests/test_accel_cocotb.py.

The DDR is one sparse memory behind four AXI4 slaves (cocotbext-axi RAM models on HP0..HP3: random read
latency, random AR/R/AW/W stalls, SLVERR ranges); the registers are driven through cocotbext-axi's
AxiLiteMaster. A case loads a model image and its compiled program into the DDR exactly as a host does,
runs calls (token ids, position, count, START, wait for the interrupt) and compares the shortlist of every
call, and every intermediate the program traces, with the golden model bit for bit. Fault cases inject
a read or write error, an abort, a bad descriptor, a short program or a bad token, check the status
registers and the interrupt, then run a clean call.

Configuration: JSON named by ``ACCEL_TB_CONFIG``::

    {"params": {AccelParams fields}, "results": "results.json",
     "cases": [{"name": "demo", "image": "demo.tern", "calls": [[ids...], ...], "trace": [names],
                "seed": 1, "latency": [1, 40], "pause": 0.1, "fault": null | {...}}]}
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\..*")
CONFIG_ENV = "ACCEL_TB_CONFIG"
LOG = logging.getLogger("cocotb.tb_accel")
CLOCK_NS = 4
DDR_BASE = 0x8_0000_0000  # the KV260's upper DDR window: bit 35 set in every address


def tiny_params():
    """An accelerator whose small maxima hold every synth preset (demo, tiny-*): the one the tests and the
    tiny benchmarks build (a Verilator build per parameter set)."""
    from ternfpga.rtl.accel_params import AccelParams

    return AccelParams(batch=4, max_hidden=128, max_ffn=352, max_heads=4, max_kv_heads=2, max_head_dim=32,
                       max_ctx=32, max_vocab=512, max_layers=4, max_head_k=256)


def accel_top(params):
    from ternfpga.rtl.accel import Accelerator

    return Accelerator(params)


def run_cases(params, cases: list[dict], workdir: Path) -> tuple[dict[str, dict], str | None]:
    """Run ``cases`` (dicts as in the module docstring) in one cocotb run on one Verilator model of
    ``params``. Returns ({name: result entry}, the run's failure message or None)."""
    from ternfpga.sim.cocotb.build import FAST_MODEL_ARGS, VERILATOR_ARGS, CocotbFailure, run_cocotb

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "results.json"
    out.unlink(missing_ok=True)
    cfg = workdir / "accel_tb.json"
    cfg.write_text(json.dumps({"params": {k: v for k, v in params.to_dict().items() if k != "vmem_depth"},
                               "results": str(out), "cases": cases}, indent=1))
    failure = None
    try:
        # Verilator -O3 and C++ -O1: the model's evaluation, not the bus models, sets the speed here
        run_cocotb(accel_top(params), name="accel", test_module=__name__, extra_env={CONFIG_ENV: str(cfg)},
                   build_args=[*VERILATOR_ARGS, *FAST_MODEL_ARGS], opt="-O1")
    except CocotbFailure as e:
        failure = str(e)
    done = {r["name"]: r for r in (json.loads(out.read_text()) if out.is_file() else [])}
    return done, failure


def counters_line(c: dict) -> str:
    return (f"{c['cycles_total']} cycles (matmul {c['cycles_matmul']}, attention {c['cycles_attention']}, vector "
            f"{c['cycles_vector']}, head {c['cycles_head']}, memstall {c['cycles_memstall']}, {c['ops']} ops)")


class DdrFault(Exception):
    pass


class TB:
    def __init__(self, dut, params, *, seed: int = 0, latency=(1, 40), pause: float = 0.1):
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRamWrite, AxiWriteBus
        from cocotbext.axi.sparse_memory import SparseMemory

        from ternfpga.sim.cocotb.axi import AxiReadMemory, random_pauses

        self.dut, self.p = dut, params
        self.rng = random.Random(seed)
        # the bus models log every reset and burst at INFO under the DUT's logger
        logging.getLogger(f"cocotb.{dut._name}").setLevel(logging.WARNING)
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.mem = SparseMemory(2**40)
        self.write_errors: list[tuple[int, int]] = []
        self.read_mems = []
        tb = self

        class FaultyWrite(AxiRamWrite):
            async def _write(self, address, data):
                if any(lo < address + len(data) and address < hi for lo, hi in tb.write_errors):
                    raise DdrFault(f"injected SLVERR at {address:#x}")
                return await super()._write(address, data)

        for i in range(params.ports):
            bus = AxiBus.from_prefix(dut, f"hp{i}_")
            rd = AxiReadMemory(bus.read, dut.clk, dut.rst, size=2**40, latency=tuple(latency), ar_pause=pause,
                               r_pause=pause, seed=seed * 17 + i)
            rd.mem = self.mem
            rd.log.setLevel(logging.WARNING)
            wr = FaultyWrite(AxiWriteBus.from_prefix(dut, f"hp{i}_"), dut.clk, dut.rst, mem=self.mem)
            wr.log.setLevel(logging.WARNING)
            r2 = random.Random(seed * 31 + i)
            wr.aw_channel.set_pause_generator(random_pauses(r2, pause))
            wr.w_channel.set_pause_generator(random_pauses(r2, pause))
            self.read_mems.append(rd)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)

    # -- registers ------------------------------------------------------------------------------
    async def write_reg(self, name: str, value: int) -> None:
        from ternfpga.host import regs

        await self.axil.write_dword(regs.OFFSETS[name], value & 0xFFFF_FFFF)

    async def read_reg(self, name: str) -> int:
        from ternfpga.host import regs

        return await self.axil.read_dword(regs.OFFSETS[name])

    async def read_reg64(self, base: str) -> int:
        lo = await self.read_reg(f"{base}_LO")
        hi = await self.read_reg(f"{base}_HI")
        return lo | hi << 32

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 5)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    def add_read_error(self, lo: int, hi: int) -> None:
        for rd in self.read_mems:
            rd.add_error_range(lo, hi)

    def clear_errors(self) -> None:
        for rd in self.read_mems:
            rd._errors.clear()
        self.write_errors.clear()

    # -- DDR ------------------------------------------------------------------------------------
    def load(self, data: bytes | bytearray) -> None:
        self.mem.write(DDR_BASE, bytes(data))

    def ddr(self, off: int, n: int) -> bytes:
        return self.mem.read(DDR_BASE + off, n)

    # -- a call ---------------------------------------------------------------------------------
    async def call(self, ids, position: int, lay, *, limit: int = 3_000_000, abort_after: int | None = None) -> dict:
        """Run one call; returns the status registers and counters. ``abort_after``: write ABORT that
        many cycles after START."""
        from ternfpga.host import regs

        self.mem.write(DDR_BASE + lay.tokens, np.asarray(ids, "<u4").tobytes())
        await self.write_reg("POSITION", position)
        await self.write_reg("COUNT", len(ids))
        await self.write_reg("CONTROL", regs.CONTROL_START)
        t0 = time.perf_counter()
        if abort_after is not None:
            await ClockCycles(self.dut.clk, abort_after)
            await self.write_reg("CONTROL", regs.CONTROL_ABORT)
        if not self.dut.irq.value:
            # one wake-up at the interrupt instead of one per cycle
            await First(RisingEdge(self.dut.irq), Timer(limit * CLOCK_NS, unit="ns"))
            if not self.dut.irq.value:
                raise AssertionError(f"no interrupt after {limit} cycles")
        st = await self.read_reg("STATUS")
        out = {"sim_cycles": None, "status": st, "busy": st & regs.STATUS_BUSY, "done": bool(st & regs.STATUS_DONE),
               "error": bool(st & regs.STATUS_ERROR), "error_code": await self.read_reg("ERROR_CODE"),
               "error_desc": await self.read_reg("ERROR_DESC"), "error_addr": await self.read_reg64("ERROR_ADDR"),
               "irq_status": await self.read_reg("IRQ_STATUS"), "wall_s": round(time.perf_counter() - t0, 2)}
        for c in ("TOTAL", "MATMUL", "ATTENTION", "VECTOR", "HEAD", "MEMSTALL"):
            out[f"cycles_{c.lower()}"] = await self.read_reg64(f"CYCLES_{c}")
        out["ops"] = await self.read_reg64("OPS")
        await self.write_reg("IRQ_STATUS", out["irq_status"])  # acknowledge
        await ClockCycles(self.dut.clk, 2)  # irq is registered
        assert not self.dut.irq.value, "irq still high after IRQ_STATUS was cleared"
        return out


def read_trace(tb: TB, slot, tokens) -> np.ndarray:
    rows = []
    for t in tokens:
        raw = tb.ddr(slot.offset + t * slot.stride, slot.n * (1 if slot.dtype == "i8" else 4))
        rows.append(np.frombuffer(raw, np.int8 if slot.dtype == "i8" else "<i4").astype(np.int64))
    return np.stack(rows)


def golden_words(v, dtype: str) -> np.ndarray:
    from ternfpga.sim.isa_model import pf_word

    return pf_word(v) if dtype == "pf" else np.asarray(v, np.int64)


# -- cases ----------------------------------------------------------------------------------------
def _config() -> dict:
    path = os.environ.get(CONFIG_ENV)
    return json.loads(Path(path).read_text()) if path else {"params": {}, "cases": []}


_CFG = _config()
_CASES = {c["name"]: c for c in _CFG["cases"]}


def _record(entry: dict) -> None:
    path = _CFG.get("results")
    if not path:
        return
    path = Path(path)
    old = json.loads(path.read_text()) if path.is_file() else []
    path.write_text(json.dumps(old + [entry], indent=1))


@cocotb.test(timeout_time=2000, timeout_unit="ms")
@cocotb.parametrize(name=[cocotb.Param(value=n, name=n) for n in _CASES])
async def accel_case(dut, name: str):
    case = _CASES[name]
    entry = {"name": name, "ok": False, "calls": []}
    try:
        await _run_case(dut, case, entry)
        entry["ok"] = True
    except BaseException as e:
        entry["message"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        _record(entry)


async def _run_case(dut, case: dict, entry: dict) -> None:
    from ternfpga.host import regs
    from ternfpga.host.ddr import ddr_image
    from ternfpga.host.program import compile_program
    from ternfpga.quant.image import ModelImage
    from ternfpga.rtl.accel_params import AccelParams
    from ternfpga.rtl.control.codes import ErrorCode
    from ternfpga.sim.golden import GoldenModel, Trace

    p = AccelParams(**_CFG["params"])
    image = ModelImage.open(case["image"])
    prog = compile_program(image, p, trace=case.get("trace", ()))
    lay = prog.layout
    tb = TB(dut, p, seed=case.get("seed", 0), latency=case.get("latency", (1, 40)), pause=case.get("pause", 0.1))
    await tb.reset()
    assert await tb.read_reg("MAGIC") == regs.MAGIC_VALUE
    assert await tb.read_reg("PARAMS_HASH") == p.digest()
    ddr = ddr_image(case["image"], prog)
    fault = case.get("fault") or {}
    size = prog.nbytes
    if fault.get("kind") == "bad_opcode":
        i = fault["desc"]
        ddr[lay.program + 64 * i] = 0xEE
    if fault.get("kind") == "bounds":
        size -= 64  # leaves out END
    tb.load(ddr)
    await tb.write_reg("DDR_BASE_LO", DDR_BASE & 0xFFFF_FFFF)
    await tb.write_reg("DDR_BASE_HI", DDR_BASE >> 32)
    await tb.write_reg("PROGRAM", lay.program)
    await tb.write_reg("PROGRAM_SIZE", size)
    await tb.write_reg("TOKENS", lay.tokens)
    await tb.write_reg("IRQ_ENABLE", regs.IRQ_ENABLE_DONE | regs.IRQ_ENABLE_ERROR)
    gold = GoldenModel(image)
    cache = gold.new_cache()
    position = 0
    kind = fault.get("kind")
    if kind:
        if kind == "read_error":
            lo = DDR_BASE + lay.tensor(image, fault["tensor"]) + fault.get("at", 0)
            tb.add_read_error(lo, lo + 16)
        elif kind == "write_error":
            lo = DDR_BASE + lay.kv_layer(fault.get("layer", 0)).v_rows
            tb.write_errors.append((lo, lo + 64 * lay.ctx * lay.head_dim))
        ids = case["calls"][0]
        st = await tb.call(ids, 0, lay, abort_after=fault.get("after"))
        entry["calls"].append({k: v for k, v in st.items()})
        want = ErrorCode[fault["code"]]
        assert st["done"] and st["error"] and not st["busy"], f"status {st['status']:#x} after a {kind}"
        assert st["error_code"] == want, f"error code {st['error_code']} ({ErrorCode(st['error_code']).name}), want {want.name}"
        assert st["irq_status"] & regs.IRQ_STATUS_ERROR and st["irq_status"] & regs.IRQ_STATUS_DONE
        if "desc" in fault:
            assert st["error_desc"] == fault["desc"], f"error desc {st['error_desc']}"
        if kind == "read_error":
            assert st["error_addr"] <= lo < st["error_addr"] + 16 * 256, f"error addr {st['error_addr']:#x} vs {lo:#x}"
        elif kind == "write_error":
            assert lo <= st["error_addr"] < lo + 64 * lay.ctx * lay.head_dim
        elif kind in ("bad_opcode", "bounds"):
            assert st["error_addr"] == DDR_BASE + lay.program + 64 * st["error_desc"]
        elif kind == "bad_token":
            assert st["error_addr"] == DDR_BASE + lay.tokens + 4 * fault["index"]
        # then a clean call from position 0 (a new sequence)
        tb.clear_errors()
        if kind == "bad_opcode":
            tb.load(ddr_image(case["image"], prog))
        if kind == "bounds":
            await tb.write_reg("PROGRAM_SIZE", prog.nbytes)
        calls = case["calls"][1:]
    else:
        calls = case["calls"]
    for ids in calls:
        tr = Trace()
        want = gold.forward(ids, cache, trace=tr).candidates
        st = await tb.call(ids, position, lay)
        entry["calls"].append({"tokens": len(ids), "position": position, **st})
        assert st["done"] and not st["error"], f"call at {position} ended with error {st['error_code']}"
        raw = np.frombuffer(tb.ddr(lay.results, 8 * lay.head_k), "<u4").reshape(-1, 2)
        got_ids, got_logits = raw[:, 0].astype(np.int64), raw[:, 1].astype(np.int32).astype(np.int64)
        T = len(ids)
        bad = []
        for tname, slot in prog.traces.items():
            toks = [T - 1] if slot.last_token_only else list(range(T))
            got = read_trace(tb, slot, toks)
            g = golden_words(tr[tname], slot.dtype).reshape(T, -1)[toks]
            if not np.array_equal(got, g):
                diff = np.argwhere(got != g)
                t0, i0 = diff[0]
                bad.append(f"{tname}: {len(diff)} words differ, first token {toks[t0]} index {i0}: "
                           f"got {got[t0, i0]} want {g[t0, i0]}")
        assert not bad, f"call at {position}: " + " | ".join(bad[:6])
        np.testing.assert_array_equal(got_ids, want.ids, err_msg=f"shortlist ids of the call at {position}")
        np.testing.assert_array_equal(got_logits, want.logits_fx, err_msg=f"shortlist logits at {position}")
        position += T
        LOG.info("%s: call of %d tokens at %d: %d cycles (%d ops) in %.1f s", case["name"], T,
                      position - T, st["cycles_total"], st["ops"], st["wall_s"])
