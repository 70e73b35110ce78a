"""The fixed-point building blocks against float math (the outside oracle), and their edge cases."""
import math

import numpy as np
import pytest

from ternfpga.sim.golden.attention import attend
from ternfpga.sim.golden.head import top_k_indices
from ternfpga.sim.numerics import fixed, pf
from ternfpga.sim.numerics.spec import FX_ONE_LSB, INV127, LOG2E

rng = np.random.default_rng(1234)


def test_rshift_round_is_round_half_up():
    x = np.arange(-40, 41)
    for s in range(0, 5):
        want = np.floor(x / 2**s + 0.5).astype(np.int64)
        assert np.array_equal(pf.rshift_round(x, s), want)
    assert np.array_equal(pf.shift_round(np.array([3, -3]), -2), [12, -12])
    assert pf.rshift_round(np.int64(2**61), 70) == 0


def test_bitlen_and_isqrt_exact():
    vals = np.array([0, 1, 2, 3, 4, 7, 8, 2**31 - 1, 2**31, 2**52 + 1, 2**53 - 1, 2**54 - 1, 2**61, 2**62 - 1],
                    dtype=np.int64)
    assert list(pf.bitlen(vals)) == [int(v).bit_length() for v in vals]
    ys = np.concatenate([vals, rng.integers(0, 2**62, 2000)])
    assert list(pf.isqrt(ys)) == [math.isqrt(int(y)) for y in ys]


def test_pf_ops_close_to_float():
    a = rng.uniform(1e-6, 1e6, 500)
    b = rng.uniform(1e-6, 1e6, 500)
    pa, pb = pf.from_float(a), pf.from_float(b)
    assert np.all((pa.m >= 2**15) & (pa.m < 2**16))
    np.testing.assert_allclose(pa.to_float(), a, rtol=2**-16)
    np.testing.assert_allclose(pf.mul(pa, pb).to_float(), a * b, rtol=2**-14)
    np.testing.assert_allclose(pf.add(pa, pb).to_float(), a + b, rtol=2**-14)
    np.testing.assert_allclose(pf.recip(pa).to_float(), 1 / a, rtol=2**-14)
    np.testing.assert_allclose(pf.rsqrt(pa).to_float(), 1 / np.sqrt(a), rtol=2**-14)
    z = pf.from_float(0.0)
    assert z.m == 0 and z.e == 0 and pf.mul(z, pa).m.max() == 0
    assert INV127.m == 33026 and INV127.e == -22


