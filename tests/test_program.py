"""The program compiler and the DDR layout, checked without RTL: the ISA-level model (sim/isa_model.py)
runs the compiled program and must reproduce the golden model bit for bit -- the shortlists of prefill
(in several blocks) and decode calls, and every traced intermediate. Flag.PRESCANNED is set exactly on
the NORM_QUANTs that read what the MATMUL before them wrote, and the model refuses it anywhere else."""
from __future__ import annotations

import numpy as np
import pytest

from ternfpga.sim.presets import PRESETS, preset_image
from ternfpga.host.ddr import ddr_image
from ternfpga.host.program import compile_program, mark_prescanned, traceable
from ternfpga.quant.errors import TernError
from ternfpga.quant.image import ModelImage
from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.control.isa import Descriptor, Epilogue, ErrorCode, Flag, NormMode, Op
from ternfpga.sim.golden import GoldenModel, Trace
from ternfpga.sim.isa_model import DeviceError, IsaModel, word_pf
from ternfpga.sim.numerics.pf import PF

# small maxima that still hold every preset (the generated default covers Qwen2.5-0.5B and BitNet 2B)
PARAMS = AccelParams(batch=4, max_hidden=128, max_ffn=352, max_heads=4, max_kv_heads=2, max_head_dim=32,
                     max_ctx=64, max_vocab=512, max_layers=4)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    return {p: preset_image(root, p) for p in PRESETS}


def read_results(ddr: bytearray, lay, k: int) -> tuple[np.ndarray, np.ndarray]:
    raw = np.frombuffer(ddr, "<u4", 2 * k, lay.results).reshape(k, 2)
    return raw[:, 0].astype(np.int64), raw[:, 1].astype(np.int32).astype(np.int64)


def read_trace(ddr: bytearray, slot, tokens: range) -> np.ndarray:
    rows = []
    for t in tokens:
        off = slot.offset + t * slot.stride
        if slot.dtype == "i8":
            rows.append(np.frombuffer(ddr, np.int8, slot.n, off).astype(np.int64))
        else:
            rows.append(np.frombuffer(ddr, "<i4", slot.n, off).astype(np.int64))
    return np.stack(rows)


def golden_value(v, dtype: str) -> np.ndarray:
    if dtype == "pf":
        from ternfpga.sim.isa_model import pf_word
        return pf_word(v)
    return np.asarray(v, np.int64)


class Device:
    """The ISA model behind the host's per-call protocol: write token ids, run, read the shortlist."""

    def __init__(self, image_path, trace=()):
        self.image = ModelImage.open(image_path)
        self.prog = compile_program(self.image, PARAMS, trace=trace)
        self.ddr = ddr_image(image_path, self.prog)
        self.model = IsaModel(PARAMS, self.ddr)
        self.pos = 0

    def call(self, ids):
        lay = self.prog.layout
        self.ddr[lay.tokens:lay.tokens + 4 * len(ids)] = np.asarray(ids, "<u4").tobytes()
        self.model.run(lay.program, self.prog.nbytes, lay.tokens, self.pos, len(ids))
        self.pos += len(ids)
        return read_results(self.ddr, lay, self.prog.layout.head_k)


@pytest.mark.parametrize("preset", PRESETS)
def test_program_reproduces_golden(images, preset):
    img = images[preset]
    names = traceable(ModelImage.open(img).config.layers)
    dev = Device(img, trace=names)
    gold = GoldenModel(dev.image)
    cache = gold.new_cache()
    rng = np.random.default_rng(7)
    vocab = dev.image.config.vocab
    calls = [rng.integers(0, vocab, 6).tolist()] + [[int(rng.integers(0, vocab))] for _ in range(3)]
    tok0 = 0
    for ids in calls:
        tr = Trace()
        want = gold.forward(ids, cache, trace=tr).candidates
        got_ids, got_logits = dev.call(ids)
        np.testing.assert_array_equal(got_ids, want.ids)
        np.testing.assert_array_equal(got_logits, want.logits_fx)
        T = len(ids)
        for name, slot in dev.prog.traces.items():
            toks = range(T - 1, T) if slot.last_token_only else range(T)
            got = read_trace(dev.ddr, slot, toks)
            g = golden_value(tr[name], slot.dtype).reshape(T if not name.startswith("final") else T, -1)
            np.testing.assert_array_equal(got, g[list(toks)], err_msg=f"{preset} {name}")
        dev.pos = tok0 = tok0 + T  # traces are written per call from row 0
        dev.pos = cache.length


def test_program_is_position_independent(images):
    """The same bytes run every call: nothing in a descriptor depends on tokens or position."""
    img = images["tiny-qwen2"]
    a = Device(img)
    before = a.prog.to_bytes()
    a.call([1, 2, 3, 4, 5])
    a.call([9])
    lay = a.prog.layout
    assert bytes(a.ddr[lay.program:lay.program + len(before)]) == before


