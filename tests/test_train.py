"""``ternfpga train``: fake quantization = the quantizer's rules, the trained model = FloatModel fakequant =
the golden model, reproducibility, resume, CLI errors, and distillation beating post-training ternarization.

Tiny models (hidden 64, 2 layers, ctx 32) on a small synthetic English corpus; every run is bounded by steps.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ternfpga.host import cli
from ternfpga.quant.checkpoint import Checkpoint
from ternfpga.quant.errors import TernError
from ternfpga.quant.float_ref import FloatModel, fake_int8_rows, fake_ternary
from ternfpga.quant.synth import build_tokenizer
from ternfpga.quant.train import loop
from ternfpga.quant.train.arch import ArchSpec, model_config, preset, resolve
from ternfpga.quant.train.data import encode_files, load_tokenizer_json, val_windows
from ternfpga.quant.train.export import export_checkpoint
from ternfpga.quant.train.fakequant import fq_act, fq_int8_rows, fq_ternary, int8_rows_weight, pf_round, ternary_weight
from ternfpga.quant.train.model import Decoder, count_parameters
from ternfpga.quant.train.options import TrainOptions
from ternfpga.quant.train.schedule import Schedule
from ternfpga.sim.numerics import pf

DIMS = dict(hidden=64, ffn=128, layers=2, heads=4, kv_heads=2, head_dim=16)
CTX = 32


# -- a small learnable corpus: sentences from a tiny grammar ----------------------------------------
def _sentences(n: int, seed: int) -> str:
    r = random.Random(seed)
    subj = ["the cat", "a dog", "the old man", "my sister", "the engineer", "a small bird", "the teacher"]
    verb = ["sees", "likes", "follows", "finds", "helps", "watches"]
    obj = ["the river", "a red ball", "the garden", "an apple", "the board", "a long road", "the moon"]
    tail = ["in the morning", "at night", "every day", "after lunch", "with care"]
    out = []
    for _ in range(n):
        s = f"{r.choice(subj)} {r.choice(verb)} {r.choice(obj)}"
        if r.random() < 0.5:
            s += " " + r.choice(tail)
        out.append(s[0].upper() + s[1:] + ".")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("corpus")
    (d / "train.txt").write_text(_sentences(600, 0))
    (d / "val.txt").write_text(_sentences(100, 1))
    (d / "tokenizer.json").write_text(build_tokenizer(300))
    return {"train": d / "train.txt", "val": d / "val.txt", "tok": d / "tokenizer.json", "root": d}


def opts(corpus, out, **kw) -> TrainOptions:
    base = dict(data=[str(corpus["train"])], out=str(out), tokenizer=str(corpus["tok"]), val=str(corpus["val"]),
                arch=ArchSpec(family="qwen2", **DIMS), steps=6, batch=8, ctx=CTX, threads=1, progress=False,
                eval_every=3, save_every=100)
    base.update(kw)
    return TrainOptions(**base)


def tiny_model(family: str, scale: str = "tensor", quant: bool = True, seed: int = 0) -> Decoder:
    cfg = model_config(ArchSpec(family=family, vocab=300, max_position=64, **DIMS), eot_id=0)
    m = Decoder(cfg, quant=quant, scale=scale)
    m.reset_parameters(seed)
    return m


def val_ce(ckpt_dir, val: Path, mode: str) -> float:
    """Held-out CE of a checkpoint through FloatModel (independent of the training code's forward)."""
    ck = Checkpoint.open(ckpt_dir)
    tok = load_tokenizer_json(ck.tokenizer_json, "tokenizer.json")
    fm = FloatModel(ck, mode=mode)
    total = count = 0
    for w in val_windows(encode_files(tok, [str(val)]), CTX, 64):
        total += F.cross_entropy(fm(w[:-1].tolist()).logits, w[1:], reduction="sum").item()
        count += w.numel() - 1
    return total / count


# -- fake quantization = the quantizer's rules ---------------------------------------------------------
def test_pf_round_equals_pf():
    g = np.random.default_rng(0)
    rand = np.concatenate([np.exp(g.uniform(-80, 80, 20000)), g.uniform(0, 1, 5000), g.uniform(0, 1e-3, 5000)])
    k = np.arange(-1074, 1024, 7, dtype=np.float64)
    ties = (np.arange(32768, 65536, 97) + 0.5) / 65536  # fr * 2**16 ends in exactly .5: half up
    edges = np.concatenate([[0.0, 5e-324, 2.2250738585072014e-308, 1.0, 0.5, 1.7976931348623157e308,
                             1 - 2**-17, 1 - 2**-18, (65535.5) / 65536, 3.0, 1 / 3],
                            np.ldexp(1.0, k.astype(int)), np.ldexp(1 - 2**-20, k.astype(int)), ties,
                            np.ldexp(ties, 40), np.ldexp(ties, -40)])
    x = np.concatenate([rand, edges])
    got = pf_round(torch.from_numpy(x)).numpy()
    with np.errstate(over="ignore"):  # a carry at the very top of the float64 range is inf in both
        want = pf.from_float(x).to_float()
    assert np.array_equal(got, want)  # bit for bit, subnormals included


@pytest.mark.parametrize("scale", ["tensor", "channel"])
def test_weight_rules_equal_quantizer(scale):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(24, 40, generator=g) * 0.03
    w[3] = 0.0  # a zero row: per channel its scale is 0 and its trits 0
    w[5, :4] = torch.tensor([1.0, -1.0, 0.5, -0.5]) * float(w.abs().mean())  # near the rounding points
    assert torch.equal(ternary_weight(w, scale), fake_ternary(w, scale))
    assert torch.equal(int8_rows_weight(w), fake_int8_rows(w))
    assert torch.equal(ternary_weight(torch.zeros(4, 8), scale), torch.zeros(4, 8))


def test_ste_forward_exact_and_gradient_identity():
    g = torch.Generator().manual_seed(2)
    w = (torch.randn(16, 32, generator=g) * 0.05).requires_grad_()
    up = torch.randn(16, 32, generator=g)
    for fq, ref in ((lambda t: fq_ternary(t, "tensor"), lambda t: ternary_weight(t, "tensor")),
                    (fq_int8_rows, int8_rows_weight), (fq_act, None)):
        w.grad = None
        y = fq(w)
        if ref is not None:
            assert torch.equal(y, ref(w))
        (y * up).sum().backward()
        assert torch.equal(w.grad, up)


@pytest.mark.parametrize("family", ["qwen2", "llama", "bitnet"])
def test_ste_gradients_reach_every_latent_weight(family):
    m = tiny_model(family)
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(3))
    F.cross_entropy(m(ids).reshape(-1, 300), ids.roll(-1, 1).reshape(-1)).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert set(m.state_dict()) == _hf_names(m.cfg)  # the module tree names the HF tensors


