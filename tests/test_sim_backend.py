"""The ``sim`` backend: the host driver (host/driver.py) on the virtual KV260 (the accelerator's Verilog in
Verilator on the calibrated DDR model, through the real SimTransport), against the ``ref`` backend (the
golden model) bit for bit: every shortlist (ids and FX logits) and every generated token, on the demo model
and the tiny presets (tied and untied heads, GQA, biases, sub-norms), prefills of 1 token and of more than
B tokens (not a multiple of B), decodes up to the device's max context. Faults: the watchdog catches a
memory system that stops answering mid-call and the next calls are correct; a DDR read error names its
code, descriptor and address; the identification refuses a wrong version, wrong parameters and a model
beyond the maxima. The CLI: ``generate --backend sim`` (top_logits equal to ref's, --stats), ``eval``.

One Verilator build of the tests' small accelerator (tb_accel.tiny_params) per session; one board per
image.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from ternfpga.host.backend import open_backend
from ternfpga.host.cli import main
from ternfpga.host.watchdog import FLOOR
from ternfpga.quant.errors import TernError
from ternfpga.quant.image import ModelImage
from ternfpga.sim.cocotb.tb_accel import tiny_params
from ternfpga.sim.presets import preset_image

pytestmark = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None,
                                reason="the virtual KV260 needs g++ and make")

PARAMS = tiny_params()
B = PARAMS.batch


@pytest.fixture(scope="session")
def board_build():
    """The virtual KV260 for PARAMS, built once (cached across runs)."""
    from ternfpga.sim.kv260.board import build_board

    t0 = time.perf_counter()
    lib, built = build_board(PARAMS)
    if built:
        print(f"\nvirtual KV260 built in {time.perf_counter() - t0:.0f} s")
    return lib


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("simbackend")


def image_of(root: Path, preset: str, **kw) -> ModelImage:
    return ModelImage.open(preset_image(root, preset, **kw))


def sim(image, board_build):
    return open_backend("sim", image, params=PARAMS)


def same(got, want, what: str) -> None:
    np.testing.assert_array_equal(got.ids, want.ids, err_msg=f"{what}: shortlist ids")
    np.testing.assert_array_equal(got.logits_fx, want.logits_fx, err_msg=f"{what}: shortlist FX logits")


def check_estimate(be) -> None:
    """The watchdog's estimate covers the call the device just ran: its factor is pure margin."""
    c = be.last_call
    est = be.driver.watchdog.estimate(c["tokens"], c["position"])
    assert c["cycles_total"] <= est, \
        f"call of {c['tokens']} at {c['position']}: {c['cycles_total']} cycles > estimate {est}"
    assert c["budget_cycles"] == be.driver.budget(c["tokens"], c["position"])


def run_both(sim_be, ref_be, prompt: list[int], decodes: int) -> list[int]:
    """Prefill ``prompt`` on both, then greedy decodes; every shortlist equal; returns the tokens."""
    want = ref_be.prefill(prompt)
    got = sim_be.prefill(prompt)
    same(got, want, f"prefill of {len(prompt)}")
    check_estimate(sim_be)
    tokens = [int(want.ids[0])]
    for i in range(decodes):
        want = ref_be.decode(tokens[-1])
        got = sim_be.decode(tokens[-1])
        same(got, want, f"decode {i} at {sim_be.position - 1}")
        check_estimate(sim_be)
        tokens.append(int(want.ids[0]))
    assert sim_be.position == ref_be.position == len(prompt) + decodes
    return tokens


# -- sim == ref ------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset,prompt_len,decodes", [
    ("demo", 2 * B + 3, 3),  # three blocks, the last one partial
    ("tiny-qwen2", 1, 3),  # tied head, biases, GQA; a prefill of one token
    ("tiny-llama", B + 1, 2),  # untied head
    ("tiny-bitnet", B + 3, 2),  # sub-norms, ReLU², untied head
])
def test_sim_equals_ref(root, board_build, preset, prompt_len, decodes):
    image = image_of(root, preset)
    rng = np.random.default_rng(len(preset) + prompt_len)
    prompt = rng.integers(0, image.config.vocab, prompt_len).tolist()
    be = sim(image, board_build)
    ref = open_backend("ref", image)
    assert be.head_k == ref.head_k and be.max_ctx == min(ref.max_ctx, PARAMS.max_ctx)
    run_both(be, ref, prompt, decodes)
    # a new sequence on the same board overwrites the KV cache from position 0
    be.reset()
    ref.reset()
    run_both(be, ref, prompt[::-1][:3], 1)
    c = be.counters()
    assert c["prefill_calls"] == 2 and c["decode_calls"] == decodes + 1
    dev = c["device"]
    assert dev["prefill"]["calls"] == 2 and dev["prefill"]["cycles"] > 0 and dev["decode"]["ddr_read_bytes"] > 0
    be.close()


