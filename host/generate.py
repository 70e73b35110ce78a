"""Prompt handling and the prefill/decode loop, the same for every backend."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ternfpga.quant.errors import TernError

from .backend import Backend, Candidates
from .sampling import Sampler

_INT = re.compile(r"[+-]?[0-9]+")
CHATML = "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
END_OF_TURN = ("<|im_end|>", "<|eot_id|>")  # ChatML, Llama 3
LLAMA3 = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n")


def parse_prompt_ids(text: str, vocab: int) -> list[int]:
    """``"1,2,3"`` -> [1, 2, 3], every id checked against the vocabulary."""
    parts = [t.strip() for t in text.split(",")]
    if not any(parts):
        raise TernError("--prompt-ids is empty", "give at least one token id")
    bad = next((t for t in parts if not _INT.fullmatch(t)), None)
    if bad is not None:
        what = "an empty item" if bad == "" else f"{_clip(bad)!r} is not an integer"
        raise TernError(f"--prompt-ids {_clip(text)!r} is not a comma-separated list of integers ({what})",
                        "write it like --prompt-ids 1,2,3")
    for t in parts:  # digit count first: int() of a huge string is slow (and refused past 4300 digits)
        if len(t.lstrip("+-")) > 18 or not 0 <= int(t) < vocab:
            raise TernError(f"token id {_clip(t)} in --prompt-ids is outside the vocabulary",
                            f"use ids in 0..{vocab - 1}")
    return [int(t) for t in parts]


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def chat_stop_ids(tokenizer) -> tuple[int, ...]:
    """The end-of-turn token ids of the chat templates this tokenizer has."""
    vocab = tokenizer.get_vocab()
    return tuple(vocab[t] for t in END_OF_TURN if t in vocab)


def encode_prompt(tokenizer, text: str, chat: bool) -> list[int]:
    """Raw tokenization (no special tokens) unless ``chat``, which wraps the text in the model's template."""
    if chat:
        vocab = tokenizer.get_vocab()
        if "<|im_start|>" in vocab:
            text = CHATML.format(prompt=text)
        elif "<|start_header_id|>" in vocab:
            text = LLAMA3.format(prompt=text)
        else:
            raise TernError("--chat: this model's tokenizer has no ChatML or Llama-3 chat tokens",
                            "drop --chat and write the prompt as the model expects it")
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    if not ids:
        raise TernError("the prompt is empty after tokenization", "give a non-empty --prompt")
    return ids


class TextStream:
    """Turns a growing id list into newly printable text (holds back incomplete UTF-8 sequences)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.shown = ""

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        if text.endswith("\ufffd"):
            return ""
        new = text[len(self.shown):] if text.startswith(self.shown) else text
        self.shown = text
        return new

    def flush(self) -> str:
        """At the end: whatever was held back (an unfinished UTF-8 sequence shows as U+FFFD)."""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False) if self.ids else ""
        new = text[len(self.shown):] if text.startswith(self.shown) else ""
        self.shown = text
        return new


@dataclass
class Generation:
    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)
    top_logits: list[int] = field(default_factory=list)  # FX logit of each generated token, as its shortlist held it
    stop: str = "length"  # "length" | "eos" | "context"
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_tokens: int = 0

    @property
    def decode_tok_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {"prompt_ids": self.prompt_ids, "ids": self.ids, "top_logits": self.top_logits, "stop": self.stop,
                "prefill_tokens": len(self.prompt_ids), "prefill_s": self.prefill_s,
                "decode_tokens": self.decode_tokens, "decode_s": self.decode_s, "decode_tok_s": self.decode_tok_s}


def chosen_logit(cand: Candidates, token: int) -> int:
    """The FX logit the shortlist holds for ``token`` (a sampler only picks from the shortlist)."""
    return int(cand.logits_fx[int(np.flatnonzero(cand.ids == token)[0])])


def generate(backend: Backend, prompt_ids: Sequence[int], n: int, sampler: Sampler,
             stop_ids: Sequence[int] = (), on_token: Callable[[int], None] | None = None) -> Generation:
    """Prefill the prompt, then sample up to ``n`` tokens (each after the first costs one decode)."""
    if n < 0:
        raise TernError(f"-n {n} is negative", "ask for 0 or more tokens")
    prompt_ids = list(prompt_ids)
    if len(prompt_ids) > backend.max_ctx - backend.position:
        raise TernError(f"the prompt has {len(prompt_ids)} tokens, more than the {backend.max_ctx - backend.position} "
                        f"left in the context (max {backend.max_ctx})",
                        "shorten the prompt or re-quantize with a larger --max-ctx")
    gen = Generation(prompt_ids)
    t0 = time.perf_counter()
    cand = backend.prefill(prompt_ids)
    gen.prefill_s = time.perf_counter() - t0
    for i in range(n):
        token = sampler.choose(cand)
        if token in stop_ids:  # the stop token ends the text; it is neither shown nor returned
            gen.stop = "eos"
            break
        gen.ids.append(token)
        gen.top_logits.append(chosen_logit(cand, token))
        if on_token:
            on_token(token)
        if i == n - 1:
            break
        if backend.position >= backend.max_ctx:
            gen.stop = "context"
            break
        t0 = time.perf_counter()
        cand = backend.decode(token)
        gen.decode_s += time.perf_counter() - t0
        gen.decode_tokens += 1
    return gen
