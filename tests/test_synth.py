"""Synthetic checkpoint writer: determinism, sharding, dtypes, tokenizer, config normalization."""
from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer

from ternfpga.quant.checkpoint import Checkpoint
from ternfpga.quant.synth import (SynthSpec, outlier_channels, qwen25_05b_dims, random_ids, tiny_bitnet, tiny_llama,
                                  tiny_qwen2, write_checkpoint)


def _tensors(ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    return {n: ckpt.tensor(n) for n in ckpt.names()}


def test_deterministic_bytes(tmp_path):
    a = write_checkpoint(tmp_path / "a", tiny_qwen2(outlier_channels=2))
    b = write_checkpoint(tmp_path / "b", tiny_qwen2(outlier_channels=2))
    for f in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    c = write_checkpoint(tmp_path / "c", tiny_qwen2(seed=1))
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_sharded_equals_unsharded(tmp_path):
    one = Checkpoint.open(write_checkpoint(tmp_path / "one", tiny_llama()))
    d = write_checkpoint(tmp_path / "three", tiny_llama(shards=3))
    assert not (d / "model.safetensors").exists()
    index = json.loads((d / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 3
    assert (d / "model-00002-of-00003.safetensors").exists()
    three = Checkpoint.open(d)
    ta, tb = _tensors(one), _tensors(three)
    assert ta.keys() == tb.keys()
    for n in ta:
        assert torch.equal(ta[n], tb[n]), n


@pytest.mark.parametrize("dtype,st", [("bf16", "BF16"), ("fp16", "F16"), ("fp32", "F32")])
def test_dtypes_open(tmp_path, dtype, st):
    ckpt = Checkpoint.open(write_checkpoint(tmp_path / dtype, tiny_bitnet(dtype=dtype)))
    assert ckpt.dtype("model.embed_tokens.weight") == st
    assert ckpt.tensor("model.layers.0.mlp.up_proj.weight").dtype == torch.float32
    assert json.loads((ckpt.path / "config.json").read_text())["torch_dtype"] in ("bfloat16", "float16", "float32")


def test_tokenizer_round_trip(tmp_path):
    ckpt = Checkpoint.open(write_checkpoint(tmp_path / "t", tiny_qwen2()))
    tok = Tokenizer.from_str(ckpt.tokenizer_json)
    enc = tok.encode("hello world")
    assert 1 <= len(enc.ids) < len("hello world")  # merges were learned
    assert tok.decode(enc.ids) == "hello world"
    assert max(tok.get_vocab().values()) < ckpt.config.vocab
    eot = tok.token_to_id("<|endoftext|>")
    assert ckpt.config.bos_id == eot and ckpt.config.eos_id == eot


@pytest.mark.parametrize("make,family,sub_norms,tied,act,bias", [
    (tiny_qwen2, "qwen2", False, True, "silu", True),
    (tiny_llama, "llama", False, False, "silu", False),
    (tiny_bitnet, "bitnet", True, False, "relu2", False),
])
def test_config(tmp_path, make, family, sub_norms, tied, act, bias):
    ckpt = Checkpoint.open(write_checkpoint(tmp_path / family, make()))
    cfg = ckpt.config
    assert (cfg.family, cfg.sub_norms, cfg.tied, cfg.act, cfg.qkv_bias) == (family, sub_norms, tied, act, bias)
    assert ckpt.has("lm_head.weight") == (not tied)
    assert cfg.rope_theta == make().rope_theta


def test_outliers(tmp_path):
    spec = tiny_qwen2(outlier_channels=2, outlier_scale=50.0)
    chans = outlier_channels(spec)
    assert len(chans) == 2 and chans == outlier_channels(spec)
    ckpt = Checkpoint.open(write_checkpoint(tmp_path / "o", spec))
    emb = ckpt.tensor("model.embed_tokens.weight").abs().mean(0)
    others = [c for c in range(spec.hidden) if c not in chans]
    assert emb[chans].min() > 20 * emb[others].max()
    norm = ckpt.tensor("model.layers.0.input_layernorm.weight")
    assert norm[chans].max() < 0.1 and norm[others].min() > 0.3


def test_replace_and_refuse(tmp_path):
    d = write_checkpoint(tmp_path / "x", tiny_qwen2())
    write_checkpoint(d, tiny_qwen2(seed=3))  # an existing checkpoint is replaced
    assert json.loads((d / "config.json").read_text())["hidden_size"] == 64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    with pytest.raises(Exception):
        write_checkpoint(junk, tiny_qwen2())
    assert (junk / "notes.txt").read_text() == "mine"


def test_specs_and_ids():
    q = qwen25_05b_dims()
    assert (q.hidden, q.ffn, q.layers, q.heads, q.kv_heads, q.head_dim, q.vocab) == (896, 4864, 24, 14, 2, 64, 151936)
    assert q.tied and q.dtype == "bf16" and q.max_position == 32768 and q.rope_theta == 1e6
    assert isinstance(tiny_qwen2(), SynthSpec)
    ids = random_ids(24, 512, 5)
    assert ids == random_ids(24, 512, 5) and len(ids) == 24 and all(0 <= i < 512 for i in ids)