def test_rsqrt_exact_definition():
    m = rng.integers(2**15, 2**16, 300)
    e = rng.integers(-60, 60, 300)
    r = pf.rsqrt(pf.PF(m, e))
    for mi, ei, rm, re in zip(m, e, r.m, r.e):
        m2, e2 = (int(mi) * 2, int(ei) - 1) if ei % 2 else (int(mi), int(ei))
        raw = math.isqrt((1 << 48) // m2)
        assert rm * 2.0**re == pytest.approx(raw * 2.0 ** (-24 - e2 // 2), rel=2**-15)


def test_quantize_absmax_matches_float_rounding():
    z = rng.integers(-(2**40), 2**40, (64, 300))
    z[3] = 0
    z[4, :] = 5  # small magnitudes take the exact left-shift path
    q, s = fixed.quantize_absmax(z, FX_ONE_LSB)
    assert q.dtype == np.int8 and np.abs(q).max() <= 127
    m = np.abs(z).max(axis=1, keepdims=True).astype(np.float64)
    ideal = np.where(m > 0, z * 127.0 / np.where(m > 0, m, 1), 0)
    # within rounding of the float quantizer, plus the 16-bit pre-reduction (127 * 2**-15)
    assert np.abs(q - ideal).max() <= 0.5 + 127 * 2**-15
    assert np.all(np.abs(q[np.arange(64) != 3]).max(axis=1) == 127)
    assert s.m[3] == 0 and not q[3].any()
    deq = q * s.to_float()[:, None]
    rows = np.arange(64) != 3
    np.testing.assert_allclose(deq[rows], (z * 2.0**-16)[rows], atol=float(np.max(s.to_float())) * 0.51)


def test_norm_quant_matches_float_rmsnorm():
    n = 96
    h = (rng.standard_normal((16, n)) * 2**16 * 0.3).astype(np.int64)
    h[:, 5] *= 400  # outlier channel
    g = rng.uniform(0.5, 1.5, n)
    gs = pf.from_float(np.abs(g).max() / 32767)
    gq = np.round(g / gs.to_float()).astype(np.int64)
    eps = pf.from_float(1e-6)
    q, s = fixed.norm_quant(h, gq, gs, eps)
    x = h / 2**16
    y = x / np.sqrt((x**2).mean(axis=1, keepdims=True) + 1e-6) * (gq * gs.to_float())
    np.testing.assert_allclose(q * s.to_float()[:, None], y, atol=np.abs(y).max() / 127 * 0.55)
    np.testing.assert_allclose(s.to_float(), np.abs(y).max(axis=1) / 127, rtol=1e-3)


def test_sigmoid_and_gated_activations():
    x = np.linspace(-20, 20, 4001)
    xf = np.round(x * 2**16).astype(np.int64)
    sig = fixed.sigmoid_fx(xf) / 2**16
    assert np.abs(sig - 1 / (1 + np.exp(-xf / 2**16))).max() < 3e-5
    g = rng.integers(-(8 << 16), 8 << 16, 1000)
    u = rng.integers(-(4 << 16), 4 << 16, 1000)
    gf, uf = g / 2**16, u / 2**16
    silu = fixed.gated_act(g, u, "silu") / 2**16
    np.testing.assert_allclose(silu, gf / (1 + np.exp(-gf)) * uf, atol=5e-4)
    relu2 = fixed.gated_act(g, u, "relu2") / 2**16
    np.testing.assert_allclose(relu2, np.maximum(gf, 0) ** 2 * uf, atol=5e-3)
    big = fixed.gated_act(np.array([2**31 - 1]), np.array([2**31 - 1]), "relu2")
    assert big[0] == 2**31 - 1  # saturates, never wraps


def test_rope_matches_float():
    from ternfpga.sim.numerics.tables import rope_tables
    cos, sin = rope_tables(1e4, 32, 64)
    x = rng.integers(-(2**20), 2**20, (64, 3, 32))
    y = fixed.rope(x, cos[np.arange(64)], sin[np.arange(64)]) / 2**16
    xf = x / 2**16
    inv = 1e4 ** (-np.arange(16) * 2 / 32)
    ang = np.arange(64)[:, None, None] * inv
    c, s = np.cos(ang), np.sin(ang)
    want = np.concatenate([xf[..., :16] * c - xf[..., 16:] * s, xf[..., 16:] * c + xf[..., :16] * s], -1)
    np.testing.assert_allclose(y, want, atol=np.abs(xf).max() * 2**-12)


def test_attention_matches_float_softmax():
    T, N, H, KVH, d = 3, 20, 4, 2, 16
    q8 = rng.integers(-127, 128, (T, H, d)).astype(np.int8)
    k8 = rng.integers(-127, 128, (N, KVH, d)).astype(np.int8)
    v8 = rng.integers(-127, 128, (N, KVH, d)).astype(np.int8)
    qs = pf.from_float(rng.uniform(0.001, 0.01, (T, H)))
    ks = pf.from_float(rng.uniform(0.001, 0.01, (N, KVH)))
    vs = pf.from_float(rng.uniform(0.001, 0.05, (N, KVH)))
    vs.m[7, 1], vs.e[7, 1] = 0, 0  # an all-zero V row
    pos = np.array([5, 12, 19])
    out = attend(q8, qs, k8, ks, v8, vs, pos) / 2**16
    qf = q8 * qs.to_float()[..., None]
    kf = k8 * ks.to_float()[..., None]
    vf = v8 * vs.to_float()[..., None]
    for t in range(T):
        for h in range(H):
            kv = h // (H // KVH)
            sc = kf[: pos[t] + 1, kv] @ qf[t, h] / math.sqrt(d)
            p = np.exp(sc - sc.max())
            p /= p.sum()
            want = p @ vf[: pos[t] + 1, kv]
            np.testing.assert_allclose(out[t, h], want, atol=2e-3 * np.abs(vf).max())


def test_top_k_orders_by_score_then_index():
    s = np.array([5, 9, 9, 1, 9, 3, 5])
    assert list(top_k_indices(s, 4)) == [1, 2, 4, 0]
    assert list(top_k_indices(s, 2)) == [1, 2]
    assert list(top_k_indices(s, 10)) == [1, 2, 4, 0, 6, 5, 3]
    big = rng.integers(-50, 50, 5000)
    want = sorted(range(5000), key=lambda i: (-big[i], i))[:77]
    assert list(top_k_indices(big, 77)) == want
    assert LOG2E == pytest.approx(1 / math.log(2))


def test_apply_saturates_like_infinite_precision():
    x = np.array([-726269, 726269, 1, -1, 0, 2**20 - 1, -(2**20)])
    for m, e in ((38147, 18), (40000, -40), (65535, -17), (32768, 40)):
        y = fixed.requant(x, pf.PF(np.int64(m), np.int64(e)))
        for xi, yi in zip(x, y):
            exact = int(xi) * m * 2 ** (e + 16) if e + 16 >= 0 else math.floor(int(xi) * m / 2 ** -(e + 16) + 0.5)
            assert yi == max(min(exact, 2**31 - 1), -(2**31)), (xi, m, e)
