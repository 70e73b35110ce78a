"""Teacher-forced cross-entropy of a text file for the golden (integer), fake-quant and float models.

Definitions (what ``ternfpga eval --text`` reports):

* The file's text (UTF-8, unchanged) is tokenized once with the image's tokenizer, without special
  tokens; ``--max-tokens N`` keeps the first N tokens.
* The tokens are cut into consecutive non-overlapping windows of ``window`` tokens (default: the
  image's max_ctx, which never exceeds the config's max_position); each window starts with an empty
  KV cache. Inside a window the logits at position t predict token t+1, so the first token of every
  window has no prediction; a last window of one token is dropped. ``tokens`` = the number of
  predicted tokens = sum over windows of (length - 1).
* Each token stands for a span of the text's bytes; for a byte-level BPE that is exactly the bytes its
  vocabulary entry encodes (an added token: its content's UTF-8), and the spans of all tokens
  concatenate to the text. ``bytes`` = the UTF-8 bytes of the predicted tokens (the unpredicted first
  tokens of the windows and any tokens past --max-tokens are excluded). A tokenizer that is not
  byte-level (its token bytes do not add up to the text) falls back to character offsets: each
  character's bytes go to the first token whose offsets cover it.
* CE of a predicted token = ln(sum_v exp(l_v)) - l_target in float64, from the model's logits (the
  golden model's FX logits of the full int8 head times 2**-16). ``bits_per_byte`` = sum CE / ln 2 /
  ``bytes``; ``perplexity`` = exp(mean CE), per token.
* ``top1_agreement`` = fraction of predicted positions where the golden and fake-quant argmax agree
  (argmax ties go to the lowest id, as the device orders equal logits).

The CE figures always come from the golden model's full logits: a device returns only its top-K
shortlist. With a device backend, its shortlist top-1 is compared with the golden top-1 on the first
``device_tokens`` predicted positions (a prefill of the window's first token, then decodes).
"""
from __future__ import annotations

import ctypes
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ternfpga.quant.errors import TernError
from ternfpga.sim.numerics.spec import FX_FRAC

DEFAULT_DEVICE_TOKENS = 32
_TEXT_FIX = "pass a UTF-8 text file with --text"


# -- the text --------------------------------------------------------------------------------------
def read_text(path: str | Path) -> str:
    """The file's text, exactly (UTF-8, no newline conversion); one-line errors for what is not text."""
    p = Path(path)
    if not p.exists():
        raise TernError(f"text file '{p}' does not exist", _TEXT_FIX)
    if not p.is_file():
        raise TernError(f"text path '{p}' is not a file", _TEXT_FIX)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise TernError(f"cannot read text file '{p}' ({e.strerror or e.__class__.__name__})",
                        "check the file's permissions") from None
    if not raw.strip():
        raise TernError(f"text file '{p}' is empty", "pass a file with some text in it")
    nul = raw.find(b"\0")
    if nul >= 0:
        raise TernError(f"text file '{p}' is binary (a NUL byte at offset {nul})", _TEXT_FIX)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TernError(f"text file '{p}' is not UTF-8 (bad byte at offset {e.start})", _TEXT_FIX) from None


def _byte_level_lengths(tokenizer) -> np.ndarray | None:
    """Bytes per token id for a byte-level BPE (None if the tokenizer is not one)."""
    spec = json.loads(tokenizer.to_str())
    pre = spec.get("pre_tokenizer") or {}
    kinds = [pre.get("type")] + [p.get("type") for p in pre.get("pretokenizers", [])]
    if "ByteLevel" not in kinds or spec.get("normalizer") is not None:
        return None
    n = tokenizer.get_vocab_size(with_added_tokens=True)
    lengths = np.zeros(n, np.int64)
    for tok, i in tokenizer.get_vocab(with_added_tokens=True).items():
        if i < n:
            lengths[i] = len(tok)  # one alphabet character per byte
    for i, added in tokenizer.get_added_tokens_decoder().items():
        if i < n:
            lengths[i] = len(added.content.encode("utf-8"))
    return lengths


@dataclass
class TokenizedText:
    ids: np.ndarray  # int64 [n] every token of the text
    nbytes: np.ndarray  # int64 [n] text bytes each token stands for (sum = text bytes covered)
    text_bytes: int  # UTF-8 bytes of the whole text
    byte_level: bool  # nbytes from the byte-level vocabulary (else from character offsets)


