"""Checkpoint -> image, end to end on tiny synthetic checkpoints, and the quantize/inspect commands."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from ternfpga.host import cli
from ternfpga.quant import quantize as qz
from ternfpga.quant.errors import TernError
from ternfpga.quant.image import ModelImage
from ternfpga.quant.quantize import QuantizeOptions, quantize_checkpoint
from ternfpga.quant.synth import tiny_bitnet, tiny_llama, tiny_qwen2, write_checkpoint
from ternfpga.sim.numerics import pf
from ternfpga.sim.numerics.tables import rope_tables

LINEARS = ("q", "k", "v", "o", "gate", "up", "down")
HF = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
      "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
QUIET = dict(progress=False)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "qwen2": write_checkpoint(root / "qwen2", tiny_qwen2()),
        "llama": write_checkpoint(root / "llama", tiny_llama(dtype="bf16")),
        "bitnet": write_checkpoint(root / "bitnet", tiny_bitnet()),
    }


def weights(ckpt) -> dict[str, np.ndarray]:
    return {k: v.float().numpy() for k, v in load_file(str(ckpt / "model.safetensors")).items()}


def ref_trits(w: np.ndarray, per_row: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Independent absmean ternarization: float64 mean|W|, float32 division, round half even."""
    s = np.abs(w.astype(np.float64)).mean(axis=1) if per_row else np.array([np.abs(w.astype(np.float64)).mean()])
    s32 = s.astype(np.float32)[:, None] if per_row else np.float32(s[0])
    return np.clip(np.round(w / s32), -1, 1).astype(np.int8), s


