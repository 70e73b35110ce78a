"""Bad input through the real CLI: one line ``error: <problem>; <fix>`` on stderr, exit status 2, no traceback,
no partial output file.

The classics (quantize, inspect, generate) run ``python -m ternfpga.host.cli`` in a subprocess, so stderr is
exactly what a user sees (progress bars, warnings, tracebacks included). The cheap option checks run
in-process through ``main()`` with capsys (an uncaught exception there fails the test just the same).
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ternfpga.host.cli import main
from ternfpga.quant.quantize import QuantizeOptions, quantize_checkpoint
from ternfpga.quant.synth import tiny_qwen2, write_checkpoint

MAX_CTX = 16
HEAD_K = 8
VOCAB = 512  # tiny_qwen2's
LONG_TEXT = ("The field programmable gate array waits on the desk, its tiny lights blinking in the dark. "
             "A ternary weight is minus one, zero, or plus one.")
SECTION = "layers.0.q.trits"  # a section to damage in the middle


# -- fixtures (built once per module) ---------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_input")


@pytest.fixture(scope="module")
def ckpt(base) -> Path:
    return write_checkpoint(base / "ckpt", tiny_qwen2())


@pytest.fixture(scope="module")
def image(base, ckpt) -> Path:
    out = base / "model.tern"
    quantize_checkpoint(ckpt, out, QuantizeOptions(head_k=HEAD_K, max_ctx=MAX_CTX, progress=False))
    return out


@pytest.fixture
def ckpt_copy(ckpt, tmp_path) -> Path:
    """A private copy of the checkpoint to damage."""
    return Path(shutil.copytree(ckpt, tmp_path / "ckpt"))


@pytest.fixture
def out_dir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


# -- running and checking ----------------------------------------------------------------------------
@dataclass
class Result:
    rc: int
    out: str
    err: str


def cli(*args: str, cwd: Path | None = None) -> Result:
    """The CLI in a fresh interpreter, as a user runs it."""
    env = dict(os.environ, PYTHONWARNINGS="default")  # show warnings a user would see
    p = subprocess.run([sys.executable, "-m", "ternfpga.host.cli", *map(str, args)], capture_output=True,
                       text=True, cwd=cwd, env=env, timeout=120)
    return Result(p.returncode, p.stdout, p.stderr)


def cli_in_process(capsys, *args: str) -> Result:
    """``main(argv)`` in this process; argparse's SystemExit is turned into a return code."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    cap = capsys.readouterr()
    return Result(rc, cap.out, cap.err)


def assert_clean_error(r: Result, *keywords: str, fix: bool = True, out: Path | None = None) -> str:
    """Exit status 2, exactly one non-empty stderr line ``error: ...`` naming the problem, nothing on stdout,
    no traceback; with ``out``: that file was not created and no temp file is left beside it."""
    assert r.rc == 2, f"exit status {r.rc}, stderr:\n{r.err}"
    assert "Traceback" not in r.err, r.err
    lines = r.err.splitlines()  # also splits on \r: a progress bar counts as lines
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{r.err}"
    line = lines[0]
    assert line.startswith("error: ") and len(line) > len("error: ") + 10, line
    if fix:
        assert "; " in line, f"no '; <fix>' part: {line}"
    for k in keywords:
        assert k.lower() in line.lower(), f"{k!r} not in: {line}"
    assert r.out == "", f"stdout not empty: {r.out!r}"
    if out is not None:
        assert not out.exists(), f"{out} was written"
        left = [p.name for p in out.parent.iterdir() if ".tmp" in p.name]
        assert not left, f"temp files left behind: {left}"
    return line


def quantize(ckpt_dir: Path, out: Path, *extra: str, capsys=None) -> Result:
    """``ternfpga quantize``: in a subprocess, or in-process when given ``capsys`` (no torch import to pay)."""
    args = ("quantize", ckpt_dir, "-o", out, "--no-progress", *extra)
    return cli(*args) if capsys is None else cli_in_process(capsys, *args)