def test_one_evaluation_per_cycle_is_exact(root, board_build):
    """The board evaluates the design once a cycle (no HP-port output follows an input combinationally);
    settling before every edge as well gives the same cycles and the same shortlists."""
    from ternfpga.sim.kv260.board import COMB_OUTPUTS

    assert json.loads((board_build.parent / COMB_OUTPUTS).read_text()) == []
    image = image_of(root, "tiny-qwen2")
    prompt = np.random.default_rng(7).integers(0, image.config.vocab, B + 2).tolist()
    seen = []
    for settle in (False, True):
        be = sim(image, board_build)
        assert be.board.settle is False
        be.board.set_settle(settle)
        calls = [be.prefill(prompt), be.decode(3)]
        seen.append([(c.ids.tolist(), c.logits_fx.tolist()) for c in calls] + [be.last_call["cycles_total"]])
        be.close()
    assert seen[0] == seen[1]


def test_comb_outputs_finds_an_input_driven_output(tmp_path):
    """The build's check sees an output written in Verilator's input-combinational region."""
    from ternfpga.sim.kv260.board import comb_outputs

    (tmp_path / "Vaccel.h").write_text("    VL_OUT8(&hp0___05Frready,0,0);\n    VL_OUTW(&hp0___05Fwdata,127,0,4);\n"
                                       "    VL_IN8(&hp0___05Frvalid,0,0);\n")
    body = ("\nvoid Vaccel___024root___ico_sequent__TOP__0(Vaccel___024root* vlSelf) {\n"
            "    vlSelfRef.accel__DOT__x = vlSelfRef.hp0___05Frvalid;\nBODY\n}\n")
    f = tmp_path / "Vaccel___024root__0.cpp"
    f.write_text(body.replace("BODY", "    vlSelfRef.hp0___05Fwdata[1U] = 0U;"))
    assert comb_outputs(tmp_path) == ["hp0___05Fwdata"]
    f.write_text(body.replace("BODY", "    if (vlSelfRef.hp0___05Frready == 1U) {}"))
    assert comb_outputs(tmp_path) == []
    f.write_text(body.replace("BODY", "    vlSelfRef.hp0___05Frready = vlSelfRef.hp0___05Frvalid;"))
    assert comb_outputs(tmp_path) == ["hp0___05Frready"]


def test_decode_to_max_context(root, board_build):
    image = image_of(root, "demo", max_ctx=12, head_k=64)
    be, ref = sim(image, board_build), open_backend("ref", image)
    assert be.max_ctx == 12
    tokens = run_both(be, ref, [3, 1, 4, 1, 5], 12 - 5)
    assert be.position == 12 and len(tokens) == 8
    with pytest.raises(TernError, match="context is full"):
        be.decode(tokens[-1])
    be.close()


# -- faults ----------------------------------------------------------------------------------------
class FreezeMidCall:
    """The real SimTransport, whose memory system stops answering ``after`` cycles into the next call."""

    def __init__(self, transport, after: int):
        self.inner, self.after = transport, after

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def wait_irq(self, budget_cycles: int) -> bool:
        if self.after is None:
            return self.inner.wait_irq(budget_cycles)
        after, self.after = self.after, None
        if self.inner.wait_irq(after):
            return True
        self.inner.board.set_frozen(True)
        return self.inner.wait_irq(budget_cycles - after)


def test_watchdog_catches_a_hung_memory_and_recovers(root, board_build):
    image = image_of(root, "tiny-qwen2")
    be, ref = sim(image, board_build), open_backend("ref", image)
    run_both(be, ref, [7, 8, 9], 0)
    transport = be.driver.t
    be.driver.t = FreezeMidCall(transport, after=3000)
    budget = be.driver.budget(1, 3)
    t0 = time.perf_counter()
    with pytest.raises(TernError) as e:
        be.decode(11)
    wall = time.perf_counter() - t0
    msg = str(e.value)
    assert "\n" not in msg and "watchdog" in msg and f"{budget} cycles" in msg and "; " in msg, msg
    assert wall < 120, f"the watchdog took {wall:.0f} s of wall time"
    assert be.position == 3  # the failed call did not count
    assert transport.board.cycle >= budget  # it waited the whole budget, not less
    be.driver.t = transport
    transport.board.set_frozen(False)
    # the aborted call ends once memory answers; the next calls wait for it, then run cleanly
    want = ref.decode(11)
    same(be.decode(11), want, "decode after the watchdog")
    same(be.decode(int(want.ids[0])), ref.decode(int(want.ids[0])), "second decode after the watchdog")
    be.close()


