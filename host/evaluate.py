"""Fidelity report: the golden model (integer) vs the fake-quantized float model vs the float model.

Teacher-forced over one token sequence: per-position logits cosine and top-1 agreement for each pair,
per-layer residual cosine, the device path's top-1 (ternary shortlist + int8 rescoring) and how often
the float model's top-1 is inside the shortlist. The device path's shortlists come from a backend (one
call per position: a prefill of the first token, then decodes), so ``sim`` is measured, not assumed.
"""
from __future__ import annotations

import numpy as np
import torch

from ternfpga.quant.errors import TernError
from ternfpga.sim.numerics.spec import FX_FRAC

SAMPLE_TEXT = (
    "The accelerator streams ternary weights from memory while the host feeds it one token at a time. "
    "Each layer normalizes the residual stream, projects it to queries, keys and values, and mixes the "
    "past through attention before a gated feed-forward block adds its own update. Small numeric "
    "errors add up over many layers, so every stage is checked against a reference that shares its "
    "arithmetic. A quiet morning, a long road, and a notebook full of measurements: that is how the "
    "design was tuned, one experiment after another, until the numbers agreed."
)


def sample_ids(tokenizer, n: int) -> list[int]:
    ids = tokenizer.encode(SAMPLE_TEXT, add_special_tokens=False).ids
    if not ids:
        raise TernError("the tokenizer produced no tokens for the sample text", "check the image's tokenizer")
    return (ids * (n // len(ids) + 1))[:n]


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1), 1.0)


def _pair(a: np.ndarray, b: np.ndarray) -> dict:
    c = _cos_rows(a, b)
    return {"cosine_mean": float(c.mean()), "cosine_min": float(c.min()),
            "top1_agree": float((a.argmax(-1) == b.argmax(-1)).mean())}


def device_shortlists(backend, ids: list[int]) -> list:
    """Teacher-forced shortlists from ``backend``: the candidates after each of ``ids``."""
    backend.reset()
    out = [backend.prefill(ids[:1])]
    out += [backend.decode(t) for t in ids[1:]]
    return out


def fidelity(image, ckpt, n_tokens: int = 64, ids: list[int] | None = None, backend=None) -> dict:
    """``image``: an open ModelImage; ``ckpt``: the Checkpoint it was quantized from; ``backend``: an open
    backend with ``image`` loaded for the device path (None: the golden model's own shortlists)."""
    from ternfpga.quant.float_ref import FloatModel
    from ternfpga.sim.golden import GoldenModel, Trace

    if image.config != ckpt.config:
        raise TernError(f"the image was not quantized from '{ckpt.path}' (model configs differ)",
                        "pass the checkpoint the image was made from")
    max_ctx = int(image.header["quant"]["max_ctx"])
    if ids is None:
        if n_tokens < 2:
            raise TernError(f"--tokens {n_tokens} is too small", "use at least 2")
        if n_tokens > max_ctx:
            raise TernError(f"--tokens {n_tokens} exceeds the image's max context {max_ctx}",
                            f"use at most {max_ctx}")
        if backend is not None and n_tokens > backend.max_ctx:
            raise TernError(f"--tokens {n_tokens} exceeds the {backend.name} backend's max context {backend.max_ctx}",
                            f"use at most {backend.max_ctx}")
        ids = sample_ids(image.tokenizer(), n_tokens)
    golden = GoldenModel(image)
    trace = Trace(pattern=r"(^embed$|\.residual$)")
    res = golden.forward(ids, golden.new_cache(), trace=trace, all_positions=True, full_logits=True)
    g_logits = res.full_logits / (1 << FX_FRAC)
    g_res = [trace["embed"]] + [trace[f"layers.{i}.residual"] for i in range(image.config.layers)]
    g_res = [r / (1 << FX_FRAC) for r in g_res]
    with torch.no_grad():  # one float model in memory at a time
        fq = FloatModel(ckpt, mode="fakequant", scale=image.header["quant"]["scale"]).forward(ids)
        fl = FloatModel(ckpt, mode="float").forward(ids)
    fq_logits, fl_logits = fq.logits.double().numpy(), fl.logits.double().numpy()
    fq_res = [r.double().numpy() for r in fq.residuals]
    fl_res = [r.double().numpy() for r in fl.residuals]
    shortlists = res.per_token if backend is None else device_shortlists(backend, list(ids))
    device_top1 = np.array([c.ids[0] for c in shortlists])
    float_top1 = fl_logits.argmax(-1)
    in_list = np.mean([ft in set(c.ids.tolist()) for ft, c in zip(float_top1, shortlists)])
    layers = []
    for i in range(len(g_res)):
        layers.append({
            "layer": "embed" if i == 0 else i - 1,
            "golden_vs_fakequant": float(_cos_rows(g_res[i], fq_res[i]).mean()),
            "fakequant_vs_float": float(_cos_rows(fq_res[i], fl_res[i]).mean()),
            "golden_max_abs": float(np.abs(g_res[i]).max()),
        })
    return {
        "tokens": len(ids),
        "golden_vs_fakequant": _pair(g_logits, fq_logits),
        "fakequant_vs_float": _pair(fq_logits, fl_logits),
        "golden_vs_float": _pair(g_logits, fl_logits),
        "device_top1_vs_float": float((device_top1 == float_top1).mean()),
        "device_top1_vs_golden_full": float((device_top1 == g_logits.argmax(-1)).mean()),
        "float_top1_in_shortlist": float(in_list),
        "head_k": int(image.header["quant"]["head_k"]),
        "backend": "golden" if backend is None else backend.name,
        "residual_saturation_headroom": float(2**15 / max(max(r["golden_max_abs"] for r in layers), 1e-30)),
        "layers": layers,
    }
