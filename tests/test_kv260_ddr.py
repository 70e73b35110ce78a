"""The virtual KV260's DDR model (sim/kv260/ddr_model.cpp): calibration against the published KV260
measurements, the data path against a Python reference of the byte array, error responses, the frozen
mode, and the direction of a read-latency sweep."""
from __future__ import annotations

import numpy as np
import pytest

from ternfpga.sim.kv260 import ddr

BASE = 0x8_0000_0000  # the KV260's upper DDR window, as the board uses it
REGION = 64 * 1024    # one port's private region in the data-path tests
SHARED = 16 * 1024    # read-only region every port reads


# -- calibration -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibration() -> dict[str, ddr.CalibrationRow]:
    return {r.name: r for r in ddr.calibration_rows()}


@pytest.mark.parametrize("entry", ddr.CALIBRATION, ids=[e["name"] for e in ddr.CALIBRATION])
def test_calibration(calibration, entry):
    row = calibration[entry["name"]]
    assert all(abs(e) <= ddr.TOLERANCE for e in row.errors), \
        f"{entry['name']}: model {row.model} vs measured {entry['measured']} ({entry['source']})"
    r = row.result
    assert r["violations"] == 0
    # every byte asked for was read, and every result written
    runs = r["phases"]
    want_read = sum(p["read_beats"] * p["runs"] for p in runs) * ddr.BEAT_BYTES * len(r["ports"])
    want_write = sum(p["read_beats"] // p["beats_per_sum"] * 4 * p["runs"] for p in runs
                     if p["beats_per_sum"]) * len(r["ports"])
    assert (r["read_bytes"], r["write_bytes"]) == (want_read, want_write)


def test_calibration_table_says_where_the_figures_come_from():
    for e in ddr.CALIBRATION:
        assert e["source"] and e["name"] and e["args"]
        assert e["metric"] in ("total_gbps", "lag_hp12")


def test_shared_xpi_is_what_delays_hp1_hp2():
    """With a controller port of its own for each HP port the lag of the model stream disappears."""
    args = next(e["args"] for e in ddr.CALIBRATION if e["metric"] == "lag_hp12")
    shared = ddr.run_traffic(**args)
    own = ddr.run_traffic(**args, config={"xpi_of_port": (0, 1, 2, 3)})
    assert min(p["lag_hp12"] for p in shared["phases"]) > 0.05
    assert max(abs(p["lag_hp12"]) for p in own["phases"]) < 0.03


def test_write_turnarounds_are_what_costs():
    """Without the fitted switch overhead the long-write case lands far above the board's 13.33 GB/s."""
    e = next(e for e in ddr.CALIBRATION if e["measured"] == 13.33)
    free = ddr.run_traffic(**e["args"], config={"switch_extra": 0})["total_gbps"]
    assert free > 13.33 * 1.05


# -- read latency ----------------------------------------------------------------------------------
LATENCIES = (32, 64, 128, 256, 512, 1024)


@pytest.mark.parametrize("ports", [(0,), (0, 1, 2, 3)], ids=["1 port", "4 ports"])
def test_longer_latency_is_never_faster(ports):
    figs = [ddr.run_traffic(ports=ports, phases=((32768, 0),), latency=lat)["total_gbps"] for lat in LATENCIES]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(figs, figs[1:])), figs
    assert figs[-1] < figs[0] * 0.5  # at 1024 cycles the beats in flight, not the DRAM, set the rate
    # Little's law: at most 16 sub-bursts of 16 beats in flight per port
    bound = len(ports) * 256 * ddr.BEAT_BYTES / 1024 * ddr.PL_HZ / 1e9
    assert bound * 0.85 < figs[-1] <= bound


def test_latency_sweep_of_the_calibration_scenarios():
    """Every calibration scenario at 400 cycles is slower than at the default (the writes' timing moves
    with the latency, so short latencies may differ by a fraction of a percent either way)."""
    base = ddr.calibration_rows()
    slow = ddr.calibration_rows(latency=400)
    mid = ddr.calibration_rows(latency=200)
    for b, m, s in zip(base, mid, slow):
        if isinstance(b.model, list):
            continue
        assert m.model <= b.model * 1.01, b.name
        assert s.model < m.model, b.name


# -- data path -------------------------------------------------------------------------------------
def beat_addr(addr: int, size: int, i: int) -> int:
    return addr if i == 0 else ((addr >> size) << size) + (i << size)


def beat_lanes(addr: int, size: int, i: int) -> tuple[int, int, int]:
    """(bus word address, first lane, end lane) of beat i."""
    a = beat_addr(addr, size, i)
    word = a & ~15
    end = (((a >> size) + 1) << size) - word
    return word, a - word, end


