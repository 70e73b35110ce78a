"""Model configuration, normalized from a Hugging Face ``config.json``.

One dataclass covers every supported decoder: Qwen2 (GQA, q/k/v bias, tied head), Llama, and the
BitNet b1.58 variants of Llama (sub-norms before o_proj and down_proj, SiLU or ReLU² gate).
"""
from __future__ import annotations

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
        missing = names - set(d) - {"bos_id", "eos_id"}
        if missing:
            raise TernError(f"model config lacks {sorted(missing)}", "re-create the image with `ternfpga quantize`")
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_hf(cls, cfg: dict, sub_norms: bool = False, has_lm_head: bool | None = None) -> "ModelConfig":
        """Normalize a HF config.json dict.

        ``sub_norms`` says whether the checkpoint has BitNet sub-norms; ``has_lm_head`` whether it stores
        ``lm_head.weight`` (decides tying when config.json does not say).
        """
        archs = cfg.get("architectures") or []
        arch = archs[0] if archs else None
        if arch not in SUPPORTED_ARCHITECTURES:
            raise TernError(
                f"unsupported architecture {arch!r}",
                f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}",
            )
        family = SUPPORTED_ARCHITECTURES[arch]

        def need(key: str):
            if key not in cfg:
                raise TernError(f"config.json lacks {key!r}", "use the config.json that came with the checkpoint")
            return cfg[key]

        hidden = int(need("hidden_size"))
        heads = int(need("num_attention_heads"))
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or hidden // heads)
        act_name = str(cfg.get("hidden_act", "silu"))
        if act_name not in SUPPORTED_ACTIVATIONS:
            raise TernError(f"unsupported activation {act_name!r}", "supported: silu, relu2")
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in (None, "default"):
            raise TernError(f"unsupported RoPE scaling {rope_type!r}", "only plain RoPE (rope_type 'default') is supported")
        theta = cfg.get("rope_theta", rope.get("rope_theta", 10000.0))
        if family != "qwen2" and (cfg.get("attention_bias") or cfg.get("mlp_bias")):
            raise TernError("attention_bias/mlp_bias on a Llama-family model is not supported",
                            "use a checkpoint without linear biases")
        if heads % kv_heads:
            raise TernError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}",
                            "fix config.json")
        if head_dim % 2:
            raise TernError(f"head_dim {head_dim} is odd", "RoPE needs an even head_dim")

        def token_id(key: str) -> int | None:
            v = cfg.get(key)
            if isinstance(v, list):
                v = v[0] if v else None
            return None if v is None else int(v)

        tied = cfg.get("tie_word_embeddings")
        if tied is None:
            tied = not has_lm_head if has_lm_head is not None else False
        return cls(
            architecture=arch,
            family=family,
            hidden=hidden,
            ffn=int(need("intermediate_size")),
            layers=int(need("num_hidden_layers")),
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            vocab=int(need("vocab_size")),
            rope_theta=float(theta),
            eps=float(cfg.get("rms_norm_eps", 1e-6)),
            tied=bool(tied),
            act=SUPPORTED_ACTIVATIONS[act_name],
            qkv_bias=family == "qwen2",
            sub_norms=bool(sub_norms),
            max_position=int(cfg.get("max_position_embeddings", 2048)),
            bos_id=token_id("bos_token_id"),
            eos_id=token_id("eos_token_id"),
        )
