"""cocotb testbench for :class:`ternfpga.rtl.engine.MatmulEngine` (run by tests/test_engine_cocotb.py).

Configuration: the pytest side writes a JSON file and names it in ``ENGINE_TB_CONFIG``::

    {"params": {EngineParams fields}, "results": "path of a JSON file this module writes",
     "cases": [{"name": "q_full", "data": "case.npz", "base": 0x8_0000_0000,
                "rows": 896,              # rows of the whole packed tensor (port_stride); default n
                "seed": 1, "latency": [1, 40], "ar_pause": 0.2, "r_pause": 0.1, "ready": 0.75,
                "errors": [[lo, hi]],     # byte ranges answering SLVERR
                "corrupt": [[offset, value]],  # bytes changed in DDR after the golden was taken
                "expect_error": false, "expect_mismatch": false}, ...]}

Each ``data`` npz holds ``packed`` (uint8: the whole packed tensor as DDR holds it), ``w`` (int8 [n, k]
trits of the rows this pass computes, for the golden), ``x8`` (int8 [batch, k]), ``ws_m``/``ws_e``
(the per-tensor pf, shape [1]) and ``xs_m``/``xs_e`` (per-vector pfs, shape [batch]).

Every case is its own cocotb test (fresh clock, reset and memories), named ``engine_case_<name>``.
:func:`engine_top` is the Verilog-exportable top the pytest side builds.
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.utils import get_sim_time

CONFIG_ENV = "ENGINE_TB_CONFIG"
CLOCK_NS = 4


def engine_top(params):
    """The Verilog-exportable top: ``MatmulEngine(params)`` itself, or, for an engine whose ``act``
    stream is ``always_ready`` (before commit 4f2bbfb), the engine behind a wrapper that gives ``act`` a
    real ``ready`` port tied high: Amaranth 0.5 cannot export an always-ready stream (its ``ready`` is a
    constant in the port list: "Only signals and IO ports may be added as ports, not (const 1'd1)").
    Either way the ports keep the engine's names."""
    from amaranth.hdl import Module
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In

    from ternfpga.rtl.engine import MatmulEngine
    from ternfpga.rtl.port import act_layout

    engine = MatmulEngine(params)
    if not engine.signature.members["act"].signature.always_ready:
        return engine

    class EngineTop(wiring.Component):
        def __init__(self):
            self.engine = engine
            members = dict(engine.signature.members.items())
            members["act"] = In(stream.Signature(act_layout(params)))
            super().__init__(members)

        def elaborate(self, platform):
            m = Module()
            m.submodules.engine = e = self.engine
            for name, member in e.signature.members.items():
                ours, theirs = getattr(self, name), getattr(e, name)
                if name == "act":
                    m.d.comb += [theirs.payload.eq(ours.payload), theirs.valid.eq(ours.valid), ours.ready.eq(1)]
                elif member.is_signature:
                    wiring.connect(m, wiring.flipped(ours), theirs)
                elif member.flow == In:
                    m.d.comb += theirs.eq(ours)
                else:
                    m.d.comb += ours.eq(theirs)
            return m

    return EngineTop()


# -- payload packing (offsets from the Amaranth layouts themselves) --------------------------------
class Packing:
    def __init__(self, p):
        from ternfpga.rtl.port import act_layout, out_layout
        from ternfpga.rtl.scale import PF_LAYOUT

        act, out = act_layout(p), out_layout(p)
        self.act_off = {n: act[n].offset for n in ("b", "chunk", "data")}
        self.act_width = act.size
        self.out_width = out.size
        self.row_off, self.row_w = out["row"].offset, out["row"].width
        self.val_off = [out["value"].offset + 32 * b for b in range(p.batch)]
        self.pf_m, self.pf_e, self.pf_size = PF_LAYOUT["m"].offset, PF_LAYOUT["e"].offset, PF_LAYOUT.size
        self.batch = p.batch

    def act(self, b: int, chunk: int, word: int) -> int:
        o = self.act_off
        return (b << o["b"]) | (chunk << o["chunk"]) | (word << o["data"])

    def pf(self, m: int, e: int) -> int:
        return (m & 0xFFFF) << self.pf_m | (e & 0xFFFF) << self.pf_e

    def x_scale(self, scales) -> int:
        return sum(self.pf(m, e) << (b * self.pf_size) for b, (m, e) in enumerate(scales))

    def out(self, word: int) -> tuple[int, list[int]]:
        row = (word >> self.row_off) & ((1 << self.row_w) - 1)
        vals = []
        for off in self.val_off:
            v = (word >> off) & 0xFFFF_FFFF
            vals.append(v - (1 << 32) if v >> 31 else v)
        return row, vals


class EngineMismatch(AssertionError):
    """Engine outputs differ from the golden matvec (the message names the first differing rows)."""