def test_listing_and_layout(images):
    dev = Device(images["tiny-bitnet"])
    text = dev.prog.listing()
    assert "attn_sub_norm" in text and "ffn_sub_norm" in text and "head rescoring" in text
    regions = dev.prog.layout.regions()
    offs = [o for _, o, _ in regions]
    assert offs == sorted(offs) and all(o % 4096 == 0 for o in offs)
    for (_, o1, n1), (_, o2, _) in zip(regions, regions[1:]):
        assert o1 + n1 <= o2


def test_refuses_models_beyond_the_maxima(images):
    small = AccelParams(batch=1, max_hidden=64, max_ffn=160, max_heads=4, max_kv_heads=2, max_head_dim=16,
                        max_ctx=16, max_vocab=512, max_layers=4)
    with pytest.raises(TernError, match="hidden 128 exceeds the accelerator's maximum 64"):
        compile_program(ModelImage.open(images["demo"]), small)


def test_refuses_a_bad_trace_name(images):
    with pytest.raises(TernError, match="not a traceable"):
        compile_program(ModelImage.open(images["demo"]), PARAMS, trace=["layers.0.q.acc"])


def test_bad_opcode_and_program_bounds(images):
    dev = Device(images["tiny-llama"])
    lay = dev.prog.layout
    # a program without END runs off its end
    with pytest.raises(DeviceError) as e:
        dev.ddr[lay.tokens:lay.tokens + 4] = (3).to_bytes(4, "little")
        dev.model.run(lay.program, 2 * 64, lay.tokens, 0, 1)
    assert e.value.code == ErrorCode.PROGRAM_BOUNDS and e.value.addr == lay.program + 2 * 64
    dev.ddr[lay.program + 64:lay.program + 128] = Descriptor(op=77).pack()
    with pytest.raises(DeviceError) as e:
        dev.model.run(lay.program, dev.prog.nbytes, lay.tokens, 0, 1)
    assert e.value.code == ErrorCode.BAD_OPCODE and e.value.desc_index == 1


def test_bad_token(images):
    dev = Device(images["demo"])
    with pytest.raises(DeviceError) as e:
        dev.call([1, 700])
    assert e.value.code == ErrorCode.BAD_TOKEN and e.value.addr == dev.prog.layout.tokens + 4


@pytest.mark.parametrize("name,dims", [
    ("qwen2.5-0.5b", dict(hidden=896, ffn=4864, layers=24, heads=14, kv_heads=2, head_dim=64, vocab=151936)),
    ("bitnet-b1.58-large", dict(hidden=1536, ffn=4096, layers=24, heads=16, kv_heads=16, head_dim=96, vocab=32002)),
    ("bitnet-b1.58-2b-4t", dict(hidden=2560, ffn=6912, layers=30, heads=20, kv_heads=5, head_dim=128, vocab=128256)),
])
def test_default_maxima_run_the_target_models(name, dims):
    """The default accelerator takes Qwen2.5-0.5B and both BitNet b1.58 models, and its VMEM holds them."""
    from types import SimpleNamespace

    from ternfpga.rtl.vmem_plan import vmem_plan

    p = AccelParams()
    cfg = SimpleNamespace(**dims, q_dim=dims["heads"] * dims["head_dim"])
    p.check_model(cfg, head_k=256)
    assert vmem_plan(dims["hidden"], dims["ffn"], dims["heads"], dims["kv_heads"], dims["head_dim"]).total <= p.vmem_words
    assert max(dims["hidden"], dims["ffn"], cfg.q_dim) <= p.max_k


@pytest.mark.parametrize("dim,value", [("ffn", 8192), ("vocab", 200000), ("head_dim", 256), ("layers", 80)])
def test_default_maxima_refuse_bigger_models(dim, value):
    from types import SimpleNamespace

    dims = dict(hidden=896, ffn=4864, layers=24, heads=14, kv_heads=2, head_dim=64, vocab=151936)
    dims[dim] = value
    cfg = SimpleNamespace(**dims, q_dim=dims["heads"] * dims["head_dim"])
    with pytest.raises(TernError, match=f"the model's {dim} {value} exceeds the accelerator's maximum"):
        AccelParams().check_model(cfg, head_k=256)


