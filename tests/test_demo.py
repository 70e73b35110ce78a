"""`make demo`'s main job runs end to end on the shipped model and says what it did at each step; the
shipped model's golden (integer) run agrees with its fake-quant float run on text it was not trained on."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ternfpga.host.cli import main

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "shakespeare-tern"
# a passage written for this test (not from the corpus): the demo's eval step needs some held-out text
TEXT = """KING.
What news, my lord? Speak plainly, for the night is old,
And all our friends are waiting at the gate.

LORD.
My liege, the messenger is come from France,
And brings such tidings as will make you weep.
The duke is dead, his castle taken, and his son
Is fled into the forest with a few good men.

KING.
Then we must ride tonight. Call up the guard,
And let no man be idle till the dawn.
"""


def run_demo(out: Path, text: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ternfpga.host.demo", str(out), "--text", str(text), "--no-sim"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_demo_runs_every_step(tmp_path):
    text = tmp_path / "passage.txt"
    text.write_text(TEXT)
    out = run_demo(tmp_path / "demo", text)
    assert out.returncode == 0, out.stderr[-3000:]
    stdout = out.stdout
    for step in ("=== 1.", "=== 2.", "=== 3.", "=== 4."):
        assert step in stdout
    assert "bits/weight" in stdout and "crc" in stdout
    assert re.search(r"^golden\s+\d+\.\d+", stdout, re.M) and "top-1 agreement golden vs fake-quant" in stdout
    assert "decode" in out.stderr and "tok/s" in out.stderr
    assert (tmp_path / "demo" / "shakespeare-tern.tern").exists()
    # deterministic: a second run generates the same text
    again = run_demo(tmp_path / "demo2", text)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.split("=== 4.")[1] == stdout.split("=== 4.")[1].replace(str(tmp_path / "demo"),
                                                                                  str(tmp_path / "demo2"))


def test_shipped_model_golden_matches_fake_quant(tmp_path, capsys):
    """The integer model loses nothing that matters against the float model with the same quantization
    points: bits per byte within 2 % and top-1 agreement >= 97 % (the issue's targets, here on a passage
    the model never saw)."""
    image = tmp_path / "m.tern"
    assert main(["quantize", str(MODEL), "-o", str(image), "--no-progress"]) == 0
    text = tmp_path / "passage.txt"
    text.write_text(TEXT * 3)
    capsys.readouterr()
    assert main(["eval", "--model", str(image), "--checkpoint", str(MODEL), "--text", str(text), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    bpb = rep["bits_per_byte"]
    assert abs(bpb["golden"] - bpb["fake_quant"]) <= 0.02 * bpb["fake_quant"], bpb
    assert rep["top1_agreement"] >= 0.97, rep["top1_agreement"]
    # the model learned English verse: far better than the 8 bits of a uniform byte
    assert bpb["golden"] < 4.0, bpb


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json", "training.json", "loss.png"])
def test_shipped_model_files(name):
    assert (MODEL / name).is_file()
