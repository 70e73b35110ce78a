"""Small deterministic Hugging Face-format checkpoints for the demo, the tests and the benchmarks.

:func:`write_checkpoint` writes ``config.json``, ``model.safetensors`` (or shards plus an index) and a
real byte-level BPE ``tokenizer.json``, all a pure function of the :class:`SynthSpec`. It never imports
transformers (a test-only dependency), yet the result loads with ``AutoModelForCausalLM`` as well as with
:meth:`ternfpga.quant.checkpoint.Checkpoint.open`.

Weights are random, but with realistic magnitudes: linears ~ N(0, init_std), norm gains ~ 1 + N(0, 0.1),
Qwen-style q/k biases that are sizable (N(0, 0.1)). ``outlier_channels`` reproduces the few huge
residual channels real models (Qwen in particular) carry: those embedding *columns* are multiplied by
``outlier_scale`` so the residual stream holds values ~outlier_scale times larger there, while the same
channels of every RMSNorm gain (input_layernorm, post_attention_layernorm, model.norm) are divided by
``outlier_scale`` so normed activations stay sane. This stresses the per-token absmax quantizers and the
fixed-point residual exactly the way a real checkpoint does.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from .errors import TernError
from .folders import new_folder

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_HF_DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
_ARCH = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM", "bitnet": "BitNetForCausalLM"}
EOT = "<|endoftext|>"
_TOKENIZER_VOCAB_MAX = 512

# Our own prose; the tokenizer only needs varied English so merges look like a real BPE's.
_CORPUS = """\
The field programmable gate array waits on the desk, its tiny lights blinking in the dark.
A ternary weight is minus one, zero, or plus one, so a multiply becomes an add, a subtract, or nothing.
Language models predict the next token from every token that came before it.
On Monday the weather turned cold, and the rain kept falling until the streets shone like glass.
Hello world is the first program most people write, and it still feels like a small miracle.
The accelerator streams weights from memory while the host feeds it one token at a time.
We measured the latency twice, once with the cache warm and once after a cold start.
Quantization trades a little accuracy for a lot of speed, and the trick is to lose as little as possible.
Her grandmother baked bread every Sunday; the kitchen smelled of yeast, butter and warm flour.
The residual stream carries a few enormous channels, and the norm layers keep them in check.
Attention lets each position look back over the sequence and decide what matters now.
A clock running at two hundred megahertz ticks five nanoseconds apart.
The mountain trail was steep, but the view of the valley below was worth every step.
Engineers argue about tabs and spaces, yet everyone agrees the tests should pass.
Rotary position embeddings rotate pairs of features by angles that grow with the position.
The board boots Linux, loads the bitstream, and then the model answers questions in plain English.
When the wind picks up in the afternoon, the sailboats lean over and race toward the harbor.
Integer arithmetic is exact, which makes the golden model and the hardware agree bit for bit.
Small models are useful for tests because they run in a fraction of a second.
The library closes at nine, so we packed our notes and walked home under the street lamps.
Every layer has seven linear projections: query, key, value, output, gate, up and down.
Fog rolled in from the sea and hid the bridge until almost noon.
A tokenizer splits text into pieces, and byte level pieces never fail on unusual characters.
The compiler placed the design, routed the wires, and reported that timing was met.
Numbers like 3.14159, 2048 and 151936 appear in configuration files all the time.
She wrote the report quickly, then read it again slowly to catch every mistake.
Softmax turns scores into probabilities that are positive and sum to one.
The coffee was too hot to drink, so he watched the steam curl above the cup.
Memory bandwidth, not arithmetic, usually limits how fast a small device can generate text.
Tomorrow will be sunny with a light breeze, perfect weather for a long walk by the river.
"""


@dataclass(frozen=True)
class SynthSpec:
    """What :func:`write_checkpoint` writes. Every field shows up in config.json or the weights."""

    family: str = "qwen2"  # "qwen2" | "llama" | "bitnet"
    hidden: int = 64
    ffn: int = 160
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    vocab: int = 512
    tied: bool = True
    act: str = "silu"  # "silu" | "relu2"
    rope_theta: float = 1e6
    eps: float = 1e-6
    max_position: int = 2048
    dtype: str = "fp32"  # "bf16" | "fp16" | "fp32": what the safetensors file stores
    seed: int = 0
    init_std: float = 0.02  # linear weights ~ N(0, init_std): realistic HF magnitudes
    outlier_channels: int = 0  # residual channels made into large outliers (see module docstring)
    outlier_scale: float = 50.0
    shards: int = 1  # >1 writes model-0000i-of-0000n.safetensors + model.safetensors.index.json

    def check(self) -> None:
        if self.family not in _ARCH:
            raise TernError(f"unknown family {self.family!r}", f"use one of {', '.join(_ARCH)}")
        if self.act not in ("silu", "relu2"):
            raise TernError(f"unknown activation {self.act!r}", "use silu or relu2")
        if self.dtype not in _DTYPES:
            raise TernError(f"unknown dtype {self.dtype!r}", "use bf16, fp16 or fp32")
        if self.heads % self.kv_heads or self.head_dim % 2:
            raise TernError("heads must be a multiple of kv_heads and head_dim even", "fix the SynthSpec")
        if self.family == "bitnet" and self.heads * self.head_dim != self.hidden:
            # HF's BitNet sizes attn_sub_norm by hidden_size, ours by heads*head_dim: keep them equal.
            raise TernError("bitnet needs heads*head_dim == hidden", "fix the SynthSpec")
        if self.vocab < 260:
            raise TernError(f"vocab {self.vocab} is too small", "the byte-level tokenizer needs at least 260 ids")
        if not 0 <= self.outlier_channels <= self.hidden:
            raise TernError("outlier_channels must be in [0, hidden]", "fix the SynthSpec")
        if self.shards < 1:
            raise TernError("shards must be >= 1", "fix the SynthSpec")


def tiny_qwen2(**overrides) -> SynthSpec:
    """A small Qwen2: GQA (4 query / 2 KV heads), q/k/v biases, tied head."""
    return replace(SynthSpec(family="qwen2", tied=True, act="silu"), **overrides)


def tiny_llama(**overrides) -> SynthSpec:
    """A small Llama: no biases, untied head, SiLU."""
    return replace(SynthSpec(family="llama", tied=False, act="silu", rope_theta=5e5, eps=1e-5), **overrides)


def tiny_bitnet(**overrides) -> SynthSpec:
    """A small BitNet b1.58: sub-norms before o_proj and down_proj, ReLU², untied head."""
    return replace(SynthSpec(family="bitnet", tied=False, act="relu2", rope_theta=5e5, eps=1e-5), **overrides)


def qwen25_05b_dims(**overrides) -> SynthSpec:
    """Exactly Qwen2.5-0.5B's shapes (random weights, bf16): ~494M parameters, ~1 GB on disk."""
    base = SynthSpec(family="qwen2", hidden=896, ffn=4864, layers=24, heads=14, kv_heads=2, head_dim=64,
                     vocab=151936, tied=True, act="silu", rope_theta=1e6, eps=1e-6, max_position=32768,
                     dtype="bf16")
    return replace(base, **overrides)