def test_watchdog_aborts_a_slow_call(root, board_build):
    """A budget below what the call needs (factor 0: the floor alone): ABORT takes effect at the running
    op's end, the error names the descriptor, and the same call then runs cleanly."""
    image = image_of(root, "demo")
    be, ref = sim(image, board_build), open_backend("ref", image)
    prompt = [9, 8, 7, 6, 5, 4, 3, 2, 1]
    be.driver.watchdog_factor = 0
    with pytest.raises(TernError) as e:
        be.prefill(prompt)
    msg = str(e.value)
    assert "\n" not in msg and f"watchdog budget of {FLOOR} cycles" in msg and "was aborted at descriptor " in msg, msg
    assert be.position == 0
    be.driver.watchdog_factor = 4
    run_both(be, ref, prompt, 1)
    be.close()


def test_read_error_names_code_descriptor_and_address(root, board_build):
    image = image_of(root, "tiny-llama")
    be, ref = sim(image, board_build), open_backend("ref", image)
    lay = be.driver.program.layout
    lo = be.board.phys_base + lay.tensor(image, "layers.1.up.trits") + 4096
    be.board.add_read_error(lo, lo + 16)
    with pytest.raises(TernError) as e:
        be.prefill([1, 2])
    msg = str(e.value)
    descs = be.driver.program.descs
    up = next(i for i, d in enumerate(descs) if d.note == "layers.1 up_proj")
    assert "\n" not in msg and "AXI_READ" in msg and f"descriptor {up} " in msg and "up_proj" in msg, msg
    addr = int(msg.split("address ")[1].split()[0], 16)
    assert addr <= lo < addr + 16 * 256 and "image" in msg
    be.board.clear_errors()
    run_both(be, ref, [1, 2], 1)
    be.close()


# -- identification --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bare_board(board_build):
    from ternfpga.sim.kv260.board import SimTransport, VirtualKv260

    board = VirtualKv260(PARAMS, 1 << 20)
    yield SimTransport(board)
    board.close()


def test_identification(bare_board):
    from ternfpga.host.driver import Driver

    d = Driver(bare_board)  # no parameters: rebuilt from the registers, checked against PARAMS_HASH
    assert d.params.digest() == PARAMS.digest() and d.params.to_dict() == PARAMS.to_dict()
    assert Driver(bare_board, PARAMS).params == PARAMS
    with pytest.raises(TernError, match=r"not the bitstream's.*rtl accel"):
        Driver(bare_board, PARAMS.with_(max_ctx=64))


@pytest.mark.parametrize("which", ["NUMERICS_VERSION", "REGMAP_VERSION"])
def test_version_mismatch_is_refused(bare_board, monkeypatch, which):
    import ternfpga.host.driver as drv

    have = getattr(drv, which)
    monkeypatch.setattr(drv, which, have + 1)
    with pytest.raises(TernError) as e:
        drv.Driver(bare_board, PARAMS)
    msg = str(e.value)
    what = "numerics" if which == "NUMERICS_VERSION" else "register-map"
    assert f"bitstream implements {what} version {have}, this host implements {have + 1}; " in msg, msg
    assert "\n" not in msg


def test_model_beyond_the_maxima_is_refused(root, bare_board):
    from ternfpga.host.driver import Driver
    from ternfpga.quant.quantize import QuantizeOptions, quantize_checkpoint
    from ternfpga.quant.synth import tiny_qwen2, write_checkpoint

    ckpt = write_checkpoint(root / "wide-ckpt", tiny_qwen2(hidden=256, heads=8, kv_heads=2, head_dim=32))
    path = root / "wide.tern"
    quantize_checkpoint(ckpt, path, QuantizeOptions(max_ctx=16, progress=False))
    image = ModelImage.open(path)
    with pytest.raises(TernError, match=r"hidden 256 exceeds the accelerator's maximum 128"):
        Driver(bare_board, PARAMS).load(image, path)
    with pytest.raises(TernError, match=r"hidden 256 exceeds the accelerator's maximum 128"):
        open_backend("sim", image, params=PARAMS)


