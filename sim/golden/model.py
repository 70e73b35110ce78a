"""The golden model: the fabric's integer arithmetic in numpy, for prefill and decode with a KV cache.

It is the oracle every RTL test compares with, and the ``ref`` host backend. ``forward`` takes any
number of new tokens (prefill: many, decode: one); each token's arithmetic depends only on itself and
the cache, so prefilling a batch equals decoding the same tokens one by one, bit for bit.
Every intermediate can be recorded by name in a :class:`Trace` (names in docs/numerics.md).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ternfpga.quant.errors import TernError

from ..numerics.fixed import gated_act, norm_quant, quantize_absmax, requant, rope, sat32
from ..numerics.pf import PF
from ..numerics.spec import FX_ONE_LSB
from . import head as headmod
from .attention import attend
from .head import Candidates
from .matvec import requant_rows, ternary_acc
from .weights import GoldenWeights, Layer, Linear, Norm


class Trace(dict):
    """Named intermediates of one forward call. ``prefixes`` limits what is kept (None keeps all);
    ``pattern``, a regular expression, limits it further (``re.search`` on the name)."""

    def __init__(self, prefixes: Sequence[str] | None = None, pattern: str | None = None):
        super().__init__()
        self.prefixes = tuple(prefixes) if prefixes is not None else None
        self.pattern = re.compile(pattern) if pattern else None

    def want(self, name: str) -> bool:
        if self.prefixes is not None and not name.startswith(self.prefixes):
            return False
        return self.pattern is None or self.pattern.search(name) is not None

    def put(self, name: str, value) -> None:
        if self.want(name):
            self[name] = value


@dataclass
class KVCache:
    """int8 K/V rows with per-(token, kv-head) pf scales, one set per layer."""

    k8: list[np.ndarray]
    k_scale: list[PF]
    v8: list[np.ndarray]
    v_scale: list[PF]
    length: int = 0

    @classmethod
    def empty(cls, layers: int, max_ctx: int, kv_heads: int, head_dim: int) -> "KVCache":
        def rows():
            return np.zeros((max_ctx, kv_heads, head_dim), np.int8)

        def scales():
            return PF(np.zeros((max_ctx, kv_heads), np.int64), np.zeros((max_ctx, kv_heads), np.int64))

        return cls([rows() for _ in range(layers)], [scales() for _ in range(layers)],
                   [rows() for _ in range(layers)], [scales() for _ in range(layers)])


@dataclass
class StepResult:
    candidates: Candidates  # for the last token
    per_token: list[Candidates] = field(default_factory=list)  # every token, when asked for
    full_logits: np.ndarray | None = None  # FX [T, vocab] diagnostic (rescoring formula on all rows)


_NO_TRACE = Trace(prefixes=())


class GoldenModel:
    def __init__(self, image):
        self.w = GoldenWeights(image)
        self.config = image.config

    def new_cache(self) -> KVCache:
        c = self.config
        return KVCache.empty(c.layers, self.w.max_ctx, c.kv_heads, c.head_dim)

    # -- building blocks ---------------------------------------------------------------------
    def _norm_quant(self, h: np.ndarray, norm: Norm) -> tuple[np.ndarray, PF]:
        return norm_quant(h, norm.weight, norm.scale, self.w.eps)

    @staticmethod
    def _linear(x8: np.ndarray, xs: PF, lin: Linear, name: str, tr: Trace) -> np.ndarray:
        acc = ternary_acc(lin.w, x8)
        y = requant_rows(acc, lin.scale, xs)  # the engine's matvec (sim/golden/matvec.py)
        if lin.bias is not None:
            y = sat32(y + lin.bias[None, :])
        tr.put(f"{name}.acc", acc)
        tr.put(f"{name}.out", y)
        return y

    def _project(self, x: np.ndarray, sub_norm: Norm | None, lin: Linear, name: str, in_name: str,
                 tr: Trace) -> np.ndarray:
        """o_proj / down_proj: quantize the FX input (after the BitNet sub-norm when there is one)."""
        if sub_norm is not None:
            x8, xs = self._norm_quant(x, sub_norm)
        else:
            x8, xs = quantize_absmax(x, FX_ONE_LSB)
        tr.put(in_name, x8)
        return self._linear(x8, xs, lin, name, tr)

    def _attention(self, i: int, L: Layer, h: np.ndarray, pos: np.ndarray, cache: KVCache, tr: Trace) -> np.ndarray:
        c = self.config
        T = h.shape[0]
        p = f"layers.{i}"
        x8, xs = self._norm_quant(h, L.attn_norm)
        tr.put(f"{p}.attn_in.q8", x8)
        tr.put(f"{p}.attn_in.scale", xs)
        q = self._linear(x8, xs, L.lin["q"], f"{p}.q", tr).reshape(T, c.heads, c.head_dim)
        k = self._linear(x8, xs, L.lin["k"], f"{p}.k", tr).reshape(T, c.kv_heads, c.head_dim)
        v = self._linear(x8, xs, L.lin["v"], f"{p}.v", tr).reshape(T, c.kv_heads, c.head_dim)
        cos, sin = self.w.rope_cos[pos], self.w.rope_sin[pos]
        q = rope(q, cos, sin)
        k = rope(k, cos, sin)
        q8, qs = quantize_absmax(q, FX_ONE_LSB)
        k8, ks = quantize_absmax(k, FX_ONE_LSB)
        v8, vs = quantize_absmax(v, FX_ONE_LSB)
        for name, val in (("q8", q8), ("q_scale", qs), ("k8", k8), ("k_scale", ks), ("v8", v8), ("v_scale", vs)):
            tr.put(f"{p}.attn.{name}", val)
        a, b = pos[0], pos[-1] + 1
        cache.k8[i][a:b], cache.v8[i][a:b] = k8, v8
        cache.k_scale[i].m[a:b], cache.k_scale[i].e[a:b] = ks.m, ks.e
        cache.v_scale[i].m[a:b], cache.v_scale[i].e[a:b] = vs.m, vs.e
        sub = {} if tr.want(f"{p}.attn.logits") or tr.want(f"{p}.attn.probs") else None
        o = attend(q8, qs, cache.k8[i][:b], cache.k_scale[i].take(np.s_[:b]), cache.v8[i][:b],
                   cache.v_scale[i].take(np.s_[:b]), pos, sub)
        if sub:
            tr.put(f"{p}.attn.logits", sub["logits"])
            tr.put(f"{p}.attn.probs", sub["probs"])
        o = o.reshape(T, c.q_dim)
        tr.put(f"{p}.attn.out", o)
        return self._project(o, L.attn_sub_norm, L.lin["o"], f"{p}.o", f"{p}.o_in.q8", tr)

    def _mlp(self, i: int, L: Layer, h: np.ndarray, tr: Trace) -> np.ndarray:
        p = f"layers.{i}"
        x8, xs = self._norm_quant(h, L.mlp_norm)
        tr.put(f"{p}.mlp_in.q8", x8)
        g = self._linear(x8, xs, L.lin["gate"], f"{p}.gate", tr)
        u = self._linear(x8, xs, L.lin["up"], f"{p}.up", tr)
        a = gated_act(g, u, self.config.act)
        tr.put(f"{p}.act", a)
        return self._project(a, L.mlp_sub_norm, L.lin["down"], f"{p}.down", f"{p}.down_in.q8", tr)

    # -- the forward pass ----------------------------------------------------------------------
    def forward(self, tokens: Sequence[int], cache: KVCache, trace: Trace | None = None,
                all_positions: bool = False, full_logits: bool = False) -> StepResult:
        """Run ``tokens`` at positions ``cache.length ...``; return the head result for the last token
        (and for every token when ``all_positions``)."""
        c = self.config
        ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
        T = ids.shape[0]
        if T == 0:
            raise TernError("no tokens to run", "pass at least one token")
        if ids.min() < 0 or ids.max() >= c.vocab:
            raise TernError(f"token id {int(ids[(ids < 0) | (ids >= c.vocab)][0])} is outside the vocabulary",
                            f"use ids in 0..{c.vocab - 1}")
        if cache.length + T > self.w.max_ctx:
            raise TernError(f"{cache.length + T} tokens exceed the image's max context {self.w.max_ctx}",
                            "shorten the prompt or re-quantize with a larger --max-ctx")
        tr = trace if trace is not None else _NO_TRACE
        pos = cache.length + np.arange(T)
        h = requant(self.w.embed8[ids].astype(np.int64),
                    PF(self.w.embed_scale.m[ids][:, None], self.w.embed_scale.e[ids][:, None]))
        tr.put("embed", h)
        for i, L in enumerate(self.w.layers):
            h = sat32(h + self._attention(i, L, h, pos, cache, tr))
            tr.put(f"layers.{i}.residual_mid", h)
            h = sat32(h + self._mlp(i, L, h, tr))
            tr.put(f"layers.{i}.residual", h)
        cache.length += T
        x8, xs = self._norm_quant(h, self.w.final_norm)
        tr.put("final.q8", x8)
        tr.put("final.scale", xs)
        rows = list(range(T)) if all_positions else [T - 1]
        scores = ternary_acc(self.w.head_trits, x8[rows])  # one ternary matvec for every row asked for
        per_token = []
        for t, s in zip(rows, scores):
            per_token.append(headmod.shortlist(s, self.w.head8, self.w.head8_scale, x8[t], xs.take(t), self.w.head_k))
            tr.put(f"head.{t}.scores", s)
        full = headmod.full_logits(self.w.head8, self.w.head8_scale, x8, xs) if full_logits else None
        return StepResult(per_token[-1], per_token if all_positions else [], full)
