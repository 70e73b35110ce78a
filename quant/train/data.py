"""Training data: text files encoded with a ``tokenizers`` tokenizer.json into one token stream.

Batches are random windows of ``ctx + 1`` tokens (inputs and shifted targets). Batch ``k`` is a pure
function of ``(seed, k)``: its window starts come from a generator seeded with both, so the data
position of a run is just its step count, and a resumed run reads exactly the batches an uninterrupted
one would. Validation uses fixed windows spread evenly over the held-out stream.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import TernError

SEED_STRIDE = 1_000_003


def read_text(path: str | Path, what: str) -> str:
    """A UTF-8 text file's contents; every failure is one TernError naming the file."""
    p = Path(path)
    if not p.exists():
        raise TernError(f"{what} '{p}' does not exist", "check the path")
    if p.is_dir():
        raise TernError(f"{what} '{p}' is a directory", "pass a file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise TernError(f"cannot read {what} '{p}' ({e.strerror or e.__class__.__name__})",
                        "check the file's permissions") from None
    if b"\x00" in raw:
        raise TernError(f"{what} '{p}' is a binary file, not text", "pass a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TernError(f"{what} '{p}' is not UTF-8 text", "convert it to UTF-8") from None


@dataclass
class TokenizerInfo:
    tokenizer: object  # tokenizers.Tokenizer
    json_text: str
    vocab_size: int  # ids the tokenizer can produce, added tokens included
    eot_id: int | None  # the end-of-text token put between files (and the config's bos/eos), if any
    sha256: str

    def vocab(self) -> dict[str, int]:
        return self.tokenizer.get_vocab(with_added_tokens=True)


def load_tokenizer_json(text: str, where: str) -> TokenizerInfo:
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_str(text)
    except Exception as e:  # tokenizers raises a bare Exception subclass
        raise TernError(f"tokenizer '{where}' cannot be loaded ({str(e).splitlines()[0][:100] if str(e) else e})",
                        "pass a tokenizer.json written by the tokenizers library") from None
    eot = None
    try:
        added = [t for t in json.loads(text).get("added_tokens", []) if t.get("special")]
    except (ValueError, AttributeError):
        added = []
    named = [t for t in added if t.get("content") == "<|endoftext|>"]
    if named or added:
        eot = int((named or added)[0]["id"])
    size = tok.get_vocab_size(with_added_tokens=True)
    return TokenizerInfo(tok, text, size, eot, hashlib.sha256(text.encode("utf-8")).hexdigest())


def load_tokenizer(path: str | Path) -> TokenizerInfo:
    return load_tokenizer_json(read_text(path, "tokenizer"), str(path))


def encode_files(tok: TokenizerInfo, paths: list[str], what: str = "data file") -> torch.Tensor:
    """Every file's tokens, files joined by the end-of-text token when the tokenizer has one (int64)."""
    ids: list[int] = []
    for i, p in enumerate(paths):
        text = read_text(p, what)
        piece = tok.tokenizer.encode(text, add_special_tokens=False).ids
        if not piece:
            raise TernError(f"{what} '{p}' holds no tokens", "pass a non-empty text file")
        if i and tok.eot_id is not None:
            ids.append(tok.eot_id)
        ids.extend(piece)
    return torch.tensor(ids, dtype=torch.int64)


def batch(tokens: torch.Tensor, step: int, seed: int, size: int, ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets [size, ctx] of batch ``step``: random windows, a function of (seed, step)."""
    g = torch.Generator().manual_seed((seed * SEED_STRIDE + step) % (1 << 63))
    starts = torch.randint(0, tokens.numel() - ctx, (size,), generator=g)
    win = tokens[starts[:, None] + torch.arange(ctx + 1)]
    return win[:, :-1], win[:, 1:]


def val_windows(tokens: torch.Tensor, ctx: int, max_windows: int) -> torch.Tensor:
    """Up to ``max_windows`` fixed windows [n, ctx + 1] (consecutive windows share one token, so each
    token is predicted once), spread evenly over the stream; a stream shorter than one window is one
    shorter window."""
    n = (tokens.numel() - 1) // ctx
    if n == 0:
        return tokens[None, :]
    pick = torch.linspace(0, n - 1, min(n, max_windows)).round().long().unique()
    return torch.stack([tokens[i * ctx: i * ctx + ctx + 1] for i in pick.tolist()])