def bitnet_073b_dims(**overrides) -> SynthSpec:
    """BitNet b1.58 large's shapes (TeLLMe's model; random weights, bf16): 24 layers, hidden 1536, ffn
    4096, 16 heads of 96, vocab 32,002, sub-norms, SiLU gate, untied head."""
    base = SynthSpec(family="bitnet", hidden=1536, ffn=4096, layers=24, heads=16, kv_heads=16, head_dim=96,
                     vocab=32002, tied=False, act="silu", rope_theta=1e4, eps=1e-5, max_position=2048,
                     dtype="bf16")
    return replace(base, **overrides)


def bitnet_2b_dims(**overrides) -> SynthSpec:
    """BitNet b1.58 2B-4T's shapes (random weights, bf16): 30 layers, hidden 2560, ffn 6912, 20/5 heads of
    128, vocab 128,256, ReLU² gate, untied head."""
    base = SynthSpec(family="bitnet", hidden=2560, ffn=6912, layers=30, heads=20, kv_heads=5, head_dim=128,
                     vocab=128256, tied=False, act="relu2", rope_theta=5e5, eps=1e-5, max_position=4096,
                     dtype="bf16")
    return replace(base, **overrides)


def random_ids(n: int, vocab: int, seed: int) -> list[int]:
    """``n`` deterministic token ids in ``[0, vocab)``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=g).tolist()


# -- weights --------------------------------------------------------------------------------------
def _plan(spec: SynthSpec) -> list[tuple[str, tuple[int, ...], str]]:
    """(HF name, shape, kind) of every tensor, in a fixed order. kind picks the init distribution."""
    q_dim, kv_dim = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    plan: list[tuple[str, tuple[int, ...], str]] = [("model.embed_tokens.weight", (spec.vocab, spec.hidden), "embed")]
    for i in range(spec.layers):
        p = f"model.layers.{i}."
        plan.append((p + "input_layernorm.weight", (spec.hidden,), "resnorm"))
        for n, rows in (("q", q_dim), ("k", kv_dim), ("v", kv_dim)):
            plan.append((p + f"self_attn.{n}_proj.weight", (rows, spec.hidden), "linear"))
            if spec.family == "qwen2":
                plan.append((p + f"self_attn.{n}_proj.bias", (rows,), "bias_v" if n == "v" else "bias_qk"))
        if spec.family == "bitnet":
            plan.append((p + "self_attn.attn_sub_norm.weight", (q_dim,), "norm"))
        plan.append((p + "self_attn.o_proj.weight", (spec.hidden, q_dim), "linear"))
        plan.append((p + "post_attention_layernorm.weight", (spec.hidden,), "resnorm"))
        plan.append((p + "mlp.gate_proj.weight", (spec.ffn, spec.hidden), "linear"))
        plan.append((p + "mlp.up_proj.weight", (spec.ffn, spec.hidden), "linear"))
        if spec.family == "bitnet":
            plan.append((p + "mlp.ffn_sub_norm.weight", (spec.ffn,), "norm"))
        plan.append((p + "mlp.down_proj.weight", (spec.hidden, spec.ffn), "linear"))
    plan.append(("model.norm.weight", (spec.hidden,), "resnorm"))
    if not spec.tied:
        plan.append(("lm_head.weight", (spec.vocab, spec.hidden), "linear"))
    return plan


def outlier_channels(spec: SynthSpec) -> list[int]:
    """The residual channels made into outliers (sorted; empty when ``spec.outlier_channels`` is 0)."""
    if spec.outlier_channels == 0:
        return []
    g = torch.Generator().manual_seed(spec.seed * 7919 + 17)
    return sorted(torch.randperm(spec.hidden, generator=g)[: spec.outlier_channels].tolist())


def _make(spec: SynthSpec, name: str, shape: tuple[int, ...], kind: str, outliers: list[int]) -> torch.Tensor:
    # One generator per tensor, seeded from (seed, name): a tensor's values do not depend on which
    # other tensors exist or in which order they are written (sharded == unsharded, bit for bit).
    g = torch.Generator().manual_seed((spec.seed * 1_000_003 + zlib.crc32(name.encode())) % (1 << 62))
    t = torch.randn(shape, generator=g, dtype=torch.float32)
    if kind in ("embed", "linear"):
        t.mul_(spec.init_std)
    elif kind == "bias_qk":
        t.mul_(0.1)
    elif kind == "bias_v":
        t.mul_(0.02)
    else:  # norm gains: around 1, kept positive like trained gains
        t = (1.0 + 0.1 * t).clamp_(min=0.05)
    if outliers:
        idx = torch.tensor(outliers)
        if kind == "embed":
            t[:, idx] *= spec.outlier_scale
        elif kind == "resnorm":
            t[idx] /= spec.outlier_scale
    return t.to(_DTYPES[spec.dtype])


def _hf_config(spec: SynthSpec, eot_id: int) -> dict:
    cfg = {
        "architectures": [_ARCH[spec.family]],
        "model_type": spec.family,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.ffn,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "head_dim": spec.head_dim,
        "vocab_size": spec.vocab,
        "hidden_act": spec.act,
        "max_position_embeddings": spec.max_position,
        "rms_norm_eps": spec.eps,
        # transformers 5 reads rope_parameters; older readers (and ours) accept the top-level rope_theta.
        "rope_theta": spec.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": spec.rope_theta},
        "tie_word_embeddings": spec.tied,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "torch_dtype": _HF_DTYPE_NAMES[spec.dtype],
        "initializer_range": spec.init_std,
        "attention_dropout": 0.0,
        "use_cache": True,
    }
    if spec.family == "qwen2":
        cfg.update(use_sliding_window=False, sliding_window=None, max_window_layers=spec.layers)
    elif spec.family == "llama":
        cfg.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    else:
        cfg.update(attention_bias=False)
    return cfg


# -- tokenizer ------------------------------------------------------------------------------------
def build_tokenizer(vocab: int) -> str:
    """Train a byte-level BPE on the embedded corpus; returns tokenizer.json text (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab, _TOKENIZER_VOCAB_MAX),
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    return tok.to_str(pretty=True)