class RefMemory:
    """The byte array as the AXI rules say it must look: strobed lanes of each beat written in order."""

    def __init__(self, mem: np.ndarray, base: int):
        self.m = mem.copy()
        self.base = base

    def write(self, b: ddr.Burst) -> None:
        data = np.frombuffer(b.data, np.uint8).reshape(b.beats, 16)
        for i in range(b.beats):
            word, lo, hi = beat_lanes(b.addr, b.size, i)
            lanes = np.arange(lo, hi)
            lanes = lanes[(np.array(b.strb[i]) >> lanes) & 1 == 1]
            self.m[word - self.base + lanes] = data[i, lanes]

    def expect_read(self, b: ddr.Burst) -> list[tuple[int, np.ndarray, int, int]]:
        out = []
        for i in range(b.beats):
            word, lo, hi = beat_lanes(b.addr, b.size, i)
            out.append((i, self.m[word - self.base + lo: word - self.base + hi].copy(), lo, hi))
        return out


def random_burst(rng: np.random.Generator, port: int, lo: int, hi: int, write: bool, bid: int) -> ddr.Burst:
    """A random INCR burst inside [lo, hi) that does not cross 4 KiB; a third end exactly on a 4 KiB line."""
    size = 4 if rng.random() < 0.7 else int(rng.integers(0, 4))
    step = 1 << size
    addr = int(rng.integers(lo, hi - step)) & ~(step - 1 if rng.random() < 0.8 else 0)
    aligned = (addr >> size) << size
    max_beats = min(256, ((addr | 4095) + 1 - aligned) >> size, (hi - aligned) >> size)
    beats = max_beats if rng.random() < 0.3 else int(rng.integers(1, max_beats + 1))
    if not write:
        return ddr.Burst(port, False, addr, beats, size, bid)
    data = rng.integers(0, 256, 16 * beats, dtype=np.uint8).tobytes()
    strb = tuple(0xFFFF if rng.random() < 0.6 else int(rng.integers(0, 1 << 16)) for _ in range(beats))
    return ddr.Burst(port, True, addr, beats, size, bid, data, strb)


def test_random_bursts_on_four_ports_match_the_reference():
    rng = np.random.default_rng(7)
    mem = rng.integers(0, 256, 4 * REGION + SHARED, dtype=np.uint8)
    shared_lo = BASE + 4 * REGION
    ref = RefMemory(mem, BASE)
    bursts: list[ddr.Burst] = []
    expected: dict[int, list] = {}
    for n in range(4 * 70):
        port = n % 4
        lo = BASE + port * REGION
        kind = rng.random()
        if kind < 0.45:
            b = random_burst(rng, port, lo, lo + REGION, True, n % 256)
            ref.write(b)
        elif kind < 0.85:
            b = random_burst(rng, port, lo, lo + REGION, False, n % 256)
            expected[len(bursts)] = ref.expect_read(b)
        else:
            b = random_burst(rng, port, shared_lo, shared_lo + SHARED, False, n % 256)
            expected[len(bursts)] = ref.expect_read(b)
        bursts.append(b)
    assert any(((b.addr >> b.size << b.size) + (b.beats << b.size)) % 4096 == 0 for b in bursts)
    res = ddr.run_script(mem, BASE, bursts, r_stall=0.3, b_stall=0.3, w_gap=0.3, seed=3,
                         config={"read_jitter": 40})
    assert res.finished and res.violations == 0
    for i, b in enumerate(bursts):
        if b.write:
            assert res.bresp[i] == 0
            assert res.ids[i] == [b.id]
            continue
        data, resp, last = res.reads[i]
        assert (resp == 0).all(), f"burst {i}: responses {resp}"
        assert last.tolist() == [k == b.beats - 1 for k in range(b.beats)]
        assert res.ids[i] == [b.id] * b.beats
        for k, want, lo, hi in expected[i]:
            assert (data[k, lo:hi] == want).all(), f"burst {i} ({b}), beat {k}: {data[k, lo:hi]} != {want}"
    assert (res.memory == ref.m).all(), f"{int((res.memory != ref.m).sum())} bytes differ"


@pytest.mark.parametrize("latency", [0, 100, 300])
def test_read_latency_is_ar_to_first_r_beat_on_an_idle_system(latency):
    mem = np.zeros(4096, np.uint8)
    res = ddr.run_script(mem, BASE, [ddr.Burst(0, False, BASE, 1)], latency=latency)
    # AR in cycle 0, R taken in cycle `latency`, the run stops after that cycle
    assert res.finished and res.cycles == (latency or 64) + 1