# -- the command line ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def accel_json(root) -> Path:
    from ternfpga.rtl.generate import accel_metadata

    path = root / "accel.json"
    path.write_text(json.dumps(accel_metadata(PARAMS)))
    return path


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_generate_cli_sim_equals_ref(capsys, root, board_build, accel_json):
    img = preset_image(root, "demo")
    args = ["generate", "--model", img, "--prompt-ids", "5,9,11,300,2,7", "-n", "4", "--ignore-eos", "--json",
            "--stats"]
    rc, out, err = run_cli(capsys, *args, "--backend", "ref")
    assert rc == 0, err
    ref = json.loads(out)
    rc, out, err = run_cli(capsys, *args, "--backend", "sim", "--accel", accel_json)
    assert rc == 0, err
    got = json.loads(out)
    assert got["backend"] == "sim" and ref["backend"] == "ref"
    assert got["ids"] == ref["ids"] and len(got["ids"]) == 4
    assert got["top_logits"] == ref["top_logits"] and all(isinstance(v, int) for v in got["top_logits"])
    assert ref["stats"] is None
    st = got["stats"]
    assert st["clock_hz"] == 250e6
    for phase, calls, tokens in (("prefill", 1, 6), ("decode", 3, 3)):
        p = st[phase]
        assert p["calls"] == calls and p["tokens"] == tokens and p["cycles"] > 0
        assert p["seconds"] == pytest.approx(p["cycles"] / 250e6)
        assert p["ddr_read_bytes"] > 0 and p["ddr_write_bytes"] > 0
        assert p["ddr_gb_s"] == pytest.approx((p["ddr_read_bytes"] + p["ddr_write_bytes"]) / p["seconds"] / 1e9)
        by = p["cycles_by_class"]
        assert set(by) == {"matmul", "attention", "vector", "head", "memstall"}
        assert 0 < sum(by[k] for k in ("matmul", "attention", "vector", "head")) <= p["cycles"]


def test_generate_cli_stats_text(capsys, root, board_build, accel_json):
    img = preset_image(root, "demo")
    base = ["generate", "--model", img, "--prompt-ids", "5,9,11", "-n", "2", "--ignore-eos", "--stats"]
    rc, out, err = run_cli(capsys, *base, "--backend", "ref")
    assert rc == 0, err
    assert err.splitlines()[-1] == "[ref] no device counters: this backend runs the golden model on the host"
    rc, out, err = run_cli(capsys, *base, "--backend", "sim", "--accel", accel_json)
    assert rc == 0, err
    lines = err.splitlines()[-4:]
    assert lines[0].startswith("[sim] prefill: 3 tokens in 1 calls, ") and "ms at 250 MHz" in lines[0], lines
    assert "DDR read " in lines[0] and "GB/s" in lines[0]
    assert lines[1].startswith("[sim] prefill cycles: matmul ") and "waiting on DDR" in lines[1]
    assert lines[2].startswith("[sim] decode: 1 tokens in 1 calls, ") and "tok/s" in lines[2]
    shares = [float(x.split()[-1].rstrip("%")) for x in lines[3].split(":", 1)[1].split(";")[0].split(",")]
    assert len(shares) == 5 and sum(shares) == pytest.approx(100, abs=0.3)


@pytest.mark.parametrize("content,keywords", [
    (None, ["do not exist", "rtl accel"]),
    ("{not json", ["not readable JSON"]),
    ('{"params": {"bogus": 1}}', ["no accelerator parameters", "bogus"]),
], ids=["missing", "not-json", "unknown-key"])
def test_generate_cli_bad_accel_json(capsys, root, content, keywords):
    img = preset_image(root, "demo")
    path = root / f"bad-{abs(hash(content))}.json"
    if content is not None:
        path.write_text(content)
    rc, out, err = run_cli(capsys, "generate", "--model", img, "--prompt-ids", "1", "--backend", "sim",
                           "--accel", path)
    assert rc == 2 and out == "" and len(err.splitlines()) == 1 and "Traceback" not in err
    for k in keywords:
        assert k in err, err


def test_eval_sim_equals_ref(capsys, root, board_build, accel_json):
    img = preset_image(root, "demo")
    ckpt = root / "demo-ckpt"
    args = ["eval", "--model", img, "--checkpoint", ckpt, "--tokens", "6", "--json"]
    rc, out, err = run_cli(capsys, *args)
    assert rc == 0, err
    ref = json.loads(out)
    rc, out, err = run_cli(capsys, *args, "--backend", "sim", "--accel", accel_json)
    assert rc == 0, err
    got = json.loads(out)
    assert ref.pop("backend") == "ref" and got.pop("backend") == "sim"
    assert got == ref
