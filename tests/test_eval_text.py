"""`ternfpga eval --text`: bits per byte, perplexity and golden/fake-quant agreement over a text file,
checked against independent computations on a tiny synthetic model."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ternfpga.host.cli import main
from ternfpga.quant.checkpoint import Checkpoint
from ternfpga.quant.float_ref import FloatModel
from ternfpga.quant.image import ModelImage
from ternfpga.quant.quantize import QuantizeOptions, quantize_checkpoint
from ternfpga.quant.synth import tiny_qwen2, write_checkpoint

MAX_CTX = 32
TEXT = ("The accelerator streams weights while the host feeds it one token at a time.\n"
        "Caf\u00e9 cr\u00e8me, na\u00efve r\u00e9sum\u00e9 \u2014 \u65e5\u672c\u8a9e and \U0001f600 too.\n\n"
        "Hello world is the first program most people write; the tests should pass.\n"
        "Fog rolled in from the sea and hid the bridge until almost noon.\n")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("evtext")
    ck = write_checkpoint(root / "ck", tiny_qwen2(layers=1))
    img = root / "m.tern"
    quantize_checkpoint(ck, img, QuantizeOptions(max_ctx=MAX_CTX, progress=False))
    text = root / "text.txt"
    text.write_bytes(TEXT.encode("utf-8"))
    return ck, img, text


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def eval_json(capsys, model, *extra) -> dict:
    ck, img, text = model
    rc, out, err = run_cli(capsys, "eval", "--model", img, "--checkpoint", ck, "--text", text, "--json", *extra)
    assert rc == 0, err
    return json.loads(out)


def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: printable bytes stand for themselves, the rest for 256 + n."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + n)] = b
            n += 1
    return chars


def token_bytes(tok, ids) -> list[bytes]:
    dec = byte_decoder()
    return [bytes(dec[c] for c in tok.id_to_token(i)) for i in ids]


def windows_of(ids, w):
    return [ids[a:a + w] for a in range(0, len(ids), w) if len(ids[a:a + w]) >= 2]


def reference(model, max_tokens=None, window=MAX_CTX):
    """tokens, bytes and summed CE per model, computed independently of host/eval_text.py."""
    from ternfpga.sim.golden import GoldenModel

    ck, img, text = model
    image = ModelImage.open(img)
    tok = image.tokenizer()
    ids = tok.encode(TEXT, add_special_tokens=False).ids
    pieces = token_bytes(tok, ids)
    assert b"".join(pieces) == TEXT.encode("utf-8")  # the tokens' bytes are the text
    ids, pieces = ids[:max_tokens], pieces[:max_tokens]
    wins = windows_of(list(range(len(ids))), window)
    nbytes = sum(len(pieces[k]) for w in wins for k in w[1:])
    tokens = sum(len(w) - 1 for w in wins)
    ckpt = Checkpoint.open(ck)
    ce = {}
    for key, mode in (("float", "float"), ("fake_quant", "fakequant")):
        fm = FloatModel(ckpt, mode=mode, scale=image.header["quant"]["scale"])
        total = 0.0
        for w in wins:
            seq = [ids[k] for k in w]
            lp = torch.log_softmax(fm.forward(seq).logits.double(), dim=-1)
            total -= float(lp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])].sum())
        ce[key] = total
    g = GoldenModel(image)
    total = 0.0
    for w in wins:
        seq = [ids[k] for k in w]
        lg = torch.from_numpy(g.forward(seq, g.new_cache(), full_logits=True).full_logits / 65536.0)
        lp = torch.log_softmax(lg, dim=-1)
        total -= float(lp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])].sum())
    ce["golden"] = total
    return tokens, nbytes, ce, len(wins)


def test_report_keys_and_ranges(capsys, model):
    rep = eval_json(capsys, model)
    for key in ("bits_per_byte", "perplexity", "top1_agreement", "tokens", "bytes"):
        assert key in rep
    for key in ("bits_per_byte", "perplexity"):
        assert set(rep[key]) == {"golden", "fake_quant", "float"}
        assert all(math.isfinite(v) and v > 0 for v in rep[key].values())
    assert 0.0 <= rep["top1_agreement"] <= 1.0
    assert rep["window"] == MAX_CTX and rep["backend"] == "ref" and "device" not in rep
    assert rep["byte_level"] is True and rep["text_bytes"] == len(TEXT.encode("utf-8"))


def test_matches_independent_computation(capsys, model):
    rep = eval_json(capsys, model)
    tokens, nbytes, ce, n_win = reference(model)
    assert rep["tokens"] == tokens and rep["bytes"] == nbytes and rep["windows"] == n_win > 1
    assert rep["tokens"] == rep["text_tokens"] - n_win  # one unpredicted token per window
    assert nbytes < rep["text_bytes"]
    for key in ("float", "fake_quant", "golden"):
        assert rep["bits_per_byte"][key] == pytest.approx(ce[key] / math.log(2) / nbytes, rel=1e-9)
        assert rep["perplexity"][key] == pytest.approx(math.exp(ce[key] / tokens), rel=1e-9)


def test_max_tokens_and_window(capsys, model):
    rep = eval_json(capsys, model, "--max-tokens", "40", "--window", "16")
    tokens, nbytes, ce, n_win = reference(model, max_tokens=40, window=16)
    assert rep["tokens_used"] == 40 and rep["window"] == 16 and rep["windows"] == n_win == 3
    assert rep["tokens"] == tokens == 40 - 3 and rep["bytes"] == nbytes
    assert rep["bits_per_byte"]["float"] == pytest.approx(ce["float"] / math.log(2) / nbytes, rel=1e-9)
    # a 1-token tail has no prediction and is dropped
    rep = eval_json(capsys, model, "--max-tokens", "33", "--window", "16")
    assert rep["windows"] == 2 and rep["tokens"] == 30


def test_golden_agreement_counts_argmax(model):
    """top1_agreement is the golden-vs-fake-quant argmax equality over predicted positions."""
    from ternfpga.host.eval_text import evaluate_text, float_scores, golden_scores, tokenize, windows

    ck, img, _ = model
    image, ckpt = ModelImage.open(img), Checkpoint.open(ck)
    rep = evaluate_text(image, ckpt, TEXT)
    ids = tokenize(image.tokenizer(), TEXT).ids
    wins = windows(len(ids), MAX_CTX)
    g = golden_scores(image, ids, wins)
    fq = float_scores(ckpt, "fakequant", image.header["quant"]["scale"], ids, wins)
    assert len(g.top1) == rep["tokens"]
    assert rep["top1_agreement"] == float(np.mean(g.top1 == fq.top1))


def test_device_comparison_path(model):
    """A non-ref backend gets the 'device' key; the golden model standing in for it agrees with itself."""
    from ternfpga.host.eval_text import evaluate_text
    from ternfpga.host.ref import RefBackend

    class StandIn(RefBackend):
        name = "stand-in"

    ck, img, _ = model
    image, ckpt = ModelImage.open(img), Checkpoint.open(ck)
    dev = StandIn()
    dev.load(image)
    rep = evaluate_text(image, ckpt, TEXT, backend=dev, device_tokens=40)
    d = rep["device"]
    assert d["backend"] == "stand-in" and d["positions"] == 40  # spans two windows
    assert d["top1_vs_golden_shortlist"] == 1.0
    assert 0.0 <= d["top1_vs_golden"] <= 1.0


def test_text_output(capsys, model):
    ck, img, text = model
    rc, out, err = run_cli(capsys, "eval", "--model", img, "--checkpoint", ck, "--text", text, "--max-tokens", "20")
    assert rc == 0, err
    assert "bits/byte" in out and "perplexity" in out and "top-1 agreement golden vs fake-quant" in out


def test_eval_without_text_unchanged(capsys, model):
    ck, img, _ = model
    rc, out, err = run_cli(capsys, "eval", "--model", img, "--checkpoint", ck, "--tokens", "8", "--json")
    assert rc == 0, err
    rep = json.loads(out)
    assert rep["tokens"] == 8 and "golden_vs_fakequant" in rep and "bits_per_byte" not in rep


@pytest.mark.parametrize("case,words", [
    ("missing", ["does not exist", "--text"]),
    ("empty", ["is empty"]),
    ("one-token", ["1 token", "at least 2"]),
    ("binary", ["binary"]),
    ("not-utf8", ["not UTF-8"]),
    ("directory", ["not a file"]),
    ("tokens-with-text", ["--tokens does not apply with --text"]),
    ("max-tokens-without-text", ["--max-tokens applies only with --text"]),
    ("max-tokens-1", ["--max-tokens 1"]),
    ("window-too-big", ["--window 64", "max context"]),
])
def test_errors_one_line(capsys, model, tmp_path, case, words):
    ck, img, text = model
    path = tmp_path / "t.txt"
    extra: list = []
    if case == "empty":
        path.write_bytes(b"")
    elif case == "one-token":
        path.write_text("a")
    elif case == "binary":
        path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))
    elif case == "not-utf8":
        path.write_bytes(b"caf\xe9 latin-1 text\n")
    elif case == "directory":
        path = tmp_path
    elif case == "tokens-with-text":
        path, extra = text, ["--tokens", "8"]
    elif case == "max-tokens-1":
        path, extra = text, ["--max-tokens", "1"]
    elif case == "window-too-big":
        path, extra = text, ["--window", "64"]
    args = ["eval", "--model", img, "--checkpoint", ck, *extra]
    if case == "max-tokens-without-text":
        args += ["--max-tokens", "5"]
    else:
        args += ["--text", path]
    rc, out, err = run_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert rc == 2 and out == "" and len(lines) == 1 and lines[0].startswith("error: ") and "; " in lines[0], err
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]


def test_non_byte_level_tokenizer_falls_back_to_offsets():
    """A tokenizer whose tokens are not raw bytes (word-level here): bytes come from character offsets,
    each character counted once, so the tokens still add up to the text they cover."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from ternfpga.host.eval_text import tokenize

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "caf\u00e9": 1, "au": 2, "lait": 3, "!": 4}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    text = "caf\u00e9 au  lait !"
    tt = tokenize(tok, text)
    assert not tt.byte_level and tt.ids.tolist() == [1, 2, 3, 4]
    assert tt.nbytes.tolist() == [5, 2, 4, 1]  # whitespace between words belongs to no token
    assert tt.text_bytes == len(text.encode("utf-8"))


def test_cross_entropy_unit():
    from ternfpga.host.eval_text import cross_entropy

    lg = np.array([[0.0, 0.0, 0.0, 0.0], [1000.0, 0.0, -1000.0, 3.0]])
    ce = cross_entropy(lg, np.array([2, 0]))
    assert ce[0] == pytest.approx(math.log(4)) and ce[1] == pytest.approx(0.0, abs=1e-12)


def test_window_cutting():
    from ternfpga.host.eval_text import windows

    assert windows(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert windows(9, 4) == [(0, 4), (4, 8)]  # the 1-token tail is dropped
    assert windows(1, 4) == []


def test_single_blas_thread_restores_the_count():
    from ternfpga.host.eval_text import _openblas_thread_controls, single_blas_thread

    controls = _openblas_thread_controls()
    if not controls:
        pytest.skip("no OpenBLAS loaded in this process")
    get, put = controls[0]
    orig = get()
    put(2)
    try:
        with single_blas_thread():
            assert get() == 1
        assert get() == 2
    finally:
        put(orig)
