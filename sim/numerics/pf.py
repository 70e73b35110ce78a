"""Pseudo-float scales: ``value = m * 2**e`` with a 16-bit normalized mantissa.

Every per-tensor, per-row, per-token and per-head scale in the fabric is a pseudo-float (pf): an
unsigned mantissa ``m`` with ``2**15 <= m < 2**16`` (or ``m == 0`` for the value zero, with ``e == 0``)
and a signed exponent ``e``. Products, reciprocals and square roots of pfs are defined here with
integer operations only, so the RTL reproduces them bit for bit (see docs/numerics.md, "Scales").

Arrays: a pf array is a pair of int64 numpy arrays ``(m, e)`` of one shape. Scalars use 0-d arrays.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

M_BITS = 16
M_MIN = 1 << (M_BITS - 1)
M_LIMIT = 1 << M_BITS


class PF(NamedTuple):
    m: np.ndarray
    e: np.ndarray

    def to_float(self) -> np.ndarray:
        """The exact value as float64 (for reports and float references only; never in the hot path)."""
        return np.ldexp(self.m.astype(np.float64), self.e.astype(np.int64))

    def take(self, idx) -> "PF":
        """Index both arrays alike (``s.take(np.s_[3])``, ``s.take(rows)``)."""
        return PF(self.m[idx], self.e[idx])

    @property
    def shape(self) -> tuple[int, ...]:
        return self.m.shape


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def bitlen(x: np.ndarray) -> np.ndarray:
    """Number of bits of non-negative int64 values (0 for 0). Exact for all int64 >= 0."""
    x = _i64(x)
    # frexp of the float64 conversion is exact below 2**53; above, rounding can only carry into the
    # next power of two, which the correction step undoes.
    n = np.frexp(x.astype(np.float64))[1].astype(np.int64)
    over = (n > 0) & ((np.int64(1) << np.clip(n - 1, 0, 62)) > x)
    return n - over


def rshift_round(x: np.ndarray, s: np.ndarray | int) -> np.ndarray:
    """Arithmetic right shift by ``s >= 0`` with round-half-up: ``floor(x / 2**s + 1/2)``.

    ``s`` may be an array; ``s == 0`` returns ``x``; ``s >= 63`` returns 0 for any |x| < 2**62.
    """
    x = _i64(x)
    s = _i64(s)
    if np.any(s < 0):
        raise ValueError("rshift_round needs a non-negative shift")
    s_c = np.minimum(s, 62)
    half = np.where(s_c > 0, np.int64(1) << np.maximum(s_c - 1, 0), 0)
    out = (x + half) >> s_c
    return np.where(s >= 63, 0, out)


def shift_round(x: np.ndarray, s: np.ndarray | int) -> np.ndarray:
    """``x * 2**-s`` rounded half-up for ``s >= 0``, exact left shift ``x << -s`` for ``s < 0``."""
    x = _i64(x)
    s = _i64(s)
    right = rshift_round(x, np.maximum(s, 0))
    left = x << np.minimum(np.maximum(-s, 0), 62)
    return np.where(s >= 0, right, left)


def normalize(v: np.ndarray, e: np.ndarray | int) -> PF:
    """Round a non-negative integer ``v * 2**e`` (v < 2**62) to a pf (round half up, renormalized)."""
    v = _i64(v)
    e = _i64(e) + np.zeros(v.shape, dtype=np.int64)
    if np.any(v < 0):
        raise ValueError("pf values are non-negative")
    s = bitlen(v) - M_BITS  # shift that brings v into [2**15, 2**16)
    m = shift_round(v, s)
    e = e + s
    carry = m >= M_LIMIT  # rounding overflowed to 2**16
    m = np.where(carry, m >> 1, m)
    e = np.where(carry, e + 1, e)
    zero = v == 0
    return PF(np.where(zero, 0, m), np.where(zero, 0, e))


def from_int(v) -> PF:
    """pf of a non-negative integer (rounded to 16 significant bits)."""
    return normalize(_i64(v), 0)


def from_float(x) -> PF:
    """pf nearest to a non-negative float (round half up on the 16-bit mantissa). Offline use only:
    the quantizer turns float scales into pfs; the hot path never converts floats."""
    x = np.asarray(x, dtype=np.float64)
    if np.any(~np.isfinite(x)) or np.any(x < 0):
        raise ValueError("pf.from_float needs finite non-negative values")
    fr, ex = np.frexp(x)  # x = fr * 2**ex, fr in [0.5, 1)
    m = np.floor(fr * M_LIMIT + 0.5).astype(np.int64)
    e = ex.astype(np.int64) - M_BITS
    carry = m >= M_LIMIT
    m = np.where(carry, m >> 1, m)
    e = np.where(carry, e + 1, e)
    zero = m == 0
    return PF(np.where(zero, 0, m), np.where(zero, 0, e))


def mul(a: PF, b: PF) -> PF:
    """Product of two pfs: 32-bit mantissa product rounded back to 16 bits."""
    return normalize(_i64(a.m) * _i64(b.m), _i64(a.e) + _i64(b.e))


def shl(a: PF, k) -> PF:
    """``a * 2**k`` (exponent add; zero stays zero)."""
    return PF(_i64(a.m), np.where(_i64(a.m) == 0, 0, _i64(a.e) + _i64(k)))


def add(a: PF, b: PF) -> PF:
    """Sum of two non-negative pfs: align to the larger exponent with 16 guard bits (floor), add, round."""
    am, ae, bm, be = _i64(a.m), _i64(a.e), _i64(b.m), _i64(b.e)
    ae = np.where(am == 0, np.minimum(be, ae), ae)
    be = np.where(bm == 0, np.minimum(ae, be), be)
    e = np.maximum(ae, be)
    ga = (am << 16) >> np.minimum(e - ae, 62)
    gb = (bm << 16) >> np.minimum(e - be, 62)
    return normalize(ga + gb, e - 16)


def recip(a: PF) -> PF:
    """1/a: ``m' = round(2**32 / m)`` by integer division. Raises on zero."""
    am = _i64(a.m)
    if np.any(am == 0):
        raise ZeroDivisionError("pf.recip of zero")
    q = ((np.int64(1) << 33) // am + 1) >> 1  # round(2**32 / m), in (2**16, 2**17]
    return normalize(q, -_i64(a.e) - 32)


def rsqrt(a: PF) -> PF:
    """1/sqrt(a): with e made even, ``r = isqrt(2**48 // m')`` (floor), then normalized.

    ``floor(sqrt(floor(y))) == floor(sqrt(y))``, so r is the exact floor of ``2**24 / sqrt(m')``.
    """
    am, ae = _i64(a.m), _i64(a.e)
    if np.any(am == 0):
        raise ZeroDivisionError("pf.rsqrt of zero")
    odd = (ae & 1) == 1
    m2 = np.where(odd, am << 1, am)
    e2 = np.where(odd, ae - 1, ae)
    y = (np.int64(1) << 48) // m2
    r = isqrt(y)
    return normalize(r, -24 - (e2 >> 1))


def isqrt(y: np.ndarray) -> np.ndarray:
    """Exact floor square root of non-negative int64 values (y < 2**62)."""
    y = _i64(y)
    r = np.floor(np.sqrt(y.astype(np.float64))).astype(np.int64)
    # float sqrt is within one of the answer for y < 2**62; settle it exactly
    r = np.where(r * r > y, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= y, r + 1, r)
    r = np.where(r * r > y, r - 1, r)
    return r


def apply(x: np.ndarray, s: PF, frac: int) -> np.ndarray:
    """Requantize integers by a pf scale to a fixed-point result with ``frac`` fraction bits:
    ``round(x * m * 2**(e + frac))``. Needs ``|x| * m < 2**62``. Every caller saturates the result to
    int32; a left shift here is clamped so that it cannot overflow int64 yet saturates identically:
    ``x * m`` is clipped to the int32 range and the shift to 32 bits (any non-zero value shifted left
    by >= 1 from beyond int32, or by >= 32, lands beyond int32 either way)."""
    xm = _i64(x) * _i64(s.m)
    sh = -(_i64(s.e) + frac)
    right = rshift_round(xm, np.maximum(sh, 0))
    k = np.minimum(np.maximum(-sh, 0), 32)
    left = np.clip(xm, -(1 << 31), (1 << 31) - 1) << k
    return np.where(sh >= 0, right, left)