@pytest.mark.parametrize("family", ["qwen2", "bitnet"])
def test_fused_training_attention_is_the_same_function(family):
    """Training steps run torch's fused causal attention (GQA included); eval mode runs float_ref's order."""
    m = tiny_model(family, quant=False, seed=7)
    ids = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        fused = m.train()(ids)
        exact = m.eval()(ids)
    torch.testing.assert_close(fused, exact, rtol=1e-5, atol=1e-5)


def _hf_names(cfg) -> set[str]:
    from ternfpga.quant.checkpoint import expected_shapes

    return set(expected_shapes(cfg))


# -- the trained model is the function the image computes -------------------------------------------
@pytest.mark.parametrize("family,scale", [("qwen2", "tensor"), ("llama", "channel"), ("bitnet", "tensor")])
def test_eval_forward_equals_floatmodel_fakequant(corpus, tmp_path, family, scale):
    """The most important property: train, export, and FloatModel(fakequant) computes the same logits."""
    r = loop.train(opts(corpus, tmp_path / "run", arch=ArchSpec(family=family, **DIMS), scale=scale, steps=4,
                        lr=5e-3))
    ckpt = Checkpoint.open(r["model_dir"])
    m = Decoder(ckpt.config, quant=True, scale=scale)
    m.load_state_dict(load_file(str(Path(r["model_dir"]) / "model.safetensors")))
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=False)["model"]
    assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())  # latent weights, exported as is
    m.eval()
    ids = torch.randint(0, ckpt.config.vocab, (3, CTX), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = m(ids)
    fq = FloatModel(ckpt, mode="fakequant", scale=scale)
    for b in range(ids.shape[0]):
        ref = fq(ids[b].tolist()).logits
        torch.testing.assert_close(ours[b], ref, rtol=1e-5, atol=1e-5)
    # and the float switch is FloatModel's float mode
    m.quant = False
    with torch.no_grad():
        torch.testing.assert_close(m(ids[:1])[0], FloatModel(ckpt, mode="float")(ids[0].tolist()).logits,
                                   rtol=1e-5, atol=1e-5)


def test_export_quantize_golden_and_hf(corpus, tmp_path):
    r = loop.train(opts(corpus, tmp_path / "run", steps=30, lr=3e-3, eval_every=100))
    d = r["model_dir"]
    img = tmp_path / "m.tern"
    assert cli.main(["quantize", d, "-o", str(img), "--no-progress"]) == 0
    from ternfpga.host.evaluate import fidelity
    from ternfpga.quant.image import ModelImage

    ckpt = Checkpoint.open(d)
    tok = load_tokenizer_json(ckpt.tokenizer_json, "t")
    ids = encode_files(tok, [str(corpus["val"])])[:CTX].tolist()
    rep = fidelity(ModelImage.open(img), ckpt, ids=ids)
    print(f"\ngolden vs fake-quant top-1 agreement {rep['golden_vs_fakequant']['top1_agree']:.3f} "
          f"over {len(ids)} positions")
    assert rep["golden_vs_fakequant"]["top1_agree"] >= 0.8, rep["golden_vs_fakequant"]
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        hf_logits = hf(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(hf_logits, FloatModel(ckpt, mode="float")(ids).logits, rtol=1e-4, atol=1e-4)


# -- reproducibility and resume ------------------------------------------------------------------------
def _losses(run: Path) -> list[tuple]:
    return [(r["step"], r["loss"], r["val_loss"], r["lr"]) for r in map(json.loads, (run / "log.jsonl").open())]


def test_same_seed_same_run(corpus, tmp_path):
    a = loop.train(opts(corpus, tmp_path / "a", seed=5))
    b = loop.train(opts(corpus, tmp_path / "b", seed=5))
    loop.train(opts(corpus, tmp_path / "c", seed=6))
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert a["val_loss"] == b["val_loss"]
    assert _losses(tmp_path / "a") != _losses(tmp_path / "c")
    wa, wb = (load_file(str(tmp_path / x / "model" / "model.safetensors")) for x in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_equals_straight(corpus, tmp_path):
    straight = loop.train(opts(corpus, tmp_path / "s", steps=8, save_every=3))
    first = loop.train(opts(corpus, tmp_path / "r", steps=8, save_every=3, stop_after=4))
    assert first["steps"] == 4 and not first["complete"]
    with pytest.raises(TernError, match="--resume"):
        loop.train(opts(corpus, tmp_path / "r", steps=8, save_every=3))
    second = loop.train(opts(corpus, tmp_path / "r", steps=8, save_every=3, resume=True))
    assert second["complete"] and second["steps"] == 8
    ws, wr = (load_file(str(tmp_path / x / "model" / "model.safetensors")) for x in "sr")
    assert all(torch.equal(ws[k], wr[k]) for k in ws)
    assert _losses(tmp_path / "s") == _losses(tmp_path / "r")
    assert straight["val_loss"] == second["val_loss"]


def test_minutes_budget_is_planned(corpus, tmp_path, monkeypatch):
    """--minutes plans the schedule from the measured speed; a fake clock (0.25 s a reading) makes it exact."""
    t = iter(range(10**9))
    monkeypatch.setattr(loop, "_clock", lambda: next(t) * 0.25)
    r = loop.train(opts(corpus, tmp_path / "m", steps=None, minutes=0.2, eval_every=50))
    assert r["complete"] and r["steps"] == r["total_steps"] > loop.PLAN_STEPS
    assert r["seconds"] <= 0.2 * 60
    assert r["val_loss"] is not None


def test_schedule_two_stages():
    s = Schedule(peak=1e-3, warmup=10, total=110)
    assert s.lr(0) == pytest.approx(1e-4) and s.lr(9) == pytest.approx(1e-3)
    assert s.stage2_start == 60
    assert s.lr(59) == pytest.approx(1e-3 * (1 - 1 / 3 * 49 / 50))
    assert s.lr(60) == pytest.approx(2e-3 / 3)
    assert 0 < s.lr(109) < 2e-5
    assert s.wd(59) == 0.1 and s.wd(60) == 0.0


def test_preset_shakespeare_tern_fits_the_accelerator():
    from ternfpga.rtl.accel_params import AccelParams

    arch, defaults = preset("shakespeare-tern")
    cfg = model_config(resolve(arch, vocab=3072, ctx=defaults["ctx"]), eot_id=0)
    n = count_parameters(cfg)
    assert 4_000_000 < n < 6_000_000, n
    assert cfg.tied and cfg.qkv_bias and (cfg.heads, cfg.kv_heads, cfg.head_dim) == (8, 2, 32)
    AccelParams().check_model(cfg, head_k=256)
    assert sum(p.numel() for p in Decoder(cfg).parameters()) == n


# -- the command line ----------------------------------------------------------------------------------
def _cli_error(capsys, argv: list[str]) -> str:
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error:") and "\n" not in err, err
    return err


def test_cli_trains_and_errors(corpus, tmp_path, capsys):
    base = ["train", "--data", str(corpus["train"]), "--tokenizer", str(corpus["tok"]), "--ctx", str(CTX),
            "--batch", "4", "--threads", "1", "--no-progress", "--arch", "qwen2", "--hidden", "64", "--ffn", "128",
            "--layers", "1", "--heads", "4", "--kv-heads", "2", "--head-dim", "16"]
    out = tmp_path / "run"
    assert cli.main(base + ["-o", str(out), "--steps", "2", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["steps"] == 2 and rep["complete"] and (out / "model" / "config.json").exists()

    assert "already holds this run" in _cli_error(capsys, base + ["-o", str(out), "--steps", "2"])
    assert "different run" in _cli_error(capsys, base + ["-o", str(out), "--steps", "3"])
    assert "does not exist" in _cli_error(capsys, base + ["-o", str(tmp_path / "x"), "--steps", "2",
                                                         "--data", str(tmp_path / "missing.txt")])
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02text")
    assert "binary" in _cli_error(capsys, base + ["-o", str(tmp_path / "x"), "--steps", "2",
                                                 "--data", str(tmp_path / "bin.dat")])
    (tmp_path / "bad.json").write_text("{not json")
    assert "tokenizer" in _cli_error(capsys, base + ["-o", str(tmp_path / "x"), "--steps", "2",
                                                    "--tokenizer", str(tmp_path / "bad.json")])
    for extra, word in ((["--steps", "0"], "--steps"), (["--steps", "2", "--lr", "-1"], "--lr"),
                        (["--steps", "2", "--batch", "0"], "--batch"), ([], "budget"),
                        (["--steps", "2", "--ctx", "1"], "--ctx"), (["--steps", "2", "--kv-heads", "3"], "kv-heads"),
                        (["--steps", "2", "--ctx", "100000"], "tokens")):
        assert word in _cli_error(capsys, base + ["-o", str(tmp_path / "x")] + extra)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert "not empty" in _cli_error(capsys, base + ["-o", str(tmp_path / "full"), "--steps", "2"])
    with pytest.raises(SystemExit) as e:  # two budgets: argparse's one line
        cli.main(base + ["-o", str(tmp_path / "x"), "--steps", "2", "--minutes", "1"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # no refused run left anything behind


def test_teacher_tokenizer_must_match(corpus, tmp_path, capsys):
    t = export_checkpoint(tiny_model("llama", quant=False), tmp_path / "teacher",
                          corpus["tok"].read_text())
    other = tmp_path / "other.json"
    other.write_text(build_tokenizer(280))
    err = _cli_error(capsys, ["train", "--data", str(corpus["train"]), "--teacher", str(t), "--tokenizer",
                              str(other), "-o", str(tmp_path / "s"), "--steps", "2", "--no-progress"])
    assert "teacher" in err and "tokenizer" in err


# -- distillation beats post-training ternarization ----------------------------------------------------
def test_distillation_beats_ptq(corpus, tmp_path):
    teacher = loop.train(opts(corpus, tmp_path / "teacher", quant=False, steps=150, batch=16, lr=3e-3,
                              eval_every=1000))
    ptq = val_ce(teacher["model_dir"], corpus["val"], "fakequant")  # the teacher ternarized after training
    float_ce = val_ce(teacher["model_dir"], corpus["val"], "float")
    student = loop.train(opts(corpus, tmp_path / "student", arch=None, teacher=teacher["model_dir"],
                              from_teacher=True, tokenizer=None, steps=60, batch=16, lr=2e-3, eval_every=1000))
    distilled = val_ce(student["model_dir"], corpus["val"], "fakequant")
    print(f"\nheld-out CE (nats/token): float teacher {float_ce:.4f}, teacher ternarized after training "
          f"{ptq:.4f}, distilled ternary student {distilled:.4f}")
    assert distilled == pytest.approx(student["val_loss"], rel=1e-5)  # the trainer's val = FloatModel's
    assert distilled < ptq
