"""The packed trit layout: round trips, the exact byte order, port regions, validation."""
from __future__ import annotations

import numpy as np
import pytest

from ternfpga.quant.errors import TernError
from ternfpga.quant.layout import REGION_ALIGN, ZERO_BYTE, TritLayout

LAYOUTS = [TritLayout(16, p, l) for p in (1, 2, 4) for l in (1, 2, 4, 8, 16)] + [TritLayout(32, 4, 8), TritLayout(32, 1, 32)]


def rand_trits(rng, rows, cols):
    return rng.integers(-1, 2, size=(rows, cols), dtype=np.int8)


def encode_row(vals) -> list[int]:
    """Reference encoder: 5 trits per byte, base 3, first trit lowest."""
    out = []
    for i in range(0, len(vals), 5):
        out.append(sum((int(t) + 1) * 3**k for k, t in enumerate(vals[i:i + 5])))
    return out


def reference_pack(lay: TritLayout, t: np.ndarray) -> np.ndarray:
    """Loop-based restatement of the documented stream order."""
    rows, cols = t.shape
    rp, cp = lay.padded(rows, cols)
    full = np.zeros((rp, cp), dtype=np.int8)
    full[:rows, :cols] = t
    region = lay.port_region_bytes(rows, cols)
    out = np.zeros(lay.packed_bytes(rows, cols), dtype=np.uint8)
    tpl = lay.trits_per_lane
    for p in range(lay.ports):
        stream = []
        for j in range(rp // (lay.lanes * lay.ports)):
            g = j * lay.ports + p
            for c in range(cp // tpl):
                for lane in range(lay.lanes):
                    stream += encode_row(full[g * lay.lanes + lane, c * tpl:(c + 1) * tpl])
        out[p * region: p * region + len(stream)] = stream
    return out


@pytest.mark.parametrize("lay", LAYOUTS, ids=lambda l: f"b{l.beat_bytes}p{l.ports}l{l.lanes}")
def test_round_trip_random_shapes(lay):
    rng = np.random.default_rng(lay.ports * 100 + lay.lanes)
    for rows, cols in [(1, 1), (7, 13), (64, 65), (130, 41), (lay.lanes * lay.ports, lay.trits_per_lane), (33, 160)]:
        t = rand_trits(rng, rows, cols)
        buf = lay.pack(t)
        assert buf.dtype == np.uint8 and buf.shape == (lay.packed_bytes(rows, cols),)
        assert buf.shape[0] % REGION_ALIGN == 0
        np.testing.assert_array_equal(lay.unpack(buf, rows, cols), t)


@pytest.mark.parametrize("lay", [TritLayout(16, 1, 1), TritLayout(16, 2, 4), TritLayout(16, 4, 16), TritLayout(32, 4, 8)],
                         ids=lambda l: f"b{l.beat_bytes}p{l.ports}l{l.lanes}")
def test_matches_reference_order(lay):
    rng = np.random.default_rng(3)
    t = rand_trits(rng, 75, 37)
    np.testing.assert_array_equal(lay.pack(t), reference_pack(lay, t))


def test_hand_checked_byte_order():
    lay = TritLayout(beat_bytes=16, ports=1, lanes=1)
    assert lay.trits_per_lane == 80
    t = np.zeros((2, 80), dtype=np.int8)
    t[0, :5] = [1, -1, 0, 0, 0]  # (2)*1 + (0)*3 + 1*9 + 1*27 + 1*81 = 119
    t[0, 5:10] = [-1, -1, -1, -1, -1]  # 0
    t[0, 10:15] = [1, 1, 1, 1, 1]  # 242
    t[1, :5] = [0, 0, 0, 0, 1]  # 1+3+9+27+2*81 = 202
    buf = lay.pack(t)
    assert list(buf[:3]) == [119, 0, 242]
    assert all(buf[3:16] == ZERO_BYTE)  # rest of row 0's beat
    assert buf[16] == 202  # row 1 starts the next beat
    assert all(buf[32:] == 0)  # region padding is zero bytes


def test_lanes_interleave_within_a_beat():
    lay = TritLayout(beat_bytes=16, ports=1, lanes=16)  # 1 byte per lane, 5 columns per beat
    t = np.zeros((16, 10), dtype=np.int8)
    t[:, 0] = 1  # every row's first trit of chunk 0 -> byte 122
    t[:, 5] = -1  # first trit of chunk 1 -> byte 120
    buf = lay.pack(t)
    assert list(buf[:16]) == [122] * 16 and list(buf[16:32]) == [120] * 16


def test_padding_bytes():
    lay = TritLayout()
    t = np.ones((3, 7), dtype=np.int8)  # cols pad to 10, rows to 64
    buf = lay.pack(t)
    # port 0, group 0, chunk 0: rows 0..2 are all ones (242), rows 3..15 are padding (121)
    assert list(buf[:3]) == [242] * 3 and all(buf[3:16] == ZERO_BYTE)
    # chunk 1: cols 5,6 are ones, 7..9 padding: (2 + 2*3) + 1*(9 + 27 + 81) = 125
    assert list(buf[16:19]) == [125] * 3
    # ports 1..3 hold only padding rows
    region = lay.port_region_bytes(3, 7)
    assert all(buf[region: region + 32] == ZERO_BYTE) and all(buf[region + 32: 2 * region] == 0)


def test_port_regions_hold_their_groups():
    lay = TritLayout(beat_bytes=16, ports=4, lanes=2)
    rows, cols = 40, 23  # 20 row groups, 5 per port
    rng = np.random.default_rng(5)
    t = rand_trits(rng, rows, cols)
    buf = lay.pack(t)
    offs = lay.port_offsets(rows, cols)
    region = lay.port_region_bytes(rows, cols)
    assert offs == [p * region for p in range(4)]
    one = TritLayout(beat_bytes=16, ports=1, lanes=2)
    for p in range(4):
        groups = [g for g in range(rows // 2) if g % 4 == p]
        sub = np.concatenate([t[g * 2:(g + 1) * 2] for g in groups])
        want = one.pack(sub)[: one.payload_bytes(len(sub), cols)]
        got = buf[offs[p]: offs[p] + len(want)]
        np.testing.assert_array_equal(got, want)
        assert all(buf[offs[p] + len(want): offs[p] + region] == 0)


def test_chunked_packing_equals_whole():
    lay = TritLayout()
    rng = np.random.default_rng(9)
    rows, cols = 64 * 5 + 17, 96
    t = rand_trits(rng, rows, cols)
    buf = lay.new_buffer(rows, cols)
    for a in range(0, rows, 128):
        lay.pack_into(buf, t[a:a + 128], a, rows, cols)
    np.testing.assert_array_equal(buf, lay.pack(t))
    with pytest.raises(ValueError):
        lay.pack_into(buf, t[:100], 0, rows, cols)  # not a 64-row multiple and not the end


def test_sizes_at_model_scale():
    lay = TritLayout()
    assert lay.trits_per_lane == 5
    assert lay.padded(151936, 896) == (151936, 900)
    assert lay.payload_bytes(151936, 896) == 151936 * 900 // 5 // 4
    assert lay.port_region_bytes(151936, 896) == 1670 * 4096
    assert lay.packed_bytes(896, 896) == 4 * 40960
    # Qwen2.5-0.5B body + head: close to 1.6 bits per weight despite padding
    dims = [(896, 896), (128, 896), (128, 896), (896, 896), (4864, 896), (4864, 896), (896, 4864)]
    w = 24 * sum(r * c for r, c in dims) + 151936 * 896
    b = 24 * sum(lay.packed_bytes(r, c) for r, c in dims) + lay.packed_bytes(151936, 896)
    assert 1.6 < 8 * b / w < 1.65


def test_invalid_values_and_buffers():
    lay = TritLayout()
    with pytest.raises(ValueError):
        lay.pack(np.full((4, 4), 2, dtype=np.int8))
    with pytest.raises(ValueError):
        lay.unpack(np.zeros(10, dtype=np.uint8), 4, 4)
    buf = lay.pack(np.zeros((4, 4), dtype=np.int8))
    buf[0] = 250
    with pytest.raises(TernError, match="above 242"):
        lay.unpack(buf, 4, 4)


@pytest.mark.parametrize("kw", [dict(beat_bytes=0), dict(ports=0), dict(lanes=-1), dict(beat_bytes=16, lanes=3),
                                dict(beat_bytes=8, lanes=16), dict(ports=2.0)])
def test_invalid_layouts(kw):
    with pytest.raises(TernError):
        TritLayout(**kw)


def test_dict_round_trip():
    lay = TritLayout(32, 2, 8)
    assert TritLayout.from_dict(lay.to_dict()) == lay
    with pytest.raises(TernError):
        TritLayout.from_dict({"ports": 4})
