"""Weights of the golden model, decoded from a model image exactly as the fabric sees them.

Ternary matrices are unpacked from their packed DDR layout (so the layout itself is under test) and
held as float32 {-1, 0, 1}: with int8 activations every partial sum is an integer below 2**24, so
float32 BLAS products are exact and fast.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ternfpga.quant.errors import TernError

from ..numerics import pf
from ..numerics.pf import PF
from ..numerics.spec import NUMERICS_VERSION

LINEARS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclass
class Norm:
    weight: np.ndarray  # int64 [n] (int16 codes)
    scale: PF  # per-tensor, 0-d


@dataclass
class Linear:
    w: np.ndarray  # float32 [out, in], entries in {-1, 0, 1}
    scale: PF  # [1] (per tensor) or [out] (per channel)
    bias: np.ndarray | None  # int64 FX [out]


@dataclass
class Layer:
    attn_norm: Norm
    mlp_norm: Norm
    attn_sub_norm: Norm | None
    mlp_sub_norm: Norm | None
    lin: dict[str, Linear]


def _norm(img, name: str) -> Norm:
    s = img.pf(f"{name}.scale")
    return Norm(img.array(f"{name}.weight").astype(np.int64), PF(s.m.reshape(()), s.e.reshape(())))


def _linear(img, name: str, bias: bool) -> Linear:
    w = img.trits(f"{name}.trits").astype(np.float32)
    b = img.array(f"{name}.bias").astype(np.int64) if bias else None
    return Linear(w, img.pf(f"{name}.scale"), b)


class GoldenWeights:
    """Everything the golden model reads from an image."""

    def __init__(self, img):
        numerics = img.header.get("numerics", {})
        if numerics.get("version") != NUMERICS_VERSION:
            raise TernError(f"image uses numerics version {numerics.get('version')}, this golden model "
                            f"implements version {NUMERICS_VERSION}", "re-create the image with this version's `ternfpga quantize`")
        cfg = self.config = img.config
        try:
            self.head_k = int(img.header["quant"]["head_k"])
            self.max_ctx = int(img.header["quant"]["max_ctx"])
        except (KeyError, TypeError, ValueError):
            raise TernError("the image's header lacks head_k/max_ctx", "re-create the image with `ternfpga quantize`") from None
        self.eps = pf.from_float(cfg.eps)
        self.embed8 = img.array("embed.int8")
        self.embed_scale = img.pf("embed.scale")
        self.layers: list[Layer] = []
        for i in range(cfg.layers):
            p = f"layers.{i}"
            self.layers.append(Layer(
                attn_norm=_norm(img, f"{p}.attn_norm"),
                mlp_norm=_norm(img, f"{p}.mlp_norm"),
                attn_sub_norm=_norm(img, f"{p}.attn_sub_norm") if cfg.sub_norms else None,
                mlp_sub_norm=_norm(img, f"{p}.mlp_sub_norm") if cfg.sub_norms else None,
                lin={n: _linear(img, f"{p}.{n}", cfg.qkv_bias and n in ("q", "k", "v")) for n in LINEARS},
            ))
        self.final_norm = _norm(img, "final_norm")
        self.head_trits = img.trits("head.trits").astype(np.float32)
        self.head8 = img.array("head.int8")
        self.head8_scale = img.pf("head.int8_scale")
        self.rope_cos = img.array("rope.cos").astype(np.int64)
        self.rope_sin = img.array("rope.sin").astype(np.int64)