def compare(got: dict[int, list[int]], want: np.ndarray, show: int = 5) -> None:
    """``got`` {row: [value per vector]} against golden ``want`` [batch, n]; raises EngineMismatch."""
    n = want.shape[1]
    missing = [r for r in range(n) if r not in got]
    extra = sorted(r for r in got if not 0 <= r < n)
    bad = [r for r in range(n) if r in got and got[r] != [int(v) for v in want[:, r]]]
    if missing or extra or bad:
        parts = []
        if bad:
            parts.append(f"{len(bad)} of {n} rows differ, first rows: " + "; ".join(
                f"row {r}: got {got[r]} want {[int(v) for v in want[:, r]]}" for r in bad[:show]))
        if missing:
            parts.append(f"{len(missing)} rows missing, first {missing[:show]}")
        if extra:
            parts.append(f"rows beyond n={n} emitted: {extra[:show]}")
        raise EngineMismatch(" | ".join(parts))


class TB:
    """Clock, reset, one AXI read memory per port (one shared DDR image, random latency and AR/R
    stalls), random ``out.ready`` back-pressure, random gaps between activation writes."""

    def __init__(self, dut, params, *, seed: int = 0, latency=(1, 40), ar_pause: float = 0.2,
                 r_pause: float = 0.1, ready: float = 0.75):
        from ternfpga.sim.cocotb.axi import attach_read_memory

        self.dut, self.p = dut, params
        self.rng = random.Random(seed)
        self.ready_prob = ready
        self.pack = Packing(params)
        assert len(dut.act__payload) == self.pack.act_width, "act payload width differs from act_layout"
        assert len(dut.out__payload) == self.pack.out_width, "out payload width differs from out_layout"
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.mems = []
        for i in range(params.ports):
            mem = attach_read_memory(dut, f"axi{i}_", latency=tuple(latency), ar_pause=ar_pause,
                                     r_pause=r_pause, seed=seed * 131 + i)
            mem.log.setLevel(logging.WARNING)  # one info line per burst otherwise
            if self.mems:
                mem.mem = self.mems[0].mem  # every port sees the same DDR contents
            self.mems.append(mem)

    @property
    def ddr(self):
        return self.mems[0]

    def add_error_range(self, lo: int, hi: int) -> None:
        for mem in self.mems:
            mem.add_error_range(lo, hi)

    async def reset(self) -> None:
        d = self.dut
        d.rst.value = 1
        d.start.value = 0
        d.act__valid.value = 0
        d.out__ready.value = 0
        await ClockCycles(d.clk, 4)
        d.rst.value = 0
        await RisingEdge(d.clk)

    async def write_acts(self, words) -> None:
        d = self.dut
        for b, c, word in words:
            while self.rng.random() < 0.1:  # an idle cycle now and then
                d.act__valid.value = 0
                await RisingEdge(d.clk)
            d.act__payload.value = self.pack.act(b, c, word)
            d.act__valid.value = 1
            await RisingEdge(d.clk)
            for _ in range(1000):
                if d.act__ready.value:
                    break
                await RisingEdge(d.clk)
            else:
                raise AssertionError("act.ready stayed low for 1000 cycles")
        d.act__valid.value = 0

    async def run_pass(self, n: int, k: int, x8: np.ndarray, w_scale, x_scale, *, base: int,
                       rows: int | None = None, limit: int | None = None) -> tuple[dict[int, list[int]], dict]:
        """One pass ``Y = W[:n] . X`` with W packed (``rows`` x ``k`` as a whole, default n) at ``base``
        in the memories. Returns ({row: [value per vector]}, {"cycles", "error", ...})."""
        from ternfpga.sim.engine_io import plan_pass

        d, p = self.dut, self.p
        plan = plan_pass(p, n, k, base, x8, w_scale, x_scale)
        if rows is not None and rows != n:  # a row slice: first n/(lanes*ports) groups of each region
            if n % p.layout.row_block:
                raise ValueError(f"a row slice needs a multiple of {p.layout.row_block} rows, got {n}")
            plan.port_stride = p.layout.port_region_bytes(rows, k)
        c0 = get_sim_time("ns")
        await self.write_acts(plan.act_words)
        act_cycles = round((get_sim_time("ns") - c0) / CLOCK_NS)
        for name in ("base", "port_stride", "n_rows", "k_chunks", "n_groups"):
            getattr(d, name).value = getattr(plan, name)
        d.w_scale.value = self.pack.pf(*plan.w_scale)
        d.x_scale.value = self.pack.x_scale(plan.x_scale)
        beats = plan.k_chunks * plan.n_groups  # per port
        regions = [(plan.base + i * plan.port_stride, plan.base + i * plan.port_stride + beats * p.beat_bytes)
                   for i in range(p.ports)]
        limit = limit or 10 * (beats + n) + 3000  # far above any stall pattern used here
        d.start.value = 1
        await RisingEdge(d.clk)
        d.start.value = 0
        t0 = time.perf_counter()
        got: dict[int, list[int]] = {}
        ar = [0] * p.ports  # beats requested per port
        ports = [(getattr(d, f"axi{i}__arvalid"), getattr(d, f"axi{i}__arready"), getattr(d, f"axi{i}__araddr"),
                  getattr(d, f"axi{i}__arlen")) for i in range(p.ports)]
        ov, orr, opay = d.out__valid, d.out__ready, d.out__payload
        for cycle in range(1, limit + 1):
            orr.value = self.rng.random() < self.ready_prob
            await RisingEdge(d.clk)  # values read now are those sampled at this edge
            for i, (av, ardy, aaddr, alen) in enumerate(ports):
                if av.value and ardy.value:
                    addr, nb = int(aaddr.value), int(alen.value) + 1
                    lo, hi = regions[i]
                    assert lo <= addr and addr + nb * p.beat_bytes <= hi, \
                        f"port {i} reads {addr:#x}+{nb} beats outside its region [{lo:#x}, {hi:#x})"
                    ar[i] += nb
            if ov.value and orr.value:
                row, vals = self.pack.out(int(opay.value))
                assert row not in got, f"row {row} emitted twice"
                got[row] = vals
            if d.done.value:
                break
        else:
            raise AssertionError(f"engine hung: {len(got)}/{n} rows after {limit} cycles, "
                                 f"busy={int(d.busy.value)}, beats requested per port {ar} of {beats}")
        status = {"cycles": cycle, "act_cycles": act_cycles, "error": int(d.error.value), "beats_per_port": beats,
                  "wall_s": round(time.perf_counter() - t0, 3)}
        assert not d.busy.value, "done with busy still high"
        assert ar == [beats] * p.ports, f"beats requested per port {ar}, expected {beats} each"
        orr.value = 1
        for _ in range(8):  # nothing more may come out after done
            await RisingEdge(d.clk)
            assert not ov.value, "out.valid after done"
        orr.value = 0
        return got, status


