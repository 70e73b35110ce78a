"""Student architectures: the dims a run starts from (``--arch`` + dims, or a ``--preset``) and the
config.json they become. Every config goes through ``ModelConfig.from_hf`` on the exported dict, so a
model trained here always reads back as the same :class:`ModelConfig` from its checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..config import ModelConfig
from ..errors import TernError
from ..synth import SynthSpec, _hf_config

FAMILIES = ("qwen2", "llama", "bitnet")


@dataclass(frozen=True)
class ArchSpec:
    """A decoder's shape. ``vocab`` 0: from the tokenizer; ``max_position`` 0: the training context."""

    family: str = "qwen2"
    hidden: int = 256
    ffn: int = 768
    layers: int = 6
    heads: int = 8
    kv_heads: int = 2
    head_dim: int = 32
    vocab: int = 0
    max_position: int = 0
    rope_theta: float = 10000.0
    eps: float = 1e-6
    tied: bool | None = None  # None: the family's default (qwen2 tied; llama, bitnet untied)
    act: str | None = None  # None: the family's default (bitnet relu2, else silu)

    def to_dict(self) -> dict:
        return asdict(self)


# ctx is a training default that comes with the preset
PRESETS: dict[str, tuple[ArchSpec, dict]] = {
    # ~5M parameters with a 3K vocabulary: a character-level-sized Shakespeare model with a BPE vocabulary
    "shakespeare-tern": (ArchSpec(family="qwen2", hidden=256, ffn=768, layers=6, heads=8, kv_heads=2,
                                  head_dim=32), {"ctx": 256}),
}


def preset(name: str) -> tuple[ArchSpec, dict]:
    if name not in PRESETS:
        raise TernError(f"unknown preset {name!r}", f"choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def check_arch(a: ArchSpec) -> None:
    fix = "fix the model dims"
    if a.family not in FAMILIES:
        raise TernError(f"unknown architecture {a.family!r}", f"use one of {', '.join(FAMILIES)}")
    for name in ("hidden", "ffn", "layers", "heads", "kv_heads", "head_dim", "vocab", "max_position"):
        v = getattr(a, name)
        if not isinstance(v, int) or v < 1:
            raise TernError(f"--{name.replace('_', '-')} {v} is not a positive integer", fix)
    if a.heads % a.kv_heads:
        raise TernError(f"--heads {a.heads} is not a multiple of --kv-heads {a.kv_heads}", fix)
    if a.head_dim % 2:
        raise TernError(f"--head-dim {a.head_dim} is odd", "RoPE needs an even head_dim")
    if a.family == "bitnet" and a.heads * a.head_dim != a.hidden:
        raise TernError(f"bitnet needs heads x head_dim ({a.heads * a.head_dim}) == hidden ({a.hidden})",
                        "Hugging Face sizes the attention sub-norm by hidden; choose matching dims")
    if not (a.rope_theta > 0 and a.eps > 0):
        raise TernError("rope_theta and eps must be positive", fix)


def hf_config(cfg: ModelConfig) -> dict:
    """config.json for ``cfg`` in the format quant/synth.py writes (fp32 weights)."""
    spec = SynthSpec(family=cfg.family, hidden=cfg.hidden, ffn=cfg.ffn, layers=cfg.layers, heads=cfg.heads,
                     kv_heads=cfg.kv_heads, head_dim=cfg.head_dim, vocab=cfg.vocab, tied=cfg.tied, act=cfg.act,
                     rope_theta=cfg.rope_theta, eps=cfg.eps, max_position=cfg.max_position, dtype="fp32")
    d = _hf_config(spec, 0)
    for key, ids, one in (("bos_token_id", (), cfg.bos_id), ("eos_token_id", cfg.eos_ids, cfg.eos_id)):
        if len(ids) > 1:
            d[key] = list(ids)
        elif one is not None:
            d[key] = one
        else:
            del d[key]
    return d


def model_config(a: ArchSpec, eot_id: int | None = None) -> ModelConfig:
    """The normalized config of a student with shape ``a`` (vocab and max_position already resolved)."""
    check_arch(a)
    tied = a.family == "qwen2" if a.tied is None else a.tied
    act = ("relu2" if a.family == "bitnet" else "silu") if a.act is None else a.act
    cfg = ModelConfig(architecture="", family=a.family, hidden=a.hidden, ffn=a.ffn, layers=a.layers,
                      heads=a.heads, kv_heads=a.kv_heads, head_dim=a.head_dim, vocab=a.vocab,
                      rope_theta=float(a.rope_theta), eps=float(a.eps), tied=tied, act=act,
                      qkv_bias=a.family == "qwen2", sub_norms=a.family == "bitnet", max_position=a.max_position,
                      bos_id=eot_id, eos_id=eot_id, eos_ids=() if eot_id is None else (eot_id,))
    return ModelConfig.from_hf(hf_config(cfg), sub_norms=cfg.sub_norms)


def resolve(a: ArchSpec, vocab: int, ctx: int) -> ArchSpec:
    """Fill in the vocabulary size (from the tokenizer) and max_position (the training context)."""
    return replace(a, vocab=a.vocab or vocab, max_position=a.max_position or ctx)