def tokenize(tokenizer, text: str) -> TokenizedText:
    """Tokens of ``text`` and the bytes each stands for (see the module docstring)."""
    enc = tokenizer.encode(text, add_special_tokens=False)
    ids = np.asarray(enc.ids, dtype=np.int64)
    total = len(text.encode("utf-8"))
    lengths = _byte_level_lengths(tokenizer)
    if lengths is not None and len(ids) and ids.max() < len(lengths):
        nbytes = lengths[ids]
        if int(nbytes.sum()) == total:
            return TokenizedText(ids, nbytes, total, True)
    # offsets fallback: char -> byte positions, each character counted once (first covering token)
    char_bytes = np.fromiter((len(c.encode("utf-8")) for c in text), np.int64, len(text))
    start = np.concatenate([[0], np.cumsum(char_bytes)])
    nbytes = np.zeros(len(ids), np.int64)
    covered = 0
    for k, (s, e) in enumerate(enc.offsets):
        s = max(s, covered)
        if e > s:
            nbytes[k] = start[e] - start[s]
            covered = e
    return TokenizedText(ids, nbytes, total, False)


def windows(n: int, window: int) -> list[tuple[int, int]]:
    """[start, stop) of consecutive non-overlapping windows over n tokens; a 1-token tail is dropped."""
    return [(a, min(a + window, n)) for a in range(0, n, window) if min(a + window, n) - a >= 2]


# -- scoring ---------------------------------------------------------------------------------------
def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-row CE in nats (float64) of logits [T, V] against targets [T]."""
    lg = np.asarray(logits, dtype=np.float64)
    m = lg.max(axis=-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(lg - m).sum(axis=-1))
    return lse - lg[np.arange(len(targets)), targets]


@dataclass
class Scores:
    ce: np.ndarray  # float64 [predicted] nats
    top1: np.ndarray  # int64 [predicted] argmax

    def summary(self, nbytes: int, targets: np.ndarray) -> dict:
        total = float(self.ce.sum())
        return {"bits_per_byte": total / math.log(2) / nbytes, "perplexity": math.exp(total / len(self.ce)),
                "ce_nats_per_token": total / len(self.ce), "top1_accuracy": float((self.top1 == targets).mean())}


def _openblas_thread_controls() -> list[tuple]:
    """(get, set) thread-count functions of every OpenBLAS the process has loaded (Linux; else none)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and "/" in ln})
    except OSError:
        return []
    out = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_", "64_"), ("", "64_"), ("", "")):
            get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                out.append((get, put))
                break
    return out


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run numpy's BLAS on one thread, then restore the previous count. The golden model's matmuls are
    small ([window, <= ffn]); OpenBLAS's extra threads gain nothing on them, and on a machine whose cores
    are busy their spinning made a full-Hamlet eval of a 5M-parameter model 5x slower (14.5 min against
    2.7 min, identical results). A no-op where no OpenBLAS is found."""
    controls = _openblas_thread_controls()
    before = [get() for get, _ in controls]
    for _, put in controls:
        put(1)
    try:
        yield
    finally:
        for (_, put), n in zip(controls, before):
            put(n)


def golden_scores(image, ids: np.ndarray, wins: list[tuple[int, int]]) -> Scores:
    """The golden model's full-head FX logits, window by window (one KV cache reused)."""
    from ternfpga.sim.golden import GoldenModel

    golden = GoldenModel(image)
    cache = golden.new_cache()
    ce, top1 = [], []
    with single_blas_thread():
        for a, b in wins:
            cache.length = 0  # rows 0..b-a-1 are rewritten before attention reads them
            res = golden.forward(ids[a:b], cache, full_logits=True)
            lg = res.full_logits[:-1].astype(np.float64) / (1 << FX_FRAC)
            ce.append(cross_entropy(lg, ids[a + 1:b]))
            top1.append(lg.argmax(-1))
    return Scores(np.concatenate(ce), np.concatenate(top1))


def float_scores(ckpt, mode: str, scale: str, ids: np.ndarray, wins: list[tuple[int, int]]) -> Scores:
    """The float or fake-quant model (quant/float_ref.py) over the same windows."""
    import torch

    from ternfpga.quant.float_ref import FloatModel

    model = FloatModel(ckpt, mode=mode, scale=scale)
    ce, top1 = [], []
    threads = torch.get_num_threads()
    # One thread: on busy cores torch's spinning workers made a window of a 5M model ~70x slower
    # (4.5 s against 0.06 s, measured); a window's matmuls are too small to gain from more.
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for a, b in wins:
                lg = model.forward(ids[a:b].tolist()).logits[:-1].double().numpy()
                ce.append(cross_entropy(lg, ids[a + 1:b]))
                top1.append(lg.argmax(-1))
    finally:
        torch.set_num_threads(threads)
    return Scores(np.concatenate(ce), np.concatenate(top1))


