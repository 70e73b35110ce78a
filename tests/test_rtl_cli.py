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