@pytest.mark.parametrize("preset", PRESETS)
def test_prescanned_where_the_matmul_wrote_the_source(images, preset):
    """The residual stream after o / down (the next norm) and the FFN activation after up (the down
    input): nowhere else, with and without tracing (the STOREs between only read VMEM)."""
    img = ModelImage.open(images[preset])
    cfg = img.config
    ffn_in = "ffn_sub_norm" if cfg.sub_norms else "down input"
    want = {f"layers.{i} {n}" for i in range(cfg.layers) for n in ("mlp_norm", ffn_in)}
    want |= {f"layers.{i} attn_norm" for i in range(1, cfg.layers)} | {"final_norm"}
    for trace in ((), traceable(cfg.layers)):
        prog = compile_program(img, PARAMS, trace=trace)
        got = {d.note for d in prog.descs if d.flags & Flag.PRESCANNED}
        assert got == want
        assert all(d.op == Op.NORM_QUANT for d in prog.descs if d.flags & Flag.PRESCANNED)


def _mm(dst=100, n=64, flags=0, mode=Epilogue.RESIDUAL):
    return Descriptor(Op.MATMUL, mode=int(mode), flags=flags, n=n, dst=dst)


def _nq(src=100, n=64, flags=0, mode=NormMode.RMS):
    return Descriptor(Op.NORM_QUANT, mode=int(mode), flags=flags, n=n, src=src, dst=900, aux=990)


@pytest.mark.parametrize("name,descs,flagged", [
    ("direct", [_mm(), _nq()], True),
    ("absmax", [_mm(mode=Epilogue.GATE), _nq(mode=NormMode.ABSMAX)], True),
    ("reads between", [_mm(), Descriptor(Op.STORE, n=64, src=100), Descriptor(Op.KV_WRITE), _nq()], True),
    ("both last block", [_mm(flags=Flag.LAST_BLOCK), _nq(flags=Flag.LAST_BLOCK | Flag.LAST_TOKEN)], True),
    ("heads", [_mm(), _nq(mode=NormMode.HEADS)], False),
    ("other start", [_mm(), _nq(src=101, n=63)], False),
    ("part of it", [_mm(), _nq(n=32)], False),
    ("more than it", [_mm(n=32), _nq()], False),
    ("topk", [_mm(), _mm(mode=Epilogue.TOPK, dst=100), _nq()], False),
    ("a later matmul", [_mm(), _mm(dst=300), _nq()], False),
    ("bias between", [_mm(), Descriptor(Op.BIAS, n=64, src=100, dst=100), _nq()], False),
    ("a write elsewhere", [_mm(), Descriptor(Op.ROPE, heads=1, k=16, src=500, dst=500), _nq()], False),
    ("a norm between", [_mm(), _nq(src=300), _nq()], False),
    ("matmul skipped", [_mm(flags=Flag.LAST_BLOCK), _nq()], False),
    ("next block", [_mm(), Descriptor(Op.END), _nq()], False),
])
def test_mark_prescanned_is_conservative(name, descs, flagged):
    mark_prescanned(descs)
    assert bool(descs[-1].flags & Flag.PRESCANNED) == flagged
    assert not any(d.flags & Flag.PRESCANNED for d in descs[:-1] if d.op != Op.NORM_QUANT)


@pytest.mark.parametrize("note", ["layers.0 attn_norm", "layers.0 o input", "layers.0 quant q heads"])
def test_isa_model_refuses_a_wrong_prescanned_flag(images, note):
    """After EMBED or ATTN (not a MATMUL) the flag is a compiler bug the model must report (HEADS
    ignores it, as the unit does)."""
    dev = Device(images["tiny-qwen2"])
    d = next(d for d in dev.prog.descs if d.note == note)
    d.flags |= Flag.PRESCANNED
    lay = dev.prog.layout
    dev.ddr[lay.program:lay.program + dev.prog.nbytes] = dev.prog.to_bytes()
    if "heads" in note:
        dev.call([1, 2])
        return
    with pytest.raises(AssertionError, match="PRESCANNED"):
        dev.call([1, 2])


def test_isa_model_refuses_prescanned_after_a_write():
    """The model's own check: a MATMUL wrote the vector, then a BIAS rewrote it."""
    from ternfpga.sim.isa_model import Ctx

    m = IsaModel(PARAMS, bytearray(1 << 16))
    ctx = Ctx(T=2, pos0=0, tok0=0, last_block=True)
    m.op_number, m.last_matmul = 5, (5, 100, 64, 2)
    m.vmem_writer[100:164] = 5
    m.op_norm_quant(_nq(flags=Flag.PRESCANNED, mode=NormMode.ABSMAX), ctx)
    m.vmem_writer[130] = 6
    with pytest.raises(AssertionError, match="PRESCANNED"):
        m.op_norm_quant(_nq(flags=Flag.PRESCANNED, mode=NormMode.ABSMAX), ctx)
    m.vmem_writer[130] = 5
    with pytest.raises(AssertionError, match="PRESCANNED"):  # lane 2 was not written
        m.op_norm_quant(_nq(flags=Flag.PRESCANNED, mode=NormMode.ABSMAX), Ctx(T=3, pos0=0, tok0=0, last_block=True))
