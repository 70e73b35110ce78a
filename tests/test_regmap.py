"""The register map: well-formed, documented, the offsets the host and the board rely on, and the
products generated from it (host constants, C header, ``ternfpga rtl regmap``)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Shape
from amaranth.lib.wiring import In, Out

from ternfpga.host.cli import main
from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.control.c_header import c_header
from ternfpga.rtl.control.isa import ErrorCode, Flag, Op
from ternfpga.rtl.control.regfile import core_members
from ternfpga.rtl.control.regmap import (ERROR_CODES, MAGIC, REGMAP, Access, Register, RegMap,
                                         identification)

CLI = str(Path(sys.executable).parent / "ternfpga")
SMALL_OPTS = ["--batch", "2", "--max-hidden", "1024", "--max-ffn", "2816", "--max-heads", "16",
              "--max-kv-heads", "2", "--max-head-dim", "64", "--max-ctx", "1024", "--max-vocab", "32000",
              "--max-head-k", "64", "--max-layers", "24"]
SMALL = AccelParams(batch=2, max_hidden=1024, max_ffn=2816, max_heads=16, max_kv_heads=2, max_head_dim=64,
                    max_ctx=1024, max_vocab=32000, max_head_k=64, max_layers=24)

# the documented map (offset, access); the host code, the board and the simulator rely on these
EXPECTED = {
    "MAGIC": (0x000, "RO"), "VERSION": (0x004, "RO"), "PARAMS_HASH": (0x008, "RO"), "BATCH": (0x00C, "RO"),
    "MAX_HIDDEN": (0x010, "RO"), "MAX_FFN": (0x014, "RO"), "MAX_HEADS": (0x018, "RO"),
    "MAX_KV_HEADS": (0x01C, "RO"), "MAX_HEAD_DIM": (0x020, "RO"), "MAX_CTX": (0x024, "RO"),
    "MAX_VOCAB": (0x028, "RO"), "MAX_HEAD_K": (0x02C, "RO"), "MAX_LAYERS": (0x030, "RO"),
    "VMEM_DEPTH": (0x034, "RO"),
    "CONTROL": (0x040, "W1P"), "STATUS": (0x044, "RO"), "ERROR_CODE": (0x048, "RO"), "ERROR_DESC": (0x04C, "RO"),
    "ERROR_ADDR_LO": (0x050, "RO"), "ERROR_ADDR_HI": (0x054, "RO"), "IRQ_ENABLE": (0x058, "RW"),
    "IRQ_STATUS": (0x05C, "W1C"), "DDR_BASE_LO": (0x060, "RW"), "DDR_BASE_HI": (0x064, "RW"),
    "PROGRAM": (0x068, "RW"), "PROGRAM_SIZE": (0x06C, "RW"), "TOKENS": (0x070, "RW"), "POSITION": (0x074, "RW"),
    "COUNT": (0x078, "RW"),
    **{f"{c}_{h}": (0x080 + 8 * i + 4 * j, "RO")
       for i, c in enumerate(("CYCLES_TOTAL", "CYCLES_MATMUL", "CYCLES_ATTENTION", "CYCLES_VECTOR", "CYCLES_HEAD",
                              "CYCLES_MEMSTALL", "OPS"))
       for j, h in enumerate(("LO", "HI"))},
}
FIELDS = {"VERSION": {"NUMERICS": (0, 16), "REGMAP": (16, 16)}, "CONTROL": {"START": (0, 1), "ABORT": (1, 1)},
          "STATUS": {"BUSY": (0, 1), "DONE": (1, 1), "ERROR": (2, 1)},
          "IRQ_ENABLE": {"DONE": (0, 1), "ERROR": (1, 1)}, "IRQ_STATUS": {"DONE": (0, 1), "ERROR": (1, 1)}}


def test_the_documented_offsets_and_fields():
    assert {r.name: (r.offset, r.access.value) for r in REGMAP} == EXPECTED
    assert {r.name: {f: v[:2] for f, v in r.fields.items()} for r in REGMAP if r.fields} == FIELDS
    assert REGMAP.irq == ("IRQ_STATUS", "IRQ_ENABLE")
    assert set(REGMAP.pairs) == {"ERROR_ADDR", "DDR_BASE", "CYCLES_TOTAL", "CYCLES_MATMUL", "CYCLES_ATTENTION",
                                 "CYCLES_VECTOR", "CYCLES_HEAD", "CYCLES_MEMSTALL", "OPS"}


def test_no_overlapping_offsets_and_every_register_documented():
    regs = list(REGMAP)
    assert [r.offset for r in regs] == sorted(r.offset for r in regs)
    for a, b in zip(regs, regs[1:]):
        assert b.offset >= a.offset + 4, (a.name, b.name)
    for r in regs:
        assert r.offset % 4 == 0 and r.offset + 4 <= 1 << 16 and r.width == 32
        assert len(r.doc.split()) >= 3, r.name
        used = 0
        for f, (lsb, width, doc) in r.fields.items():
            assert len(doc.split()) >= 3, (r.name, f)
            assert not used & r.field_mask(f)
            used |= r.field_mask(f)
    assert REGMAP["STATUS"] is REGMAP.at(0x044) and REGMAP.at(0x03C) is None and "COUNT" in REGMAP


@pytest.mark.parametrize("build,reason", [
    (lambda: RegMap([Register("A", 0, Access.RW, "a reg"), Register("B", 0, Access.RW, "b reg")]), "share offset"),
    (lambda: RegMap([Register("A", 0, Access.RW, "a reg"), Register("A", 4, Access.RW, "b reg")]), "used twice"),
    (lambda: RegMap([Register("X_LO", 0, Access.RO, "lo half")]), "X_LO must be"),
    (lambda: RegMap([Register("X_LO", 4, Access.RO, "lo"), Register("X_HI", 8, Access.RO, "hi")]), "aligned"),
    (lambda: Register("A", 2, Access.RW, "a reg"), "word aligned"),
    (lambda: Register("A", 0, Access.RW, " "), "no doc"),
    (lambda: Register("A", 0, Access.W1P, "pulse", fields={"GO": (0, 2, "go bits")}), "1 bit"),
    (lambda: Register("A", 0, Access.RW, "r", fields={"P": (0, 4, "p"), "Q": (3, 2, "q")}), "overlaps"),
    (lambda: Register("A", 0, Access.RW, "r", fields={"P": (0, 4, " ")}), "no doc"),
    (lambda: Register("A", 0, Access.RW, "r", fields={"P": (0, 4, "p")}, reset=0x10), "outside its fields"),
])
def test_malformed_maps_are_refused(build, reason):
    with pytest.raises(ValueError, match=reason):
        build()


def test_error_codes_agree_with_the_isa():
    assert {c: n for c, (n, _) in ERROR_CODES.items()} == {int(e): e.name for e in ErrorCode}


def test_identification_values():
    for params in (AccelParams(), SMALL):
        ident = identification(params)
        assert ident["MAGIC"] == MAGIC and ident["PARAMS_HASH"] == params.digest()
        assert ident["BATCH"] == params.batch and ident["MAX_VOCAB"] == params.max_vocab
        assert ident["VMEM_DEPTH"] == params.vmem_words
        assert set(ident) == {r.name for r in REGMAP if r.const}


def test_host_constants_without_amaranth():
    code = ("import sys; import ternfpga.host.regs as r; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'amaranth'], 'amaranth imported'; "
            "print(r.CONTROL, r.CONTROL_START, r.STATUS_ERROR, r.STATUS_ERROR_SHIFT, r.MAGIC, r.MAGIC_VALUE, "
            "r.PAIRS['CYCLES_TOTAL'], r.error_name(5), r.error_name(99), r.field(0x00010001, 'VERSION_REGMAP'))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["64", "1", "4", "2", "0", str(MAGIC), "(128,", "132)", "ABORTED", "UNKNOWN(99)",
                                  "1"]


def test_core_members_follow_the_naming_rule():
    members = core_members(REGMAP)
    names = set(members)
    flows = {n: (m.flow, Shape.cast(m.shape).width) for n, m in members.items()}
    assert flows["ddr_base"] == (Out, 64) and flows["cycles_total"] == (In, 64) and flows["error_addr"] == (In, 64)
    assert flows["control_start"] == (Out, 1) and flows["irq_status_done"] == (In, 1)
    assert flows["status_busy"] == (In, 1) and flows["program"] == (Out, 32) and flows["irq_enable_error"] == (Out, 1)
    assert {"ddr_base", "program", "program_size", "tokens", "position", "count", "control_start", "control_abort",
            "status_busy", "status_done", "status_error", "error_code", "error_desc", "error_addr",
            "irq_enable_done", "irq_enable_error", "irq_status_done", "irq_status_error", "cycles_total",
            "ops"} <= names
    assert not names & {r.name.lower() for r in REGMAP if r.const}  # constants are built in


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_c_header_compiles_and_agrees(tmp_path):
    header = tmp_path / "ternfpga_regs.h"
    res = subprocess.run([CLI, "rtl", "regmap", *SMALL_OPTS, "--c-header", str(header)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"wrote {header}")
    text = header.read_text()
    assert text.splitlines()[0].startswith("/* Generated by") and "#ifndef TERNFPGA_REGS_H" in text
    assert text == c_header(SMALL)
    assert not list(tmp_path.glob("*.tmp*"))
    ident = identification(SMALL)
    checks = [f"TERNFPGA_{r.name}_OFFSET == 0x{r.offset:X}u" for r in REGMAP]
    checks += [f"TERNFPGA_{r.name}_{f}_MASK == 0x{r.field_mask(f):X}u && TERNFPGA_{r.name}_{f}_SHIFT == "
               f"{r.field_shift(f)}u" for r in REGMAP for f in r.fields]
    checks += [f"TERNFPGA_{k}_VALUE == {v}u" for k, v in ident.items()]
    checks += [f"TERNFPGA_ERR_{e.name} == {int(e)}u" for e in ErrorCode]
    checks += [f"TERNFPGA_OP_{o.name} == {int(o)}u" for o in Op] + [f"TERNFPGA_FLAG_{f.name} == {int(f)}u" for f in Flag]
    src = tmp_path / "use.c"
    src.write_text(f'#include "{header.name}"\n#include "{header.name}"\n'  # the guard allows a second include
                   + "".join(f'_Static_assert({c}, "{i}");\n' for i, c in enumerate(checks))
                   + '_Static_assert(TERNFPGA_PARAMS_HASH_VALUE != 0x{:X}u, "params");\n'.format(
                       AccelParams().digest()))
    res = subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "-fsyntax-only", "-I", str(tmp_path), str(src)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # and a wrong expectation fails, so the check above is a real one
    src.write_text(f'#include "{header.name}"\n_Static_assert(TERNFPGA_COUNT_OFFSET == 0x7Cu, "x");\n')
    res = subprocess.run(["gcc", "-std=c11", "-fsyntax-only", "-I", str(tmp_path), str(src)], capture_output=True)
    assert res.returncode != 0


def test_cli_prints_the_table_and_json():
    res = subprocess.run([CLI, "rtl", "regmap"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    for r in REGMAP:
        assert any(line.startswith(f"0x{r.offset:03X}") and r.name in line for line in lines), r.name
    assert f"0x{AccelParams().digest():08X}" in res.stdout and f"0x{MAGIC:08X}" in res.stdout
    res = subprocess.run([CLI, "rtl", "regmap", "--json", *SMALL_OPTS], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["identification"] == identification(SMALL) and doc["params"] == SMALL.to_dict()
    assert [(r["name"], r["offset"]) for r in doc["registers"]] == [(r.name, r.offset) for r in REGMAP]


@pytest.mark.parametrize("where", ["missing/dir/regs.h", "."])
def test_cli_bad_output_path_is_one_line_and_exit_2(tmp_path, where):
    target = tmp_path / where
    res = subprocess.run([CLI, "rtl", "regmap", "--c-header", str(target)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the C header"), res.stderr
    assert not list(tmp_path.rglob("*.tmp*"))


def test_cli_in_process_and_engine_still_there(tmp_path, capsys):
    assert main(["rtl", "regmap", "--c-header", str(tmp_path / "r.h")]) == 0
    assert "TERNFPGA_CONTROL_START_MASK" in (tmp_path / "r.h").read_text()
    assert main(["rtl", "regmap", "--max-ctx", "1000"]) == 0
    assert "MAX_CTX" in capsys.readouterr().out
    assert main(["rtl", "regmap", "--max-ctx", "999999"]) == 2  # refused config: one line, exit 2
    assert capsys.readouterr().err.startswith("error: accelerator config refused")
    with pytest.raises(SystemExit):
        main(["rtl", "engine", "--help"])