# -- cases from the pytest side ------------------------------------------------------------------
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


@cocotb.test(timeout_time=20, timeout_unit="ms")
@cocotb.parametrize(name=[cocotb.Param(value=n, name=n) for n in _CASES])
async def engine_case(dut, name: str):
    """One pass of the configured case, every output compared with the golden matvec."""
    case = _CASES[name]
    entry = {"name": name, "ok": False}
    try:
        await _run_case(dut, case, entry)
        entry["ok"] = True
    except BaseException as e:  # recorded for the pytest side, then re-raised for cocotb
        entry["message"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        _record(entry)


async def _run_case(dut, case: dict, entry: dict) -> None:
    from ternfpga.rtl.params import EngineParams
    from ternfpga.sim.golden.matvec import matvec
    from ternfpga.sim.numerics.pf import PF

    name = case["name"]
    p = EngineParams(**_CFG["params"])
    z = np.load(case["data"])
    w, x8, packed = z["w"], z["x8"], z["packed"]
    ws, xs = PF(z["ws_m"], z["ws_e"]), PF(z["xs_m"], z["xs_e"])
    n, k = w.shape
    base = int(case["base"])
    tb = TB(dut, p, seed=case.get("seed", 0), latency=case.get("latency", (1, 40)),
            ar_pause=case.get("ar_pause", 0.2), r_pause=case.get("r_pause", 0.1), ready=case.get("ready", 0.75))
    want = matvec(w, x8, ws, xs)  # from the uncorrupted trits
    mem = bytearray(packed.tobytes())
    for off, val in case.get("corrupt", []):
        assert mem[off] != val and 0 <= val <= 242
        mem[off] = val
    tb.ddr.write(base, bytes(mem))
    for lo, hi in case.get("errors", []):
        tb.add_error_range(lo, hi)
    await tb.reset()
    got, status = await tb.run_pass(n, k, x8, ws, xs, base=base, rows=case.get("rows"))
    entry.update(n=n, k=k, batch=p.batch, **status)
    dut._log.info("case %s: %dx%d batch %d, %d cycles, %d beats/port, error=%d, %.2f s",
                  name, n, k, p.batch, status["cycles"], status["beats_per_port"], status["error"],
                  status["wall_s"])
    assert status["error"] == int(case.get("expect_error", False)), f"error flag {status['error']}"
    if case.get("expect_mismatch"):
        try:
            compare(got, want)
        except EngineMismatch as e:
            assert "row " in str(e)
            entry["mismatch"] = str(e)
            dut._log.info("mismatch caught as expected: %s", e)
        else:
            raise AssertionError("a corrupted weight byte went unnoticed by the comparison")
    elif case.get("errors"):
        # the failed beats arrive as zero bytes (cocotbext-axi): the golden of that memory image
        assert sorted(got) == list(range(n)), f"{len(got)}/{n} rows after a read error"
        for lo, hi in case["errors"]:
            mem[max(lo - base, 0):max(hi - base, 0)] = bytes(len(mem[max(lo - base, 0):max(hi - base, 0)]))
        w_seen = p.layout.unpack(np.frombuffer(bytes(mem), np.uint8), case.get("rows", n), k)[:n]
        compare(got, matvec(w_seen, x8, ws, xs))
    else:
        compare(got, want)
