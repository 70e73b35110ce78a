"""The device-backend interface. Everything above it (generation, sampling, the CLI) is identical for
every backend: ``ref`` (the golden model), ``sim`` (the Verilator virtual KV260) and ``kv260`` (the board).
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Sequence

from ternfpga.quant.errors import TernError
from ternfpga.sim.golden import Candidates

__all__ = ["Backend", "Candidates", "open_backend", "BACKENDS"]


class Backend(ABC):
    """One model loaded on one device, with its KV cache.

    ``prefill(tokens)`` runs the tokens after what is already cached and returns the next-token
    candidates of the last one; ``decode(token)`` runs one token. Both return :class:`Candidates`:
    the head's top-K shortlist with exact FX logits, best first.
    """

    name = "?"

    def __init__(self):
        self._counters = {"prefill_calls": 0, "prefill_tokens": 0, "prefill_s": 0.0,
                          "decode_calls": 0, "decode_s": 0.0}

    @abstractmethod
    def load(self, image) -> None:
        """Load a :class:`ternfpga.quant.image.ModelImage` (weights to device memory, cache cleared)."""

    @abstractmethod
    def reset(self) -> None:
        """Forget the KV cache (a new sequence starts at position 0)."""

    @property
    @abstractmethod
    def position(self) -> int:
        """Tokens held in the KV cache."""

    @property
    @abstractmethod
    def max_ctx(self) -> int:
        """Largest number of tokens the cache can hold."""

    @property
    @abstractmethod
    def head_k(self) -> int:
        """Length of the candidate shortlist."""

    @abstractmethod
    def _prefill(self, tokens: Sequence[int]) -> Candidates: ...

    @abstractmethod
    def _decode(self, token: int) -> Candidates: ...

    def prefill(self, tokens: Sequence[int]) -> Candidates:
        tokens = list(tokens)
        if not tokens:
            raise TernError("nothing to prefill", "pass at least one prompt token")
        if self.position + len(tokens) > self.max_ctx:
            raise TernError(f"{self.position + len(tokens)} tokens exceed the max context {self.max_ctx}",
                            "shorten the prompt or re-quantize with a larger --max-ctx")
        t0 = time.perf_counter()
        out = self._prefill(tokens)
        self._counters["prefill_s"] += time.perf_counter() - t0
        self._counters["prefill_calls"] += 1
        self._counters["prefill_tokens"] += len(tokens)
        return out

    def decode(self, token: int) -> Candidates:
        if self.position + 1 > self.max_ctx:
            raise TernError(f"the context is full ({self.max_ctx} tokens)", "start a new sequence with reset()")
        t0 = time.perf_counter()
        out = self._decode(int(token))
        self._counters["decode_s"] += time.perf_counter() - t0
        self._counters["decode_calls"] += 1
        return out

    def counters(self) -> dict:
        """Calls, tokens and seconds spent, plus whatever the device counts."""
        return dict(self._counters, position=self.position)


def _ref():
    from .ref import RefBackend
    return RefBackend()


def _sim(params=None):
    from .sim import SimBackend
    return SimBackend(params)


def _kv260(params=None):
    from .kv260 import Kv260Backend
    return Kv260Backend(params)


BACKENDS = {
    "ref": _ref,
    "sim": _sim,
    "kv260": _kv260,
}


# options a backend takes (the CLI's --accel is the accelerator's parameters)
BACKEND_OPTIONS = {"sim": ("params",), "kv260": ("params",)}


def open_backend(name: str, image, **options) -> Backend:
    """Open backend ``name`` and load ``image``. ``options``: backend settings (``params``: the accelerator's
    AccelParams, for ``sim`` and ``kv260``); None values are left out."""
    if name not in BACKENDS:
        raise TernError(f"unknown backend {name!r}", f"choose one of {', '.join(BACKENDS)}")
    options = {k: v for k, v in options.items() if v is not None}
    bad = sorted(set(options) - set(BACKEND_OPTIONS.get(name, ())))
    if bad:
        flag = {"params": "--accel"}.get(bad[0], bad[0])
        users = [n for n, opts in BACKEND_OPTIONS.items() if bad[0] in opts]
        raise TernError(f"{flag} does not apply to the {name} backend",
                        f"drop it, or use --backend {' or '.join(users) or 'sim'}")
    backend = BACKENDS[name](**options)
    backend.load(image)
    return backend
