"""The package installs as one `ternfpga` namespace over the top-level folders, also non-editable."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_maps_folders_onto_ternfpga_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("ternfpga-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("ternfpga/quant/image.py", "ternfpga/sim/golden/model.py", "ternfpga/sim/numerics/pf.py",
                   "ternfpga/host/cli.py", "ternfpga/host/commands/generate.py", "ternfpga/rtl/__init__.py",
                   "ternfpga/boards/__init__.py"):
        assert module in names, module
    # never install generic top-level names
    assert not any(n.split("/")[0] in {"quant", "sim", "host", "rtl", "boards", "tests"} for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ternfpga = ternfpga.host.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_console_script_runs():
    exe = Path(sys.executable).parent / "ternfpga"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("quantize", "inspect", "eval", "generate", "synth"):
        assert cmd in out.stdout