def test_a_burst_across_4k_is_flagged():
    mem = np.zeros(3 * 4096, np.uint8)
    res = ddr.run_script(mem, BASE, [ddr.Burst(0, False, BASE + 4096 - 32, 4)])
    assert res.finished and res.violations == 1


def test_error_responses():
    rng = np.random.default_rng(1)
    mem = rng.integers(0, 256, 8 * 4096, dtype=np.uint8)
    slv_rd = (BASE + 4096 + 256, BASE + 4096 + 512)
    slv_wr = (BASE + 2 * 4096 + 100, BASE + 2 * 4096 + 101)
    full = tuple([0xFFFF] * 16)
    data = bytes(range(256))
    bursts = [
        ddr.Burst(0, False, BASE + 4096 + 128, 32),                      # beats 8..23 in the SLVERR range
        ddr.Burst(1, True, BASE + 2 * 4096 + 64, 16, data=data, strb=full),    # touches the write range
        ddr.Burst(1, True, BASE + 2 * 4096 + 512, 16, data=data, strb=full),   # beside it: written
        ddr.Burst(2, False, BASE + 8 * 4096 - 64, 8),                    # last 4 beats beyond the array
        ddr.Burst(3, True, BASE + 8 * 4096 - 32, 4, data=data[:64], strb=full[:4]),  # partly outside
        ddr.Burst(3, False, BASE - 4096, 4),                             # below the array
    ]
    res = ddr.run_script(mem, BASE, bursts, read_errors=[slv_rd], write_errors=[slv_wr])
    assert res.finished
    _, resp, last = res.reads[0]
    addrs = BASE + 4096 + 128 + 16 * np.arange(32)
    want = np.where((addrs >= slv_rd[0]) & (addrs < slv_rd[1]), 2, 0)
    assert resp.tolist() == want.tolist() and last[-1]
    assert res.bresp[1] == 2 and res.bresp[2] == 0 and res.bresp[4] == 3
    assert res.reads[3][1].tolist() == [0] * 4 + [3] * 4
    assert res.reads[5][1].tolist() == [3] * 4
    expect = mem.copy()
    expect[2 * 4096 + 512: 2 * 4096 + 768] = np.frombuffer(data, np.uint8)  # only the OKAY burst landed
    assert (res.memory == expect).all()
    # and read data of OKAY beats is the memory's
    okay = res.reads[0][0][want == 0]
    assert (okay.ravel() == mem[4096 + 128: 4096 + 128 + 512].reshape(32, 16)[want == 0].ravel()).all()


def test_frozen_model_answers_nothing():
    rng = np.random.default_rng(5)
    mem = rng.integers(0, 256, 4 * REGION, dtype=np.uint8)
    bursts = []
    for n in range(64):
        port = n % 4
        addr = BASE + port * REGION + (n // 4) * 1024
        if n % 3:
            bursts.append(ddr.Burst(port, False, addr, 64))
        else:
            bursts.append(ddr.Burst(port, True, addr, 64, data=rng.integers(0, 256, 1024, dtype=np.uint8).tobytes(),
                                    strb=tuple([0xFFFF] * 64)))
    freeze_at, freeze_for = 150, 20_000
    res = ddr.run_script(mem, BASE, bursts, freeze_at=freeze_at, freeze_for=freeze_for)
    assert res.freeze_signals == 0 and res.freeze_handshakes == 0
    assert res.finished and res.cycles > freeze_at + freeze_for  # traffic was still in flight at the freeze
    ref = RefMemory(mem, BASE)
    for i, b in enumerate(bursts):
        if b.write:
            ref.write(b)
            assert res.bresp[i] == 0
        else:
            want = ref.expect_read(b)
            assert all((res.reads[i][0][k, lo:hi] == w).all() for k, w, lo, hi in want)
    assert (res.memory == ref.m).all()


def test_without_freeze_the_same_traffic_is_quick():
    """The frozen test's traffic needs far fewer cycles than the freeze (so the freeze really held it)."""
    mem = np.zeros(4 * REGION, np.uint8)
    bursts = [ddr.Burst(n % 4, False, BASE + (n % 4) * REGION + (n // 4) * 1024, 64) for n in range(64)]
    res = ddr.run_script(mem, BASE, bursts)
    assert res.finished and res.cycles < 2_000


# -- speed -----------------------------------------------------------------------------------------
def test_speed():
    r = ddr.run_traffic(phases=((200_000, 0),))
    # on its own the model runs well over 10 M cycles a second; a shared CPU gets a margin
    assert r["model_cycles_per_s"] > 4e6, r["model_cycles_per_s"]
