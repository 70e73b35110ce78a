"""`make demo`'s main job runs end to end and says what it did at each step."""
import subprocess
import sys


def test_demo_runs_every_step(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ternfpga.host.demo", str(tmp_path / "demo")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "RANDOM weights" in text
    for step in ("=== 1.", "=== 2.", "=== 3.", "=== 4."):
        assert step in text
    assert "bits/weight" in text and "crc" in text
    assert "decode" in out.stderr and "tok/s" in out.stderr
    assert (tmp_path / "demo" / "tiny-qwen2.tern").exists()
    # deterministic: a second run generates the same text
    again = subprocess.run([sys.executable, "-m", "ternfpga.host.demo", str(tmp_path / "demo2")],
                           capture_output=True, text=True, timeout=300)
    assert again.stdout.split("=== 4.")[1].splitlines()[2] == text.split("=== 4.")[1].splitlines()[2]
