"""Output head: ternary scoring of every vocabulary row, top-K shortlist, exact int8 rescoring.

ranking key  t_r = trits_r . x8          (one ternary matvec over the whole vocabulary)
shortlist    the K rows with the largest t_r, ties to the lower token id
rescoring    l_r = sat32(round((head8_r . x8) * S8_r * Sx * 2**16))   FX logits of the shortlist
result       shortlist ordered by (l_r descending, token id ascending)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..numerics import pf
from ..numerics.fixed import requant
from ..numerics.pf import PF
from ..numerics.spec import FX_FRAC


@dataclass
class Candidates:
    """The next-token shortlist a device returns: token ids and FX (Q15.16) logits, best first."""

    ids: np.ndarray  # int64 [K]
    logits_fx: np.ndarray  # int64 [K], value = logits_fx * 2**-16

    @property
    def logits(self) -> np.ndarray:
        return self.logits_fx.astype(np.float64) / (1 << FX_FRAC)

    def __len__(self) -> int:
        return len(self.ids)


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, ordered by (score descending, index ascending)."""
    scores = np.asarray(scores, dtype=np.int64)
    n = scores.shape[0]
    k = min(k, n)
    if k < n:
        thr = np.partition(scores, n - k)[n - k]
        above = np.flatnonzero(scores > thr)
        ties = np.flatnonzero(scores == thr)[: k - len(above)]
        cand = np.concatenate([above, ties])
    else:
        cand = np.arange(n)
    return cand[np.lexsort((cand, -scores[cand]))]


def rescore(head8: np.ndarray, head8_scale: PF, rows: np.ndarray, x8: np.ndarray, x_scale: PF) -> np.ndarray:
    """FX logits of ``rows`` for one token: int8 dot products, then one pf requantization per row."""
    dots = head8[rows].astype(np.int64) @ x8.astype(np.int64)
    return requant(dots, pf.mul(head8_scale.take(rows), x_scale))


def shortlist(scores: np.ndarray, head8: np.ndarray, head8_scale: PF, x8: np.ndarray, x_scale: PF,
              k: int) -> Candidates:
    """The head for one token from its ternary scores (``ternary_acc`` of the ternary head): the top-K
    rows rescored from the int8 copy, ordered by (logit descending, id ascending)."""
    rows = top_k_indices(scores, k)
    logits = rescore(head8, head8_scale, rows, x8, x_scale)
    order = np.lexsort((rows, -logits))
    return Candidates(rows[order], logits[order])


def full_logits(head8: np.ndarray, head8_scale: PF, x8: np.ndarray, x_scale: PF) -> np.ndarray:
    """Diagnostic: the rescoring formula applied to every row, x8 [T, hidden] -> FX [T, vocab].
    float64 keeps the int8 dot products exact (|dot| <= 127**2 * hidden < 2**53)."""
    dots = (x8.astype(np.float64) @ head8.astype(np.float64).T).astype(np.int64)
    s = pf.mul(PF(head8_scale.m[None, :], head8_scale.e[None, :]), PF(x_scale.m[:, None], x_scale.e[:, None]))
    return requant(dots, s)