# -- writing --------------------------------------------------------------------------------------
def _split(sizes: list[int], n: int) -> list[list[int]]:
    """Cut indices 0..len-1 into <= n contiguous groups of roughly equal byte size (none empty)."""
    n = min(n, len(sizes))
    total, groups, cur, acc = sum(sizes), [], [], 0
    for i, s in enumerate(sizes):
        cur.append(i)
        acc += s
        left_items, left_groups = len(sizes) - i - 1, n - len(groups) - 1
        if left_groups > 0 and (acc >= total * (len(groups) + 1) / n or left_items == left_groups):
            groups.append(cur)
            cur = []
    if cur:
        groups.append(cur)
    return groups


MARKER = ".ternfpga-synth"  # only folders carrying it are ever replaced


def _prepare_target(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise TernError(f"'{out_dir}' exists and is not a directory", "pick another output path")
        if any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
            raise TernError(f"'{out_dir}' is a non-empty directory that this tool did not write",
                            "pick an empty or new output path (a real checkpoint is never overwritten)")


def write_checkpoint(out_dir: str | Path, spec: SynthSpec, progress: bool = False) -> Path:
    """Write the checkpoint described by ``spec`` to ``out_dir``; returns ``out_dir``.

    Everything goes to a temporary folder beside ``out_dir`` that is renamed at the end, so a crash never
    leaves a half-written checkpoint. An existing folder at ``out_dir`` is replaced only if this function
    wrote it (it carries a marker file); anything else that is not empty is refused. Tensors are
    generated one at a time and only one shard's worth is held (in the stored dtype) before it is saved.
    """
    spec.check()
    out_dir = Path(out_dir)
    _prepare_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with new_folder(out_dir) as tmp:
        tok_json = build_tokenizer(spec.vocab)
        eot_id = json.loads(tok_json)["added_tokens"][0]["id"]
        (tmp / "tokenizer.json").write_text(tok_json)
        (tmp / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT, "eos_token": EOT,
             "model_max_length": spec.max_position}, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(_hf_config(spec, eot_id), indent=2) + "\n")
        _write_weights(tmp, spec, progress)
        (tmp / MARKER).write_text("written by ternfpga synth; random weights\n")
    return out_dir


def _write_weights(tmp: Path, spec: SynthSpec, progress: bool) -> None:
    plan = _plan(spec)
    outliers = outlier_channels(spec)
    elem = torch.empty((), dtype=_DTYPES[spec.dtype]).element_size()
    sizes = [elem * _numel(shape) for _, shape, _ in plan]
    groups = _split(sizes, spec.shards)
    n = len(groups)
    meta = {"format": "pt"}  # transformers refuses safetensors files without it
    weight_map: dict[str, str] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), unit="tensor", desc="synth")
    for gi, group in enumerate(groups):
        fname = "model.safetensors" if n == 1 else f"model-{gi + 1:05d}-of-{n:05d}.safetensors"
        tensors: dict[str, torch.Tensor] = {}
        for i in group:
            name, shape, kind = plan[i]
            tensors[name] = _make(spec, name, shape, kind, outliers)
            weight_map[name] = fname
            if bar is not None:
                bar.update(1)
        save_file(tensors, str(tmp / fname), metadata=meta)
        del tensors
    if bar is not None:
        bar.close()
    if n > 1:
        index = {"metadata": {"total_size": sum(sizes)}, "weight_map": dict(sorted(weight_map.items()))}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
