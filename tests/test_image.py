"""The .tern model image: round trips of every section type, aliases, and every way a file can be bad."""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from ternfpga.quant.config import ModelConfig
from ternfpga.quant.errors import TernError
from ternfpga.quant.image import ALIGN, IMAGE_VERSION, MAGIC, PREAMBLE, ImageWriter, ModelImage
from ternfpga.quant.layout import TritLayout
from ternfpga.sim.numerics import pf

CFG = ModelConfig(architecture="Qwen2ForCausalLM", family="qwen2", hidden=64, ffn=160, layers=2, heads=4, kv_heads=2,
                  head_dim=16, vocab=300, rope_theta=1e6, eps=1e-6, tied=True, act="silu", qkv_bias=True,
                  sub_norms=False, max_position=2048, bos_id=1, eos_id=2)
LAYOUT = TritLayout(beat_bytes=16, ports=2, lanes=8)


def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok.to_str()


def _contents(rng):
    return {
        "i8": rng.integers(-128, 128, size=(5, 7), dtype=np.int8),
        "u8": rng.integers(0, 256, size=(300,), dtype=np.uint8),
        "i16": rng.integers(-32768, 32768, size=(3, 4, 2), dtype=np.int16),
        "i32": rng.integers(-(2**31), 2**31, size=(11,), dtype=np.int32),
        "trits": rng.integers(-1, 2, size=(37, 53), dtype=np.int8),
        "big_trits": rng.integers(-1, 2, size=(100, 21), dtype=np.int8),
        "pf": pf.from_float(rng.random(9) * 10.0 ** rng.integers(-8, 4, size=9)),
    }


def write_image(path, rng=None, fail_after: str | None = None):
    rng = rng or np.random.default_rng(0)
    c = _contents(rng)
    with ImageWriter(path, CFG, LAYOUT, {"version": 1, "fx_frac": 16}, {"scale": "tensor"}) as w:
        w.add_bytes("tokenizer", _tokenizer_json().encode())
        w.add_array("a.int8", c["i8"])
        w.add_array("a.uint8", c["u8"])
        w.add_array("a.int16", c["i16"])
        w.add_array("a.int32", c["i32"])
        if fail_after == "arrays":
            raise RuntimeError("boom")
        w.add_trits("t.trits", c["trits"])
        t = c["big_trits"]
        w.add_trits_chunks("t.chunked", 100, 21, (t[a:a + 32] for a in range(0, 100, 32)))
        w.add_pf("s.pf", c["pf"])
        w.add_array_chunks("a.chunked", "int16", (11, 4), (np.full((k, 4), k, np.int16) for k in (5, 6)))
        w.add_alias("a.alias", "a.int8")
        w.set_quant(stats={"x": 1})
    return c


def test_round_trip_every_dtype(tmp_path):
    path = tmp_path / "m.tern"
    c = write_image(path)
    img = ModelImage.open(path)
    assert img.config == CFG and img.layout == LAYOUT
    assert img.header["quant"] == {"scale": "tensor", "stats": {"x": 1}}
    assert img.header["numerics"] == {"version": 1, "fx_frac": 16}
    for name, key in (("a.int8", "i8"), ("a.uint8", "u8"), ("a.int16", "i16"), ("a.int32", "i32")):
        a = img.array(name)
        assert a.dtype == c[key].dtype and a.shape == c[key].shape
        np.testing.assert_array_equal(a, c[key])
        assert not a.flags.writeable
    np.testing.assert_array_equal(img.trits("t.trits"), c["trits"])
    np.testing.assert_array_equal(img.trits("t.chunked"), c["big_trits"])
    np.testing.assert_array_equal(img.raw("t.trits"), LAYOUT.pack(c["trits"]))
    s = img.pf("s.pf")
    assert s.m.dtype == np.int64 and s.e.dtype == np.int64
    np.testing.assert_array_equal(s.m, c["pf"].m)
    np.testing.assert_array_equal(s.e, c["pf"].e)
    np.testing.assert_array_equal(img.array("a.chunked"), np.repeat([5, 6], [5, 6])[:, None].repeat(4, 1))
    assert img.tokenizer().encode("hello world").ids == [1, 2]
    assert img.info("t.trits")["shape"] == [37, 53] and img.info("t.trits")["dtype"] == "trits"
    for name in img.names():
        assert img.info(name)["offset"] % ALIGN == 0
    assert all(img.verify().values())
    assert img.has("a.int8") and not img.has("nope")
    with pytest.raises(TernError, match="lacks section 'nope'"):
        img.array("nope")
    with pytest.raises(TernError, match="not pf"):
        img.pf("a.int8")


def test_alias_shares_bytes(tmp_path):
    path = tmp_path / "m.tern"
    c = write_image(path)
    img = ModelImage.open(path)
    a, t = img.info("a.alias"), img.info("a.int8")
    assert a["offset"] == t["offset"] and a["nbytes"] == t["nbytes"] and a["alias_of"] == "a.int8"
    np.testing.assert_array_equal(img.array("a.alias"), c["i8"])