def expected_names(cfg, max_ctx: int, per_row: bool) -> dict[str, tuple[str, list[int]]]:
    names = {"tokenizer": ("bytes", None), "embed.int8": ("int8", [cfg.vocab, cfg.hidden]),
             "embed.scale": ("pf", [cfg.vocab]), "final_norm.weight": ("int16", [cfg.hidden]),
             "final_norm.scale": ("pf", [1]), "head.trits": ("trits", [cfg.vocab, cfg.hidden]),
             "head.scale": ("pf", [1]), "head.int8": ("int8", [cfg.vocab, cfg.hidden]),
             "head.int8_scale": ("pf", [cfg.vocab]), "rope.cos": ("int16", [max_ctx, cfg.head_dim // 2]),
             "rope.sin": ("int16", [max_ctx, cfg.head_dim // 2])}
    for i in range(cfg.layers):
        p = f"layers.{i}."
        for short, out, inp in cfg.linears():
            names[p + short + ".trits"] = ("trits", [out, inp])
            names[p + short + ".scale"] = ("pf", [out] if per_row else [1])
            if cfg.qkv_bias and short in "qkv":
                names[p + short + ".bias"] = ("int32", [out])
        norms = {"attn_norm": cfg.hidden, "mlp_norm": cfg.hidden}
        if cfg.sub_norms:
            norms.update(attn_sub_norm=cfg.q_dim, mlp_sub_norm=cfg.ffn)
        for n, d in norms.items():
            names[p + n + ".weight"] = ("int16", [d])
            names[p + n + ".scale"] = ("pf", [1])
    return names


def check_image(img: ModelImage, w: dict[str, np.ndarray], per_row: bool = False) -> None:
    cfg = img.config
    want = expected_names(cfg, img.header["quant"]["max_ctx"], per_row)
    got = {n: (img.info(n)["dtype"], img.info(n)["shape"]) for n in img.names()}
    for n, (dt, shape) in want.items():
        assert got[n][0] == dt, n
        if shape is not None:
            assert got[n][1] == shape, n
    assert set(got) == set(want)
    for i in range(cfg.layers):
        for short in LINEARS:
            W = w[f"model.layers.{i}.{HF[short]}.weight"]
            t, s = ref_trits(W, per_row)
            np.testing.assert_array_equal(img.trits(f"layers.{i}.{short}.trits"), t)
            S = img.pf(f"layers.{i}.{short}.scale")
            np.testing.assert_array_equal(S.m, pf.from_float(s).m)
            if cfg.qkv_bias and short in "qkv":
                b = w[f"model.layers.{i}.{HF[short]}.bias"]
                np.testing.assert_array_equal(img.array(f"layers.{i}.{short}.bias"), np.round(b.astype(np.float64) * 65536))
        g = w[f"model.layers.{i}.input_layernorm.weight"]
        S = img.pf(f"layers.{i}.attn_norm.scale").to_float()[0]
        np.testing.assert_allclose(img.array(f"layers.{i}.attn_norm.weight") * S, g, atol=S / 2 + 1e-12)
        assert np.abs(img.array(f"layers.{i}.attn_norm.weight")).max() >= 32766
    emb = w["model.embed_tokens.weight"]
    q, S = img.array("embed.int8"), img.pf("embed.scale").to_float()
    np.testing.assert_array_equal(q, np.clip(np.round(emb / S[:, None]), -127, 127))
    assert np.abs(q).max(axis=1).min() >= 126
    head = emb if cfg.tied else w["lm_head.weight"]
    t, s = ref_trits(head)
    np.testing.assert_array_equal(img.trits("head.trits"), t)
    np.testing.assert_array_equal(img.pf("head.scale").m, pf.from_float(s).m)
    hq, hS = img.array("head.int8"), img.pf("head.int8_scale").to_float()
    np.testing.assert_array_equal(hq, np.clip(np.round(head / hS[:, None]), -127, 127))
    cos, sin = rope_tables(cfg.rope_theta, cfg.head_dim, img.header["quant"]["max_ctx"])
    np.testing.assert_array_equal(img.array("rope.cos"), cos)
    np.testing.assert_array_equal(img.array("rope.sin"), sin)


@pytest.mark.parametrize("family", ["qwen2", "llama", "bitnet"])
def test_end_to_end(ckpts, tmp_path, family):
    out = tmp_path / "m.tern"
    rep = quantize_checkpoint(ckpts[family], out, QuantizeOptions(**QUIET))
    img = ModelImage.open(out)
    check_image(img, weights(ckpts[family]))
    cfg = img.config
    assert cfg.family == family and cfg.sub_norms == (family == "bitnet") and cfg.tied == (family == "qwen2")
    assert ("alias_of" in img.info("head.int8")) == cfg.tied
    ref_tok = Tokenizer.from_file(str(ckpts[family] / "tokenizer.json"))
    assert img.tokenizer().encode("Hello ternary world").ids == ref_tok.encode("Hello ternary world").ids
    assert img.raw("tokenizer").tobytes().decode() == (ckpts[family] / "tokenizer.json").read_text()
    q = img.header["quant"]
    assert q["scale"] == "tensor" and q["head_k"] == 256 and q["max_ctx"] == 2048 and q["source"] == family
    assert img.header["numerics"] == {"version": 1, "fx_frac": 16}
    # report
    assert len(rep["layers"]) == cfg.layers and set(rep["layers"][0]["linears"]) == set(LINEARS)
    for layer in rep["layers"]:
        for st in layer["linears"].values():
            assert 0.3 < st["rel_err"] < 0.7 and 0.2 < st["zero_frac"] < 0.45  # Gaussian weights: ~0.51 / ~0.31
    t = rep["totals"]
    n = cfg.layers * sum(o * i for _, o, i in cfg.linears()) + cfg.vocab * cfg.hidden
    assert t["ternary_weights"] == n
    trit_bytes = sum(img.info(x)["nbytes"] for x in img.names() if img.info(x)["dtype"] == "trits")
    assert t["packed_trit_bytes"] == trit_bytes
    assert t["bits_per_weight"] == pytest.approx(8 * trit_bytes / n)
    assert 1.6 <= t["payload_bits_per_weight"] < 2.0  # tiny shapes pad rows to 64; 0.5B dims give ~1.61
    assert t["image_bytes"] == out.stat().st_size
    assert q["stats"]["ternary_weights"] == n and q["stats"]["head"]["rel_err"] == rep["head"]["rel_err"]


def test_chunked_head_and_embedding(ckpts, tmp_path, monkeypatch):
    """Vocabulary-sized tensors go through several row chunks (the last one ragged) with identical results."""
    monkeypatch.setattr(qz, "CHUNK_ROWS", 192)  # 512 rows -> 192 + 192 + 128
    for fam in ("qwen2", "llama"):
        out = tmp_path / f"{fam}.tern"
        quantize_checkpoint(ckpts[fam], out, QuantizeOptions(**QUIET))
        check_image(ModelImage.open(out), weights(ckpts[fam]))


def test_per_channel(ckpts, tmp_path):
    out = tmp_path / "c.tern"
    rep = quantize_checkpoint(ckpts["qwen2"], out, QuantizeOptions(scale="channel", head_k=8, max_ctx=100, **QUIET))
    img = ModelImage.open(out)
    check_image(img, weights(ckpts["qwen2"]), per_row=True)
    assert img.info("layers.0.k.scale")["shape"] == [img.config.kv_dim]
    assert img.info("head.scale")["shape"] == [1]  # the ternary head is always per tensor
    assert img.info("rope.cos")["shape"] == [100, 8]
    assert img.header["quant"]["scale"] == "channel" and img.header["quant"]["head_k"] == 8
    assert rep["options"]["max_ctx"] == 100


def test_zero_rows_and_tensors(tmp_path):
    ck = write_checkpoint(tmp_path / "z", tiny_llama(layers=1))
    w = load_file(str(ck / "model.safetensors"))
    w["model.layers.0.self_attn.q_proj.weight"][3] = 0  # a zero row (per-channel s == 0)
    w["model.layers.0.self_attn.k_proj.weight"].zero_()  # a zero tensor
    w["lm_head.weight"][7] = 0  # a zero int8 row
    save_file(w, str(ck / "model.safetensors"), metadata={"format": "pt"})
    for mode in ("tensor", "channel"):
        out = tmp_path / f"{mode}.tern"
        quantize_checkpoint(ck, out, QuantizeOptions(scale=mode, **QUIET))
        img = ModelImage.open(out)
        assert not img.trits("layers.0.q.trits")[3].any() and not img.trits("layers.0.k.trits").any()
        assert not img.array("head.int8")[7].any() and img.pf("head.int8_scale").m[7] == 0


@pytest.mark.parametrize("bad", ["model.layers.1.mlp.up_proj.weight", "model.embed_tokens.weight",
                                 "model.layers.0.self_attn.q_proj.bias", "model.norm.weight"])
def test_nan_is_an_error_and_leaves_no_file(tmp_path, bad):
    ck = write_checkpoint(tmp_path / "nan", tiny_qwen2())
    w = load_file(str(ck / "model.safetensors"))
    w[bad].view(-1)[5] = float("nan") if "up" in bad or "bias" in bad else float("inf")
    save_file(w, str(ck / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "out" / "m.tern"
    out.parent.mkdir()
    with pytest.raises(TernError, match=rf"'{bad}' contains NaN or Inf"):
        quantize_checkpoint(ck, out, QuantizeOptions(**QUIET))
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("kw,msg", [(dict(scale="row"), "scale mode"), (dict(head_k=0), "head_k"),
                                    (dict(head_k=513), "head_k"), (dict(max_ctx=0), "max_ctx"),
                                    (dict(max_ctx=4096), "max_ctx")])
def test_bad_options(ckpts, tmp_path, kw, msg):
    with pytest.raises(TernError, match=msg):
        quantize_checkpoint(ckpts["qwen2"], tmp_path / "m.tern", QuantizeOptions(**kw, **QUIET))
    assert list(tmp_path.iterdir()) == []


def test_bad_output_path(ckpts, tmp_path):
    with pytest.raises(TernError, match="does not exist"):
        quantize_checkpoint(ckpts["qwen2"], tmp_path / "no" / "m.tern", QuantizeOptions(**QUIET))
    with pytest.raises(TernError, match="is a directory"):
        quantize_checkpoint(ckpts["qwen2"], tmp_path, QuantizeOptions(**QUIET))


# -- command line ---------------------------------------------------------------------------------
@pytest.fixture
def main():
    """The real console entry point (every subcommand registered)."""
    return cli.main


def test_cli_quantize_and_inspect(ckpts, tmp_path, main, capsys):
    out, rep = tmp_path / "m.tern", tmp_path / "r.json"
    assert main(["quantize", str(ckpts["bitnet"]), "-o", str(out), "--json", str(rep), "--no-progress",
                 "--head-k", "16", "--max-ctx", "512", "--scale", "channel"]) == 0
    text = capsys.readouterr().out
    assert "gate" in text and "bits/weight" in text and "head" in text
    report = json.loads(rep.read_text())
    assert report["totals"]["image_bytes"] == out.stat().st_size and report["options"]["head_k"] == 16
    assert {p.name for p in tmp_path.iterdir()} == {"m.tern", "r.json"}  # no temp files left

    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    for word in ("BitNetForCausalLM", "body trits", "head int8", "rope", "tokenizer", "bits/weight", "ok"):
        assert word in text
    assert main(["inspect", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["quant"]["head_k"] == 16 and s["crc_ok"] and s["groups"]["body trits"]["sections"] == 14
    assert 1.6 < s["bits_per_weight"] == pytest.approx(report["totals"]["bits_per_weight"])


def test_cli_inspect_tied_and_corrupt(ckpts, tmp_path, main, capsys):
    out = tmp_path / "m.tern"
    assert main(["quantize", str(ckpts["qwen2"]), "-o", str(out)]) == 0  # with the progress bar
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["groups"]["head int8"]["bytes"] == 0 and len(s["groups"]["head int8"]["shared"]) == 2
    off = ModelImage.open(out).info("layers.1.down.trits")["offset"]
    b = bytearray(out.read_bytes())
    b[off] ^= 1
    out.write_bytes(bytes(b))
    assert main(["inspect", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "layers.1.down.trits" in err and err.count("\n") == 1


def test_cli_errors_exit_2(ckpts, tmp_path, main, capsys):
    assert main(["quantize", str(tmp_path / "none"), "-o", str(tmp_path / "m.tern"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["quantize", str(ckpts["qwen2"]), "-o", str(tmp_path / "m.tern"), "--json",
                 str(tmp_path / "no" / "r.json"), "--no-progress"]) == 2
    assert "report folder" in capsys.readouterr().err and not (tmp_path / "m.tern").exists()
    assert main(["inspect", str(tmp_path / "none.tern")]) == 2
