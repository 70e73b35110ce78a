"""The float reference forward against HF transformers, and fake-quant sanity."""
from __future__ import annotations

import pytest
import torch

from ternfpga.quant.checkpoint import Checkpoint
from ternfpga.quant.float_ref import FloatModel, fake_int8, fake_int8_rows, fake_ternary, ternarize
from ternfpga.quant.synth import random_ids, tiny_bitnet, tiny_llama, tiny_qwen2, write_checkpoint

transformers = pytest.importorskip("transformers")

CASES = {
    "qwen2": tiny_qwen2(),
    "llama": tiny_llama(),
    "bitnet": tiny_bitnet(),
    "qwen2_outliers": tiny_qwen2(outlier_channels=2, seed=1),
    "llama_mqa": tiny_llama(heads=4, kv_heads=1, seed=2),
}


@pytest.fixture(scope="module")
def ckpt_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("float_ref")
    return {name: write_checkpoint(root / name, spec) for name, spec in CASES.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_float_matches_hf(ckpt_dirs, name):
    d = ckpt_dirs[name]
    ids = random_ids(24, CASES[name].vocab, seed=11)
    hf = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    hf.eval()
    with torch.no_grad():
        out_hf = hf(torch.tensor([ids]), output_hidden_states=True)
    ours = FloatModel(Checkpoint.open(d), mode="float")(ids)
    assert ours.logits.shape == (24, CASES[name].vocab)
    err = (ours.logits - out_hf.logits[0]).abs().max().item()
    assert err < 1e-4, err
    # HF's hidden_states[i] is the residual entering layer i (the last one is after the final norm).
    assert len(ours.residuals) == CASES[name].layers + 1
    for i in range(CASES[name].layers):
        torch.testing.assert_close(ours.residuals[i], out_hf.hidden_states[i][0], atol=1e-4, rtol=1e-4)


def test_outliers_reach_residual(ckpt_dirs):
    spec = CASES["qwen2_outliers"]
    res = FloatModel(Checkpoint.open(ckpt_dirs["qwen2_outliers"]))(random_ids(8, spec.vocab, 0)).residuals
    per_chan = res[-1].abs().mean(0)
    assert per_chan.max() > 10 * per_chan.median()


# Random weights are far from ternary, so fake-quant perturbs them a lot (~0.87 correlation per matrix);
# BitNet's sub-norms then blow the perturbed layer outputs up to unit RMS, which lowers its floor.
@pytest.mark.parametrize("name,floor", [("qwen2", 0.5), ("llama", 0.5), ("bitnet", 0.3)])
@pytest.mark.parametrize("scale", ["tensor", "channel"])
def test_fakequant_sane(ckpt_dirs, name, floor, scale):
    ckpt = Checkpoint.open(ckpt_dirs[name])
    ids = random_ids(16, CASES[name].vocab, seed=3)
    f = FloatModel(ckpt, mode="float")(ids).logits
    q = FloatModel(ckpt, mode="fakequant", scale=scale)(ids).logits
    assert not torch.allclose(f, q)
    cos = torch.nn.functional.cosine_similarity(f.flatten(), q.flatten(), dim=0).item()
    assert cos > floor, cos


def test_fakequant_embedding_and_head(ckpt_dirs):
    ckpt = Checkpoint.open(ckpt_dirs["llama"])
    ids = random_ids(5, CASES["llama"].vocab, seed=4)
    m = FloatModel(ckpt, mode="fakequant")
    out = m(ids)
    emb = ckpt.tensor("model.embed_tokens.weight")
    assert torch.equal(out.residuals[0], fake_int8_rows(emb)[ids])
    assert torch.equal(m.head, fake_int8_rows(ckpt.tensor("lm_head.weight")))
    assert torch.equal(m.layers[1]["down"], fake_ternary(ckpt.tensor("model.layers.1.mlp.down_proj.weight")))


def test_ternarize():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 32, generator=g) * 0.02
    w[3] = 0.0
    for scale in ("tensor", "channel"):
        trits, s = ternarize(w, scale)
        assert trits.dtype == torch.int8 and set(trits.unique().tolist()) <= {-1, 0, 1}
        assert set(trits.unique().tolist()) == {-1, 0, 1}
        assert torch.equal(fake_ternary(w, scale), trits.float() * s)
    _, s = ternarize(w, "tensor")
    # s is the stored pf value of the absmean (16-bit mantissa)
    assert torch.isclose(s.flatten()[0], w.abs().mean(), rtol=2**-15)
    trits, s = ternarize(w, "channel")
    assert s.shape == (8, 1) and s[3].item() == 0 and not trits[3].any()
    assert torch.allclose(s[:, 0], w.abs().mean(1), rtol=2**-15)
    zero_t, _ = ternarize(torch.zeros(4, 4))
    assert not zero_t.any()


def test_fake_int8():
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, -0.5, 0.003], [-2.0, 1.0, 0.3]])
    q = fake_int8(x)
    assert torch.equal(q[0], torch.zeros(3))
    assert q[1, 0] == 1.0 and q[2, 0] == -2.0  # the absmax element is exact
    assert q[1, 2] == 0.0  # below half a step
    steps = q[2] * 127 / 2.0
    assert torch.allclose(steps, steps.round(), atol=1e-4)
    assert (q - x).abs().max() <= 2.0 / 127 / 2 + 1e-6