def edit_config(d: Path, **kv) -> None:
    p = d / "config.json"
    cfg = json.loads(p.read_text())
    cfg.update(kv)
    p.write_text(json.dumps(cfg, indent=2))


def edit_tensors(d: Path, fn) -> None:
    """Rewrite model.safetensors with ``fn`` applied to its {name: tensor} dict."""
    f = d / "model.safetensors"
    tensors = load_file(str(f))
    fn(tensors)
    save_file(tensors, str(f), metadata={"format": "pt"})


# -- 1. the checkpoint folder ------------------------------------------------------------------------
def _missing_dir(d: Path) -> Path:
    shutil.rmtree(d)
    return d


def _file_not_dir(d: Path) -> Path:
    return d / "config.json"


def _no_config(d: Path) -> Path:
    (d / "config.json").unlink()
    return d


def _config_is_dir(d: Path) -> Path:
    (d / "config.json").unlink()
    (d / "config.json").mkdir()
    return d


def _config_bad_json(d: Path) -> Path:
    (d / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,,}')
    return d


def _config_not_object(d: Path) -> Path:
    (d / "config.json").write_text("[1, 2, 3]\n")
    return d


def _no_safetensors(d: Path) -> Path:
    (d / "model.safetensors").unlink()
    return d


def _no_tokenizer(d: Path) -> Path:
    (d / "tokenizer.json").unlink()
    return d


@pytest.mark.parametrize("damage,keywords", [
    (_missing_dir, ["does not exist"]),
    (_file_not_dir, ["not a directory"]),
    (_no_config, ["no config.json"]),
    (_config_is_dir, ["config.json", "is a directory"]),
    (_config_bad_json, ["config.json", "not valid JSON"]),
    (_no_safetensors, ["no model.safetensors"]),
], ids=lambda x: getattr(x, "__name__", "")[1:] or None)
def test_quantize_bad_checkpoint_folder(ckpt_copy, out_dir, damage, keywords):
    path = damage(ckpt_copy)
    out = out_dir / "model.tern"
    assert_clean_error(quantize(path, out), *keywords, out=out)


@pytest.mark.parametrize("damage,keywords", [
    (_config_not_object, ["config.json", "not a JSON object"]),
    (_no_tokenizer, ["no tokenizer.json"]),
], ids=lambda x: getattr(x, "__name__", "")[1:] or None)
def test_quantize_bad_checkpoint_folder_in_process(capsys, ckpt_copy, out_dir, damage, keywords):
    path = damage(ckpt_copy)
    out = out_dir / "model.tern"
    assert_clean_error(quantize(path, out, capsys=capsys), *keywords, out=out)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_quantize_unreadable_config(ckpt_copy, out_dir):
    cfg = ckpt_copy / "config.json"
    cfg.chmod(0)
    try:
        out = out_dir / "model.tern"
        assert_clean_error(quantize(ckpt_copy, out), "config.json", "permission", out=out)
    finally:
        cfg.chmod(0o644)


def test_quantize_unreadable_config_simulated(capsys, monkeypatch, ckpt_copy, out_dir):
    """The same path as the chmod test, for root too: reading config.json raises PermissionError."""
    real = Path.read_text

    def read_text(self, *a, **kw):
        if self.name == "config.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", read_text)
    out = out_dir / "model.tern"
    assert_clean_error(quantize(ckpt_copy, out, capsys=capsys), "config.json", "permission denied", out=out)