def test_preamble_and_header_placement(tmp_path):
    path = tmp_path / "m.tern"
    write_image(path)
    data = path.read_bytes()
    magic, version, reserved, hoff, hlen, hcrc = PREAMBLE.unpack_from(data)
    assert (magic, version, reserved) == (MAGIC, IMAGE_VERSION, 0)
    assert data[PREAMBLE.size:64] == b"\0" * (64 - PREAMBLE.size)
    assert hoff + hlen == len(data)  # the header is the last thing in the file
    header = json.loads(data[hoff:])
    assert header["format"] == "ternfpga-image" and header["version"] == 1
    assert max(t["offset"] + t["nbytes"] for t in header["tensors"].values()) <= hoff
    assert zlib.crc32(data[hoff:]) == hcrc


def _flip(path, offset):
    b = bytearray(path.read_bytes())
    b[offset] ^= 0x5A
    path.write_bytes(bytes(b))


def test_corrupt_section_names_it(tmp_path):
    path = tmp_path / "m.tern"
    write_image(path)
    img = ModelImage.open(path)
    info = img.info("t.trits")
    del img
    _flip(path, info["offset"] + 3)
    with pytest.raises(TernError, match=r"section 't\.trits'.*CRC"):
        ModelImage.open(path)
    img = ModelImage.open(path, verify=False)  # structure is fine, only the data is bad
    assert img.verify()["t.trits"] is False and img.verify()["a.int8"] is True


def test_truncated(tmp_path):
    path = tmp_path / "m.tern"
    write_image(path)
    data = path.read_bytes()
    hoff = PREAMBLE.unpack_from(data)[3]
    path.write_bytes(data[: hoff + 10])
    with pytest.raises(TernError, match="truncated"):
        ModelImage.open(path)
    path.write_bytes(data[:20])
    with pytest.raises(TernError, match="truncated"):
        ModelImage.open(path)
    path.write_bytes(b"")
    with pytest.raises(TernError, match="not a ternfpga model image"):
        ModelImage.open(path)


def test_section_past_end(tmp_path):
    """A header that points past the end of the file (e.g. sections cut out) is truncation."""
    path = tmp_path / "m.tern"
    write_image(path)
    data = path.read_bytes()
    _, _, _, hoff, hlen, _ = PREAMBLE.unpack_from(data)
    header = json.loads(data[hoff:])
    header["tensors"]["a.int8"]["offset"] = 10**9
    blob = json.dumps(header).encode()
    pre = PREAMBLE.pack(MAGIC, IMAGE_VERSION, 0, hoff, len(blob), zlib.crc32(blob)).ljust(64, b"\0")
    path.write_bytes(pre + data[64:hoff] + blob)
    with pytest.raises(TernError, match=r"truncated: section 'a\.int8'"):
        ModelImage.open(path)


def test_wrong_magic(tmp_path):
    path = tmp_path / "m.tern"
    write_image(path)
    _flip(path, 0)
    with pytest.raises(TernError, match="wrong magic"):
        ModelImage.open(path)


def test_future_version(tmp_path):
    path = tmp_path / "m.tern"
    write_image(path)
    b = bytearray(path.read_bytes())
    struct.pack_into("<I", b, 8, 2)
    path.write_bytes(bytes(b))
    with pytest.raises(TernError, match=r"version 2.*version 1.*ternfpga quantize"):
        ModelImage.open(path)


def test_header_crc_mismatch(tmp_path):
    path = tmp_path / "m.tern"
    write_image(path)
    hoff = PREAMBLE.unpack_from(path.read_bytes())[3]
    _flip(path, hoff + 5)
    with pytest.raises(TernError, match="header fails its CRC"):
        ModelImage.open(path)


def test_missing_file(tmp_path):
    with pytest.raises(TernError, match="does not exist"):
        ModelImage.open(tmp_path / "none.tern")
    with pytest.raises(TernError, match="not a file"):
        ModelImage.open(tmp_path)


def test_writer_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "m.tern"
    with pytest.raises(RuntimeError, match="boom"):
        write_image(path, fail_after="arrays")
    assert list(tmp_path.iterdir()) == []


def test_writer_keeps_old_image_on_error(tmp_path):
    path = tmp_path / "m.tern"
    write_image(path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        write_image(path, fail_after="arrays")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.tern"]


def test_writer_needs_existing_folder(tmp_path):
    with pytest.raises(TernError, match="does not exist"):
        ImageWriter(tmp_path / "nope" / "m.tern", CFG, LAYOUT, {}, {})


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        with ImageWriter(tmp_path / "m.tern", CFG, LAYOUT, {}, {}) as w:
            w.add_array("x", np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="twice"):
        with ImageWriter(tmp_path / "m.tern", CFG, LAYOUT, {}, {}) as w:
            w.add_array("x", np.zeros(3, dtype=np.int8))
            w.add_array("x", np.zeros(3, dtype=np.int8))
    with pytest.raises(ValueError, match="rows"):
        with ImageWriter(tmp_path / "m.tern", CFG, LAYOUT, {}, {}) as w:
            w.add_trits_chunks("t", 40, 5, [np.zeros((32, 5), np.int8)])
    assert list(tmp_path.iterdir()) == []
