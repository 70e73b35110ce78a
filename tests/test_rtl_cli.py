"""`ternfpga rtl engine` writes Verilog for a valid config and refuses one that cannot work."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ternfpga.host.cli import main

SMALL = ["--ports", "2", "--max-k", "64", "--max-n", "128"]


def test_generates_verilog_and_parameters(tmp_path, capsys):
    assert main(["rtl", "engine", *SMALL, "--batch", "2", "-o", str(tmp_path / "out")]) == 0
    v = (tmp_path / "out" / "tern_matmul_engine.v").read_text()
    assert "module tern_matmul_engine" in v
    for port in ("axi0__araddr", "axi1__rdata", "act__payload", "out__payload", "x_scale", "done", "error"):
        assert port in v, port
    meta = json.loads((tmp_path / "out" / "tern_matmul_engine.json").read_text())
    assert meta["ports"] == 2 and meta["batch"] == 2 and meta["layout"] == {"beat_bytes": 16, "ports": 2, "lanes": 16}
    assert "wrote" in capsys.readouterr().out
    assert not list((tmp_path / "out").glob("*.tmp*"))


@pytest.mark.parametrize("args,reason", [
    (["--batch", "0"], "batch 0"),
    (["--lanes", "3"], "3 lanes do not divide the 16-byte beat"),
    (["--lanes", "32"], "32 lanes do not divide"),
    (["--max-k", "40000"], "max_k 40000"),
    (["--max-n", "0"], "max_n 0"),
    (["--ports", "0"], "ports 0"),
    (["--beat-bytes", "12"], "beat_bytes 12"),
])
def test_refuses_configs_that_cannot_work(tmp_path, args, reason):
    out = tmp_path / "gen"
    r = subprocess.run([sys.executable, "-m", "ternfpga.host.cli", "rtl", "engine", *args, "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: engine config refused") and reason in lines[0]
    assert not out.exists()


ACCEL_SMALL = ["--batch", "2", "--max-hidden", "64", "--max-ffn", "160", "--max-heads", "4", "--max-kv-heads", "2",
               "--max-head-dim", "16", "--max-ctx", "16", "--max-vocab", "512", "--max-head-k", "16",
               "--max-layers", "2", "--q-lanes", "2"]


def test_generates_the_accelerator(tmp_path, capsys):
    from ternfpga.rtl.control.regmap import REGMAP
    from ternfpga.sim.numerics.spec import NUMERICS_VERSION

    assert main(["rtl", "accel", *ACCEL_SMALL, "-o", str(tmp_path / "acc")]) == 0
    v = (tmp_path / "acc" / "tern_accel.v").read_text()
    assert "module tern_accel" in v
    for port in ("hp0__araddr", "hp3__wdata", "hp1__bresp", "s_axil__awaddr", "s_axil__rdata", "irq"):
        assert port in v, port
    meta = json.loads((tmp_path / "acc" / "tern_accel.json").read_text())
    assert meta["params"]["batch"] == 2 and meta["params"]["max_hidden"] == 64
    assert meta["numerics_version"] == NUMERICS_VERSION and meta["regmap_version"] == REGMAP.version
    assert meta["identification"]["PARAMS_HASH"] == meta["params_hash"]
    assert "params hash" in capsys.readouterr().out


@pytest.mark.parametrize("args,reason", [
    (["--max-head-dim", "100"], "multiples of 16"),
    (["--batch", "0"], "batch 0"),
    (["--max-kv-heads", "64"], "max_kv_heads must be <= max_heads"),
    (["--max-ctx", "100000"], "max_ctx 100000"),
])
def test_refuses_accelerators_that_cannot_work(tmp_path, args, reason):
    out = tmp_path / "gen"
    r = subprocess.run([sys.executable, "-m", "ternfpga.host.cli", "rtl", "accel", *args, "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: accelerator config refused") and reason in lines[0], lines
    assert not out.exists()