@pytest.mark.parametrize("edit,keywords", [
    (dict(hidden_size="sixty-four"), ["hidden_size", "integer"]),
    (dict(num_attention_heads=0), ["num_attention_heads"]),
    (dict(rope_parameters="default"), ["RoPE"]),
    (dict(eos_token_id="eos"), ["eos_token_id"]),
    (dict(architectures=[["Qwen2ForCausalLM"]]), ["unsupported architecture"]),
], ids=["hidden-not-int", "zero-heads", "rope-not-object", "eos-not-int", "arch-nested-list"])
def test_quantize_malformed_config_values(capsys, ckpt_copy, out_dir, edit, keywords):
    edit_config(ckpt_copy, **edit)
    out = out_dir / "model.tern"
    assert_clean_error(quantize(ckpt_copy, out, capsys=capsys), *keywords, out=out)


# -- 2. architecture ---------------------------------------------------------------------------------
def test_quantize_unsupported_architecture(ckpt_copy, out_dir):
    edit_config(ckpt_copy, architectures=["GPT2LMHeadModel"], model_type="gpt2")
    out = out_dir / "model.tern"
    line = assert_clean_error(quantize(ckpt_copy, out), "unsupported architecture", "GPT2LMHeadModel", out=out)
    assert "Qwen2ForCausalLM" in line  # the fix names what is supported


# -- 3. tensors: missing, wrong shape ----------------------------------------------------------------
def test_quantize_missing_tensor(ckpt_copy, out_dir):
    name = "model.layers.1.mlp.up_proj.weight"
    edit_tensors(ckpt_copy, lambda t: t.pop(name))
    out = out_dir / "model.tern"
    assert_clean_error(quantize(ckpt_copy, out), "lacks tensor", name, out=out)


def _wrong_tensor_shape(d: Path) -> str:
    name = "model.layers.0.self_attn.q_proj.weight"
    edit_tensors(d, lambda t: t.__setitem__(name, torch.zeros(64, 32)))
    return name


def _wrong_hidden_size(d: Path) -> str:
    edit_config(d, hidden_size=96)
    return "model.embed_tokens.weight"


@pytest.mark.parametrize("damage", [_wrong_tensor_shape, _wrong_hidden_size], ids=["tensor", "config"])
def test_quantize_shape_mismatch(ckpt_copy, out_dir, damage):
    name = damage(ckpt_copy)
    out = out_dir / "model.tern"
    assert_clean_error(quantize(ckpt_copy, out), "shape", name, out=out)


# -- 4. damaged safetensors --------------------------------------------------------------------------
def _truncate(b: bytes) -> bytes:
    return b[: len(b) // 2]


def _garbage_length(b: bytes) -> bytes:  # the u64 header length
    return b"\xff" * 8 + b[8:]


def _garbage_header(b: bytes) -> bytes:  # the JSON header itself
    return b[:8] + b"#%!\x00garbage" * 8 + b[8 + 88:]


@pytest.mark.parametrize("damage", [_truncate, _garbage_length, _garbage_header],
                         ids=["truncated", "corrupt-length", "corrupt-header"])
def test_quantize_damaged_safetensors(ckpt_copy, out_dir, damage):
    f = ckpt_copy / "model.safetensors"
    f.write_bytes(damage(f.read_bytes()))
    out = out_dir / "model.tern"
    assert_clean_error(quantize(ckpt_copy, out), "model.safetensors", "not a readable safetensors", out=out)


# -- 5. non-finite weights ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,value,in_process", [
    ("model.layers.0.self_attn.k_proj.weight", float("nan"), False),
    ("model.layers.1.mlp.down_proj.weight", float("inf"), False),  # deep in: the image writer has started
    ("model.embed_tokens.weight", float("-inf"), True),
    ("model.norm.weight", float("nan"), True),
], ids=["nan", "inf", "embed-neg-inf", "norm-nan"])
def test_quantize_non_finite_weights(capsys, ckpt_copy, out_dir, name, value, in_process):
    def poison(t):
        t[name].view(-1)[5] = value
    edit_tensors(ckpt_copy, poison)
    out = out_dir / "model.tern"
    r = quantize(ckpt_copy, out, capsys=capsys if in_process else None)
    assert_clean_error(r, name, "NaN or Inf", out=out)