def device_check(backend, image, ids: np.ndarray, wins: list[tuple[int, int]], golden_top1: np.ndarray,
                 n_positions: int) -> dict:
    """The backend's shortlist top-1 vs the golden top-1 (full head) and vs the golden shortlist's top-1
    (the ref backend's answer) on the first ``n_positions`` predicted positions."""
    from ternfpga.sim.golden import GoldenModel

    from .evaluate import device_shortlists

    golden = GoldenModel(image)
    dev, full, short = [], [], []
    offset = 0
    for a, b in wins:
        m = min(b - a, n_positions - len(dev) + 1, backend.max_ctx)
        if m < 2:
            break
        seq = ids[a:a + m].tolist()
        lists = device_shortlists(backend, seq)[:-1]
        ref = golden.forward(seq, golden.new_cache(), all_positions=True).per_token[:-1]
        dev += [int(c.ids[0]) for c in lists]
        short += [int(c.ids[0]) for c in ref]
        full += golden_top1[offset:offset + m - 1].tolist()
        offset += b - a - 1
    dev_a = np.asarray(dev)
    return {"backend": backend.name, "positions": len(dev),
            "top1_vs_golden": float((dev_a == np.asarray(full)).mean()) if dev else None,
            "top1_vs_golden_shortlist": float((dev_a == np.asarray(short)).mean()) if dev else None}


def evaluate_text(image, ckpt, text: str, max_tokens: int | None = None, window: int | None = None,
                  backend=None, device_tokens: int = DEFAULT_DEVICE_TOKENS) -> dict:
    """The report of ``ternfpga eval --text`` (keys in the module docstring). ``backend``: an open
    device backend with ``image`` loaded (None or the ref backend: no device comparison)."""
    if image.config != ckpt.config:
        raise TernError(f"the image was not quantized from '{ckpt.path}' (model configs differ)",
                        "pass the checkpoint the image was made from")
    max_ctx = int(image.header["quant"]["max_ctx"])
    if window is None:
        window = min(max_ctx, image.config.max_position)
    if not 2 <= window <= max_ctx:
        raise TernError(f"--window {window} is outside 2..{max_ctx} (the image's max context)",
                        f"use at most {max_ctx}")
    if max_tokens is not None and max_tokens < 2:
        raise TernError(f"--max-tokens {max_tokens} is too small", "use at least 2 (one prediction)")
    tt = tokenize(image.tokenizer(), text)
    n_text = len(tt.ids)
    ids = tt.ids[:max_tokens] if max_tokens is not None else tt.ids
    if len(ids) < 2:
        raise TernError(f"the text is {len(ids)} token{'s' if len(ids) != 1 else ''} long: at least 2 tokens are "
                        "needed for one prediction",
                        "pass a longer text")
    if int(ids.max()) >= image.config.vocab:
        raise TernError(f"the tokenizer gives id {int(ids.max())}, outside the model's vocabulary of "
                        f"{image.config.vocab}", "the image's tokenizer does not match its model")
    wins = windows(len(ids), window)
    targets = np.concatenate([ids[a + 1:b] for a, b in wins])
    nbytes = int(np.concatenate([tt.nbytes[a + 1:b] for a, b in wins]).sum())
    if nbytes == 0:
        raise TernError("the predicted tokens cover no bytes of the text", "pass a longer text")
    scale = image.header["quant"]["scale"]
    res = {"golden": golden_scores(image, ids, wins)}
    res["fake_quant"] = float_scores(ckpt, "fakequant", scale, ids, wins)
    res["float"] = float_scores(ckpt, "float", scale, ids, wins)
    sums = {k: s.summary(nbytes, targets) for k, s in res.items()}
    rep = {
        "bits_per_byte": {k: v["bits_per_byte"] for k, v in sums.items()},
        "perplexity": {k: v["perplexity"] for k, v in sums.items()},
        "top1_agreement": float((res["golden"].top1 == res["fake_quant"].top1).mean()),
        "tokens": int(len(targets)),
        "bytes": nbytes,
        "ce_nats_per_token": {k: v["ce_nats_per_token"] for k, v in sums.items()},
        "top1_accuracy": {k: v["top1_accuracy"] for k, v in sums.items()},
        "window": window,
        "windows": len(wins),
        "text_tokens": n_text,
        "text_bytes": tt.text_bytes,
        "tokens_used": int(len(ids)),
        "byte_level": tt.byte_level,
        "backend": "ref" if backend is None else backend.name,
    }
    if backend is not None and backend.name != "ref" and device_tokens > 0:
        rep["device"] = device_check(backend, image, ids, wins, res["golden"].top1, device_tokens)
    return rep
