"""Checkpoint -> model image: ternarize every decoder linear, int8 the embedding and the exact head,
integerize norms and biases, add the RoPE tables and the tokenizer.

Tensors are processed one at a time and the vocabulary-sized ones in row chunks, so peak memory is
a few hundred MB above the (memory-mapped) checkpoint, whatever the model size. Section names are
the contract with the golden model (sim/golden) and the device loader.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..sim.numerics import pf
from ..sim.numerics.pf import PF
from ..sim.numerics.spec import MAX_CTX, MAX_HEAD_DIM, MAX_IN_FEATURES, numerics_header
from ..sim.numerics.tables import rope_tables
from .checkpoint import Checkpoint, layer_tensor_names
from .config import ModelConfig
from .errors import TernError
from .image import ImageWriter
from .layout import TritLayout
from .ternarize import (SCALE_MODES, TernStats, check_finite, checked_abs_sum, int8_rows, int16_norm, int32_bias,
                        ternarize, ternary_rows)

DEFAULT_MAX_CTX = 2048
CHUNK_ROWS = 8192  # rows of a vocabulary-sized matrix per chunk (~30 MB of float32 at hidden 896)
EMBED = "model.embed_tokens.weight"
LM_HEAD = "lm_head.weight"


@dataclass
class QuantizeOptions:
    scale: str = "tensor"  # "tensor" | "channel" (body linears; the ternary head is always per tensor)
    head_k: int = 256  # shortlist size the exact int8 head rescores
    max_ctx: int | None = None  # RoPE table length; default min(max_position, 2048)
    layout: TritLayout = field(default_factory=TritLayout)
    progress: bool = True


def _check_options(opts: QuantizeOptions, cfg: ModelConfig) -> int:
    """Validate options against the model; returns the effective max_ctx."""
    if opts.scale not in SCALE_MODES:
        raise TernError(f"unknown scale mode {opts.scale!r}", f"use one of {', '.join(SCALE_MODES)}")
    if not 1 <= opts.head_k <= cfg.vocab:
        raise TernError(f"head_k {opts.head_k} is outside 1..{cfg.vocab} (the vocabulary size)",
                        f"choose a --head-k in 1..{cfg.vocab}")
    max_ctx = min(cfg.max_position, DEFAULT_MAX_CTX) if opts.max_ctx is None else opts.max_ctx
    if not 1 <= max_ctx <= cfg.max_position:
        raise TernError(f"max_ctx {max_ctx} is outside 1..{cfg.max_position} (max_position_embeddings)",
                        "choose a --max-ctx the model supports")
    if max_ctx > MAX_CTX:
        raise TernError(f"max_ctx {max_ctx} exceeds the numerics limit {MAX_CTX} (docs/numerics.md)",
                        f"choose --max-ctx {MAX_CTX} or less")
    widest = max(cfg.hidden, cfg.ffn, cfg.q_dim)
    if widest > MAX_IN_FEATURES or cfg.head_dim > MAX_HEAD_DIM:
        raise TernError(f"model dims (widest linear input {widest}, head_dim {cfg.head_dim}) exceed the numerics "
                        f"limits ({MAX_IN_FEATURES}, {MAX_HEAD_DIM}; docs/numerics.md)", "this model is not supported")
    return max_ctx


def _check_output(out: Path) -> None:
    if not out.parent.is_dir():
        raise TernError(f"output folder '{out.parent}' does not exist", "create it first or choose another -o path")
    if out.is_dir():
        raise TernError(f"output path '{out}' is a directory", "pass a file name such as model.tern")


def _chunks(ck: Checkpoint, name: str, rows: int, step: int) -> Iterator[torch.Tensor]:
    for a in range(0, rows, step):
        yield ck.rows(name, a, min(a + step, rows))


class _Int8Pass:
    """One pass over a vocabulary-sized tensor: int8 rows out (streamed), per-row pf scales and sum|W|
    collected on the side (the latter is the first pass of the ternary head's absmean)."""

    def __init__(self, ck: Checkpoint, name: str, rows: int, step: int):
        self.ck, self.name, self.rows, self.step = ck, name, rows, step
        self.scales: list[PF] = []
        self.abs_sum = 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        for w in _chunks(self.ck, self.name, self.rows, self.step):
            self.abs_sum += checked_abs_sum(self.name, w)
            q, s = int8_rows(w)
            self.scales.append(s)
            yield q

    def scale(self) -> PF:
        return PF(np.concatenate([s.m for s in self.scales]), np.concatenate([s.e for s in self.scales]))


def _head_trits(ck: Checkpoint, name: str, rows: int, step: int, s: np.ndarray, stats: TernStats) -> Iterator[np.ndarray]:
    for w in _chunks(ck, name, rows, step):
        yield ternary_rows(w, s, stats)


def quantize_checkpoint(ckpt_dir: str | Path, out_path: str | Path, opts: QuantizeOptions | None = None) -> dict:
    """Quantize the checkpoint in ``ckpt_dir`` into the image ``out_path``; returns the report."""
    from tqdm import tqdm

    opts = opts or QuantizeOptions()
    t0 = time.perf_counter()
    out = Path(out_path)
    _check_output(out)
    ck = Checkpoint.open(ckpt_dir)
    cfg = ck.config
    max_ctx = _check_options(opts, cfg)
    layout = opts.layout
    step = max(layout.row_block, CHUNK_ROWS // layout.row_block * layout.row_block)
    quant = {"scale": opts.scale, "head_k": opts.head_k, "max_ctx": max_ctx, "source": Path(ckpt_dir).resolve().name}
    numerics = numerics_header()
    layers: list[dict] = []
    trit_shapes: list[tuple[int, int]] = []
    bar = tqdm(total=cfg.layers + 2, desc="quantize", unit="step", file=sys.stderr,
               # None: tqdm turns itself off when stderr is not a terminal (logs, pipes stay clean)
               disable=None if opts.progress else True,
               leave=False)
    try:
        with torch.inference_mode(), ImageWriter(out, cfg, layout, numerics, quant) as w:
            w.add_bytes("tokenizer", ck.tokenizer_json.encode("utf-8"))

            # embedding (and, when tied, the first pass of the ternary head)
            bar.set_postfix_str("embedding")
            emb = _Int8Pass(ck, EMBED, cfg.vocab, step)
            w.add_array_chunks("embed.int8", "int8", (cfg.vocab, cfg.hidden), emb)
            w.add_pf("embed.scale", emb.scale())
            bar.update()

            for i in range(cfg.layers):
                bar.set_postfix_str(f"layer {i}")
                layers.append(_quantize_layer(w, ck, cfg, i, opts.scale, trit_shapes))
                bar.update()

            _add_norm(w, ck, "final_norm", "model.norm.weight")

            # head: ternary copy (always per-tensor absmean) + exact int8 copy
            bar.set_postfix_str("head")
            src = EMBED if cfg.tied else LM_HEAD
            head8 = emb
            if not cfg.tied:
                head8 = _Int8Pass(ck, LM_HEAD, cfg.vocab, step)
                w.add_array_chunks("head.int8", "int8", (cfg.vocab, cfg.hidden), head8)
                w.add_pf("head.int8_scale", head8.scale())
            s = np.array([head8.abs_sum / (cfg.vocab * cfg.hidden)])
            head_stats = TernStats()
            w.add_trits_chunks("head.trits", cfg.vocab, cfg.hidden, _head_trits(ck, src, cfg.vocab, step, s, head_stats))
            w.add_pf("head.scale", pf.from_float(s))
            if cfg.tied:
                w.add_alias("head.int8", "embed.int8")
                w.add_alias("head.int8_scale", "embed.scale")
            trit_shapes.append((cfg.vocab, cfg.hidden))
            bar.update()

            cos, sin = rope_tables(cfg.rope_theta, cfg.head_dim, max_ctx)
            w.add_array("rope.cos", cos)
            w.add_array("rope.sin", sin)

            head = {"shape": [cfg.vocab, cfg.hidden], **head_stats.to_dict()}
            totals = _totals(layout, trit_shapes)
            w.set_quant(stats={**totals, "head": head, "layers": layers})
    finally:
        bar.close()
    totals["image_bytes"] = out.stat().st_size
    totals["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return {
        "source": str(Path(ckpt_dir)),
        "output": str(out),
        "config": cfg.to_dict(),
        "options": {"scale": opts.scale, "head_k": opts.head_k, "max_ctx": max_ctx, "layout": layout.to_dict()},
        "layers": layers,
        "head": head,
        "totals": totals,
    }


def _add_norm(w: ImageWriter, ck: Checkpoint, short: str, hf_name: str) -> None:
    g = ck.tensor(hf_name)
    check_finite(hf_name, g)
    q, s = int16_norm(g)
    w.add_array(f"{short}.weight", q)
    w.add_pf(f"{short}.scale", s)


def _quantize_layer(w: ImageWriter, ck: Checkpoint, cfg: ModelConfig, i: int, mode: str,
                    trit_shapes: list[tuple[int, int]]) -> dict:
    names = layer_tensor_names(cfg, i)
    p = f"layers.{i}."
    linears: dict[str, dict] = {}

    def linear(short: str, rows: int, cols: int) -> None:
        wt = ck.tensor(names[short])
        res = ternarize(wt, mode, names[short])
        del wt
        w.add_trits(p + f"{short}.trits", res.trits)
        w.add_pf(p + f"{short}.scale", res.scale)
        trit_shapes.append((rows, cols))
        linears[short] = {"shape": [rows, cols], **res.stats.to_dict()}
        if f"{short}_bias" in names:
            b = ck.tensor(names[f"{short}_bias"])
            check_finite(names[f"{short}_bias"], b)
            w.add_array(p + f"{short}.bias", int32_bias(b))

    # sections in execution order (norm before the linears it feeds)
    shapes = {s: (o, n) for s, o, n in cfg.linears()}
    _add_norm(w, ck, p + "attn_norm", names["attn_norm"])
    for short in ("q", "k", "v"):
        linear(short, *shapes[short])
    if cfg.sub_norms:
        _add_norm(w, ck, p + "attn_sub_norm", names["attn_sub_norm"])
    linear("o", *shapes["o"])
    _add_norm(w, ck, p + "mlp_norm", names["mlp_norm"])
    linear("gate", *shapes["gate"])
    linear("up", *shapes["up"])
    if cfg.sub_norms:
        _add_norm(w, ck, p + "mlp_sub_norm", names["mlp_sub_norm"])
    linear("down", *shapes["down"])
    return {"layer": i, "linears": linears}


def _totals(layout: TritLayout, shapes: list[tuple[int, int]]) -> dict:
    weights = sum(r * c for r, c in shapes)
    packed = sum(layout.packed_bytes(r, c) for r, c in shapes)
    payload = sum(layout.ports * layout.payload_bytes(r, c) for r, c in shapes)
    return {
        "ternary_weights": weights,
        "packed_trit_bytes": packed,  # as stored (each port region padded to 4 KiB)
        "bits_per_weight": 8 * packed / weights if weights else 0.0,
        "payload_bits_per_weight": 8 * payload / weights if weights else 0.0,  # beats only
    }