def test_quantize_failure_keeps_existing_output(ckpt_copy, out_dir, image):
    """A failed quantize leaves a previous image at -o untouched (it writes a temp file and renames)."""
    out = out_dir / "model.tern"
    shutil.copy(image, out)
    before = out.read_bytes()
    edit_tensors(ckpt_copy, lambda t: t["model.layers.1.mlp.down_proj.weight"].__setitem__((0, 0), float("nan")))
    r = quantize(ckpt_copy, out)
    assert r.rc == 2 and len(r.err.splitlines()) == 1 and "NaN" in r.err, r.err
    assert out.read_bytes() == before
    assert not [p.name for p in out_dir.iterdir() if ".tmp" in p.name]


def test_quantize_error_with_progress_bar_is_one_line(ckpt_copy, out_dir):
    edit_tensors(ckpt_copy, lambda t: t["model.layers.1.mlp.down_proj.weight"].__setitem__((0, 0), float("nan")))
    out = out_dir / "model.tern"
    assert_clean_error(cli("quantize", ckpt_copy, "-o", out), "NaN", out=out)  # no --no-progress


@pytest.mark.parametrize("args,keywords", [
    (["--head-k", "0"], ["head_k"]),
    (["--max-ctx", "4096"], ["max_ctx"]),
], ids=["head-k", "max-ctx"])
def test_quantize_bad_options(capsys, ckpt, out_dir, args, keywords):
    out = out_dir / "model.tern"
    assert_clean_error(quantize(ckpt, out, *args, capsys=capsys), *keywords, out=out)


def test_quantize_output_folder_missing(capsys, ckpt, tmp_path):
    out = tmp_path / "no" / "such" / "model.tern"
    assert_clean_error(quantize(ckpt, out, capsys=capsys), "does not exist")
    assert not (tmp_path / "no").exists()


# -- 6. damaged or foreign .tern images --------------------------------------------------------------
def _image_header(b: bytes) -> dict:
    _, _, _, hoff, hlen, _ = struct.unpack_from("<8sIIQQI", b)
    return json.loads(b[hoff: hoff + hlen])


