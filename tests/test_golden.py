"""The golden (integer) model against the fake-quantized float model, and its own invariants."""
import re

import numpy as np
import pytest

from ternfpga.host.evaluate import fidelity
from ternfpga.quant.checkpoint import Checkpoint
from ternfpga.quant.errors import TernError
from ternfpga.quant.image import ModelImage
from ternfpga.quant.quantize import QuantizeOptions, quantize_checkpoint
from ternfpga.quant.synth import tiny_bitnet, tiny_llama, tiny_qwen2, write_checkpoint
from ternfpga.sim.golden import GoldenModel, Trace

# tiny models with realistic weight magnitudes (init std 0.02) and injected residual outlier channels
MODELS = {
    "qwen2": tiny_qwen2(outlier_channels=3, outlier_scale=60.0, layers=3, seed=11),
    "llama": tiny_llama(outlier_channels=2, outlier_scale=40.0, layers=3, seed=12),
    "bitnet": tiny_bitnet(outlier_channels=2, outlier_scale=40.0, layers=3, seed=13),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    out = {}
    for name, spec in MODELS.items():
        ckpt = write_checkpoint(root / name, spec)
        for scale in ("tensor", "channel"):
            img = root / f"{name}-{scale}.tern"
            quantize_checkpoint(ckpt, img, QuantizeOptions(scale=scale, head_k=64, max_ctx=128, progress=False))
            out[name, scale] = (ckpt, img)
    return out


@pytest.mark.parametrize("scale", ["tensor", "channel"])
@pytest.mark.parametrize("name", list(MODELS))
def test_golden_tracks_fakequant_float(built, name, scale):
    ckpt, img = built[name, scale]
    rep = fidelity(ModelImage.open(img), Checkpoint.open(ckpt), n_tokens=64)
    per_layer = [round(r["golden_vs_fakequant"], 5) for r in rep["layers"]]
    print(f"{name}/{scale}: logits cos {rep['golden_vs_fakequant']['cosine_mean']:.5f} "
          f"(min {rep['golden_vs_fakequant']['cosine_min']:.5f}), residual cos per layer {per_layer}")
    assert rep["tokens"] == 64
    assert rep["golden_vs_fakequant"]["cosine_mean"] >= 0.99
    assert rep["golden_vs_fakequant"]["cosine_min"] >= 0.95
    assert min(r["golden_vs_fakequant"] for r in rep["layers"]) >= 0.99
    # the outlier channels really are in the residual stream the golden model carried
    assert max(r["golden_max_abs"] for r in rep["layers"]) > 0.3


def test_fidelity_detects_a_wrong_weight(built, tmp_path):
    """The comparison bites: a golden model fed a corrupted scale disagrees with the float model."""
    ckpt, img = built["qwen2", "tensor"]
    image = ModelImage.open(img)
    model = GoldenModel(image)
    ids = list(range(3, 40))
    good = model.forward(ids, model.new_cache(), all_positions=True, full_logits=True).full_logits
    model.w.layers[0].lin["down"].scale.m[...] = model.w.layers[0].lin["down"].scale.m * 0 + 65535
    model.w.layers[0].lin["down"].scale.e[...] += 6
    bad = model.forward(ids, model.new_cache(), all_positions=True, full_logits=True).full_logits
    cos = (good * bad).sum(-1) / np.linalg.norm(good, axis=-1) / np.linalg.norm(bad, axis=-1)
    assert cos.mean() < 0.99


@pytest.mark.parametrize("name", list(MODELS))
def test_prefill_equals_token_by_token_decode(built, name):
    _, img = built[name, "tensor"]
    model = GoldenModel(ModelImage.open(img))
    ids = [int(x) for x in np.random.default_rng(5).integers(0, model.config.vocab, 40)]
    batch = model.forward(ids, model.new_cache(), all_positions=True)
    cache = model.new_cache()
    steps = [model.forward(ids[:7], cache).candidates] + [model.forward([t], cache).candidates for t in ids[7:]]
    for a, b in zip(batch.per_token[6:], steps):
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.logits_fx, b.logits_fx)
    assert cache.length == 40


def test_trace_exposes_every_documented_intermediate(built):
    _, img = built["bitnet", "tensor"]
    model = GoldenModel(ModelImage.open(img))
    trace = Trace()
    model.forward([5, 6, 7], model.new_cache(), trace=trace)
    doc = open("docs/numerics.md").read().split("## Trace names")[1]
    names = re.findall(r"`([a-z0-9_.{}]+)`", doc)
    per_layer = [n for n in names if "{" not in n and not n.startswith(("embed", "final", "head"))]
    for n in per_layer:
        assert f"layers.0.{n}" in trace, n
    for n in ("embed", "final.q8", "final.scale", "head.2.scores"):
        assert n in trace
    only = Trace(pattern=r"\.residual$")
    model.forward([5], model.new_cache(), trace=only)
    assert sorted(only) == [f"layers.{i}.residual" for i in range(model.config.layers)]


def test_golden_refuses_other_numerics_version(built):
    _, img = built["qwen2", "tensor"]
    image = ModelImage.open(img)
    image.header["numerics"]["version"] = 99
    with pytest.raises(TernError, match="numerics version 99"):
        GoldenModel(image)


def test_context_and_vocab_limits(built):
    _, img = built["qwen2", "tensor"]
    model = GoldenModel(ModelImage.open(img))
    with pytest.raises(TernError, match="max context 128"):
        model.forward(list(range(129)), model.new_cache())
    with pytest.raises(TernError, match="outside the vocabulary"):
        model.forward([model.config.vocab], model.new_cache())


def test_eval_command_reports_fidelity(built, capsys):
    import json

    from ternfpga.host.cli import main

    ckpt, img = built["llama", "tensor"]
    assert main(["eval", "--model", str(img), "--checkpoint", str(ckpt), "--tokens", "32", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["tokens"] == 32 and len(rep["layers"]) == MODELS["llama"].layers + 1
    assert rep["golden_vs_fakequant"]["cosine_mean"] >= 0.99
    for key in ("fakequant_vs_float", "golden_vs_float"):
        assert set(rep[key]) == {"cosine_mean", "cosine_min", "top1_agree"}
    assert 0 <= rep["float_top1_in_shortlist"] <= 1
    assert main(["eval", "--model", str(img), "--checkpoint", str(ckpt), "--tokens", "16"]) == 0
    text = capsys.readouterr().out
    assert "golden_vs_fakequant" in text and "res cos golden/fq" in text and "headroom" in text
