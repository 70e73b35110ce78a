"""Model configuration, normalized from a Hugging Face ``config.json``.

One dataclass covers every supported decoder: Qwen2 (GQA, q/k/v bias, tied head), Llama, and the
BitNet b1.58 variants of Llama (sub-norms before o_proj and down_proj, SiLU or ReLU² gate).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .errors import TernError

SUPPORTED_ARCHITECTURES = {
    "Qwen2ForCausalLM": "qwen2",
    "LlamaForCausalLM": "llama",
    "BitNetForCausalLM": "bitnet",
    "BitnetForCausalLM": "bitnet",
}
SUPPORTED_ACTIVATIONS = {"silu": "silu", "swish": "silu", "relu2": "relu2"}


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    family: str  # "qwen2" | "llama" | "bitnet"
    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    rope_theta: float
    eps: float
    tied: bool
    act: str  # "silu" | "relu2"
    qkv_bias: bool
    sub_norms: bool
    max_position: int
    bos_id: int | None = None
    eos_id: int | None = None
    eos_ids: tuple[int, ...] = ()  # every end-of-sequence id (Llama 3 lists several)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def group(self) -> int:
        """Query heads per KV head (GQA)."""
        return self.heads // self.kv_heads

    def linears(self) -> list[tuple[str, int, int]]:
        """(short name, out features, in features) of every decoder-layer linear, in execution order."""
        return [
            ("q", self.q_dim, self.hidden),
            ("k", self.kv_dim, self.hidden),
            ("v", self.kv_dim, self.hidden),
            ("o", self.hidden, self.q_dim),
            ("gate", self.ffn, self.hidden),
            ("up", self.ffn, self.hidden),
            ("down", self.hidden, self.ffn),
        ]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        missing = names - set(d) - {"bos_id", "eos_id", "eos_ids"}
        if missing:
            raise TernError(f"model config lacks {sorted(missing)}", "re-create the image with `ternfpga quantize`")
        kw = {k: v for k, v in d.items() if k in names}
        if "eos_ids" in kw:
            kw["eos_ids"] = tuple(kw["eos_ids"])  # JSON has lists
        return cls(**kw)

    @classmethod
    def from_hf(cls, cfg: dict, sub_norms: bool = False, has_lm_head: bool | None = None) -> "ModelConfig":
        """Normalize a HF config.json dict.

        ``sub_norms`` says whether the checkpoint has BitNet sub-norms; ``has_lm_head`` whether it stores
        ``lm_head.weight`` (decides tying when config.json does not say).
        """
        fix = "use the config.json that came with the checkpoint"
        archs = cfg.get("architectures") or []
        if isinstance(archs, str):  # a bare class name instead of a one-element list
            archs = [archs]
        if not isinstance(archs, list):
            raise TernError(f"config.json 'architectures' is {archs!r}, not a list of class names", fix)
        arch = archs[0] if archs else None
        if not isinstance(arch, str) or arch not in SUPPORTED_ARCHITECTURES:
            raise TernError(
                f"unsupported architecture {arch!r}",
                f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}",
            )
        family = SUPPORTED_ARCHITECTURES[arch]

        def need(key: str):
            if key not in cfg or cfg[key] is None:
                raise TernError(f"config.json lacks {key!r}", fix)
            return cfg[key]

        def whole(key: str, v, minimum: int = 1) -> int:
            """A config integer (JSON ints, or floats with an integral value), at least ``minimum``."""
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()) \
                    or v < minimum:
                raise TernError(f"config.json {key!r} is {v!r}, not an integer >= {minimum}", fix)
            return int(v)

        def positive(key: str, default: int | None = None) -> int:
            v = cfg.get(key) if default is not None else need(key)
            return whole(key, default if v is None else v)

        def real(key: str, v) -> float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise TernError(f"config.json {key!r} is {v!r}, not a positive number", fix)
            return float(v)

        hidden = positive("hidden_size")
        heads = positive("num_attention_heads")
        kv_heads = whole("num_key_value_heads", cfg.get("num_key_value_heads") or heads)  # null/0 = no GQA
        head_dim = cfg.get("head_dim")
        head_dim = hidden // heads if not head_dim else whole("head_dim", head_dim)  # HF: null/0 = derive
        if head_dim < 1:
            raise TernError(f"config.json 'hidden_size' {hidden} is smaller than 'num_attention_heads' {heads}", fix)
        act_name = cfg.get("hidden_act", "silu")
        if not isinstance(act_name, str) or act_name not in SUPPORTED_ACTIVATIONS:
            raise TernError(f"unsupported activation {act_name!r}", "supported: silu, relu2")
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        if not isinstance(rope, dict):
            raise TernError(f"config.json RoPE parameters are {rope!r}, not an object", fix)
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in (None, "default"):
            raise TernError(f"unsupported RoPE scaling {rope_type!r}", "only plain RoPE (rope_type 'default') is supported")
        theta = cfg.get("rope_theta")
        theta = real("rope_theta", rope.get("rope_theta", 10000.0) if theta is None else theta)
        eps = cfg.get("rms_norm_eps")
        # > 0: the fixed-point RMSNorm of an all-zero vector relies on it (docs/numerics.md)
        eps = real("rms_norm_eps", 1e-6 if eps is None else eps)
        if family != "qwen2" and (cfg.get("attention_bias") or cfg.get("mlp_bias")):
            raise TernError("attention_bias/mlp_bias on a Llama-family model is not supported",
                            "use a checkpoint without linear biases")
        if heads % kv_heads:
            raise TernError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}",
                            "fix config.json")
        if head_dim % 2:
            raise TernError(f"head_dim {head_dim} is odd", "RoPE needs an even head_dim")

        def token_ids(key: str) -> tuple[int, ...]:
            v = cfg.get(key)
            vs = v if isinstance(v, list) else [] if v is None else [v]
            return tuple(whole(key, x, minimum=0) for x in vs)

        tied = cfg.get("tie_word_embeddings")
        if tied is None:
            tied = not has_lm_head if has_lm_head is not None else False
        ffn = positive("intermediate_size")
        layers = positive("num_hidden_layers")
        vocab = positive("vocab_size")
        max_position = positive("max_position_embeddings", default=2048)
        bos_ids, eos_ids = token_ids("bos_token_id"), token_ids("eos_token_id")
        return cls(
            architecture=arch,
            family=family,
            hidden=hidden,
            ffn=ffn,
            layers=layers,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            vocab=vocab,
            rope_theta=theta,
            eps=eps,
            tied=bool(tied),
            act=SUPPORTED_ACTIVATIONS[act_name],
            qkv_bias=family == "qwen2",
            sub_norms=bool(sub_norms),
            max_position=max_position,
            bos_id=bos_ids[0] if bos_ids else None,
            eos_id=eos_ids[0] if eos_ids else None,
            eos_ids=eos_ids,
        )