def _flip_section_byte(b: bytes) -> bytes:
    t = _image_header(b)["tensors"][SECTION]
    out = bytearray(b)
    out[t["offset"] + t["nbytes"] // 2] ^= 0x5A
    return bytes(out)


def _cut(b: bytes) -> bytes:
    return b[: len(b) // 2]


def _version_99(b: bytes) -> bytes:  # the header CRC does not cover the preamble
    out = bytearray(b)
    struct.pack_into("<I", out, 8, 99)
    return bytes(out)


def _text(b: bytes) -> bytes:
    return b"this is a text file, not a model image\n" * 20


def _empty(b: bytes) -> bytes:
    return b""


TERN_CASES = {
    "corrupt": (_flip_section_byte, ["CRC", SECTION]),
    "truncated": (_cut, ["truncated"]),
    "version": (_version_99, ["version 99"]),
    "not-tern": (_text, ["not a ternfpga model image"]),
    "empty": (_empty, ["not a ternfpga model image"]),
    "missing": (None, ["does not exist"]),
}


@pytest.mark.parametrize("command", ["inspect", "generate"])
@pytest.mark.parametrize("case", list(TERN_CASES))
def test_bad_image(image, tmp_path, case, command):
    damage, keywords = TERN_CASES[case]
    bad = tmp_path / "bad.tern"
    if damage is not None:
        bad.write_bytes(damage(image.read_bytes()))
    args = ["inspect", bad] if command == "inspect" else ["generate", "--model", bad, "--prompt", "hello", "-n", "2"]
    assert_clean_error(cli(*args), *keywords)


# -- 7. the prompt does not fit ----------------------------------------------------------------------
@pytest.mark.parametrize("prompt", [["--prompt", LONG_TEXT], ["--prompt-ids", ",".join(["5"] * 20)]],
                         ids=["text", "ids"])
def test_prompt_longer_than_context(image, prompt):
    line = assert_clean_error(cli("generate", "--model", image, *prompt), "max context", f"{MAX_CTX}")
    assert "--max-ctx" in line


# -- 8. sampling options -----------------------------------------------------------------------------
@pytest.mark.parametrize("args,keyword", [
    (["--temperature", "-1"], "--temperature"),
    (["--temperature", "nan"], "--temperature"),
    (["--temperature", "inf"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"),
    (["--top-k", "0"], "--top-k"),
    (["--top-k", str(HEAD_K + 1)], "--top-k"),
    (["-n", "-1"], "-n -1"),
    (["--seed", "-1", "--temperature", "1"], "--seed"),
], ids=["temp-neg", "temp-nan", "temp-inf", "top-p-0", "top-p-1.5", "top-k-0", "top-k-over-head-k", "n-neg",
        "seed-neg"])
def test_bad_sampling_options(capsys, image, args, keyword):
    r = cli_in_process(capsys, "generate", "--model", image, "--prompt-ids", "1,2,3", *args)
    line = assert_clean_error(r, keyword)
    if "--top-k" in args:
        assert f"1..{HEAD_K}" in line  # names the image's shortlist length


def test_bad_sampling_option_subprocess(image):
    assert_clean_error(cli("generate", "--model", image, "--prompt", "hi", "--top-k", str(HEAD_K + 1)), "--top-k")


# -- 9. --prompt-ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ids,keywords", [
    (str(VOCAB), [f"token id {VOCAB}", "outside the vocabulary", f"0..{VOCAB - 1}"]),
    ("-3", ["token id -3", "outside the vocabulary"]),
    ("1," + "9" * 5000, ["outside the vocabulary"]),
    ("1,x,3", ["not a comma-separated list of integers", "'x'"]),
    ("1,,3", ["not a comma-separated list of integers", "empty item"]),
    ("1.5", ["not a comma-separated list of integers"]),
    ("", ["--prompt-ids is empty"]),
    (" , ", ["--prompt-ids is empty"]),
], ids=["vocab", "negative", "huge", "x", "double-comma", "float", "empty", "blank"])
def test_bad_prompt_ids(capsys, image, ids, keywords):
    r = cli_in_process(capsys, "generate", "--model", image, "--prompt-ids", ids)
    line = assert_clean_error(r, *keywords)
    assert len(line) < 300  # a huge argument is not echoed whole


def test_bad_prompt_ids_subprocess(image):
    assert_clean_error(cli("generate", "--model", image, "--prompt-ids", "1,x,3"), "not a comma-separated")


def test_empty_prompt_text(capsys, image):
    assert_clean_error(cli_in_process(capsys, "generate", "--model", image, "--prompt", ""), "prompt is empty")


# -- 10. argparse ------------------------------------------------------------------------------------
def test_argparse_errors_subprocess(image):
    assert_clean_error(cli("generate", "--model", image, "--prompt", "hi", "--bogus"), "unrecognized arguments",
                       fix=False)
    assert_clean_error(cli("generate", "--prompt", "hi"), "required", "--model", fix=False)


@pytest.mark.parametrize("args,keywords", [
    (["inspect"], ["required"]),
    (["eval", "--model", "x.tern"], ["required", "--checkpoint"]),
    (["quantize", "ckpt"], ["required", "--output"]),
    (["generate", "--model", "x.tern"], ["one of the arguments", "--prompt"]),
    (["generate", "--model", "x.tern", "--prompt", "a", "--prompt-ids", "1"], ["not allowed with"]),
    (["generate", "--model", "x.tern", "--prompt", "a", "--temperature", "warm"], ["invalid float"]),
    (["generate", "--model", "x.tern", "--prompt", "a", "-n", "many"], ["invalid int"]),
    (["quantize", "ckpt", "-o", "m.tern", "--scale", "row"], ["invalid choice"]),
    (["frobnicate"], ["invalid choice"]),
    ([], ["required", "COMMAND"]),
], ids=["inspect-no-image", "eval-no-ckpt", "quantize-no-o", "generate-no-prompt", "prompt-and-ids", "temp-word",
        "n-word", "scale", "command", "nothing"])
def test_argparse_errors(capsys, args, keywords):
    assert_clean_error(cli_in_process(capsys, *args), "ternfpga", *keywords, fix=False)


# -- 11. eval ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_seed_ckpt(base) -> Path:
    """Same config as the image's checkpoint, different weights."""
    return write_checkpoint(base / "other_seed", tiny_qwen2(seed=1))


@pytest.fixture(scope="module")
def other_shape_ckpt(base) -> Path:
    return write_checkpoint(base / "other_shape", tiny_qwen2(layers=1))


def test_eval_wrong_checkpoint_same_config(image, other_seed_ckpt):
    assert_clean_error(cli("eval", "--model", image, "--checkpoint", other_seed_ckpt, "--tokens", "8"),
                       "not quantized from", "weights differ")


def test_eval_wrong_checkpoint_other_config(capsys, image, other_shape_ckpt):
    r = cli_in_process(capsys, "eval", "--model", image, "--checkpoint", other_shape_ckpt, "--tokens", "8")
    assert_clean_error(r, "not quantized from", "configs differ")


@pytest.mark.parametrize("tokens,keywords", [
    ("1", ["--tokens 1", "at least 2"]),
    (str(MAX_CTX + 1), [f"--tokens {MAX_CTX + 1}", f"max context {MAX_CTX}"]),
], ids=["one", "over-max-ctx"])
def test_eval_bad_tokens(capsys, image, ckpt, tokens, keywords):
    r = cli_in_process(capsys, "eval", "--model", image, "--checkpoint", ckpt, "--tokens", tokens)
    assert_clean_error(r, *keywords)


def test_eval_missing_checkpoint(capsys, image, tmp_path):
    r = cli_in_process(capsys, "eval", "--model", image, "--checkpoint", tmp_path / "nope")
    assert_clean_error(r, "does not exist")


# -- 12. backends ------------------------------------------------------------------------------------
def test_bad_backend(image):
    assert_clean_error(cli("generate", "--model", image, "--prompt", "hi", "--backend", "gpu"),
                       "unknown backend 'gpu'", "ref")


@pytest.mark.skipif(any(p.read_text().strip() == "ternfpga" for p in Path("/sys/class/uio").glob("uio*/name")),
                    reason="this machine has the ternfpga overlay loaded")
def test_kv260_backend_without_the_overlay(capsys, image):
    r = cli_in_process(capsys, "generate", "--model", image, "--prompt", "hi", "--backend", "kv260")
    assert_clean_error(r, "backend 'kv260' is not available", "ternfpga board load")


# -- synth -------------------------------------------------------------------------------------------
def test_synth_under_a_file(capsys, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    r = cli_in_process(capsys, "synth", f / "sub" / "ckpt", "--preset", "tiny-qwen2")
    assert_clean_error(r, "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_synth_target_is_a_file(capsys, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    assert_clean_error(cli_in_process(capsys, "synth", f, "--preset", "tiny-qwen2"), "not a directory")
    assert f.read_text() == "x"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (a folder nothing can be created in)")
def test_synth_unwritable_folder(capsys):
    assert_clean_error(cli_in_process(capsys, "synth", "/proc/ternfpga-ckpt", "--preset", "tiny-qwen2"),
                       "cannot write the checkpoint")


def test_synth_unknown_preset(capsys, tmp_path):
    assert_clean_error(cli_in_process(capsys, "synth", tmp_path / "c", "--preset", "gpt5"), "unknown preset")
