"""Generation parameters of the whole accelerator: the engine's, plus the model maxima the bitstream
supports at run time and the sizes of the on-chip buffers derived from them.

One bitstream runs any model whose dims fit these maxima (DESIGN.md contract 5); the host refuses a
model beyond them at load, naming the dim, its value and the maximum (:meth:`AccelParams.check_model`).
The defaults cover Qwen2.5-0.5B, BitNet b1.58 large and 2B-4T, and every synth preset.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

from ternfpga.quant.errors import TernError
from ternfpga.sim.numerics.spec import MAX_CTX, MAX_HEAD_DIM, MAX_IN_FEATURES

from .params import EngineParams

# the accelerator's DDR word: head_dim and hidden must be whole beats (K/V rows, int8 rows)
BEAT_BYTES = 16


@dataclass(frozen=True)
class AccelParams:
    """Maxima (model dims the bitstream runs) and implementation sizes."""

    batch: int = 4  # prefill block B: tokens per engine pass (decode uses 1 of them)
    max_hidden: int = 2560
    max_ffn: int = 6912
    max_heads: int = 32
    max_kv_heads: int = 16
    max_head_dim: int = 128
    max_ctx: int = 4096  # tokens the KV cache and the attention logit buffer hold
    max_vocab: int = 151936
    max_head_k: int = 256  # shortlist length
    max_layers: int = 64
    q_lanes: int = 8  # query heads (of one KV head, any tokens of the block) attention serves per K/V pass
    ports: int = 4  # HP ports / engine weight streams
    lanes: int = 16  # engine output rows per beat
    dot: str = "tree"
    addr_width: int = 40
    vmem_depth: int | None = None  # words per token lane; None: the VMEM plan for the maxima
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        def bad(reason: str):
            raise TernError(f"accelerator config refused: {reason}", "change the generation parameters")

        if self.batch < 1 or self.batch > 16:
            bad(f"batch {self.batch} is outside 1..16")
        for name in ("max_hidden", "max_ffn", "max_heads", "max_kv_heads", "max_head_dim", "max_ctx",
                     "max_vocab", "max_head_k", "max_layers", "q_lanes"):
            if getattr(self, name) < 1:
                bad(f"{name} {getattr(self, name)} must be >= 1")
        if self.max_hidden % BEAT_BYTES or self.max_head_dim % BEAT_BYTES:
            bad(f"max_hidden and max_head_dim must be multiples of {BEAT_BYTES}")
        if self.max_head_dim > MAX_HEAD_DIM:
            bad(f"max_head_dim {self.max_head_dim} exceeds the numerics maximum {MAX_HEAD_DIM}")
        if self.max_ctx > MAX_CTX:
            bad(f"max_ctx {self.max_ctx} exceeds the numerics maximum {MAX_CTX}")
        if self.max_k > MAX_IN_FEATURES:
            bad(f"the largest linear input {self.max_k} exceeds the numerics maximum {MAX_IN_FEATURES}")
        if self.max_head_k > 4096 or self.max_head_k > self.max_vocab:
            bad(f"max_head_k {self.max_head_k} must be <= 4096 and <= max_vocab")
        if self.max_kv_heads > self.max_heads:
            bad("max_kv_heads must be <= max_heads")
        if self.vmem_depth is not None and self.vmem_depth < 1:
            bad(f"vmem_depth {self.vmem_depth} must be >= 1")
        self.engine  # validates the engine's own parameters

    # -- derived -----------------------------------------------------------------------------
    @property
    def max_q_dim(self) -> int:
        return self.max_heads * self.max_head_dim

    @property
    def max_k(self) -> int:
        """Largest input dim of any linear (engine max_k): hidden, ffn (down) or q_dim (o_proj)."""
        return max(self.max_hidden, self.max_ffn, self.max_q_dim)

    @property
    def max_n(self) -> int:
        """Largest output dim of any matmul: the vocabulary (head) or a linear."""
        return max(self.max_vocab, self.max_ffn, self.max_q_dim, self.max_hidden)

    @property
    def engine(self) -> EngineParams:
        return EngineParams(ports=self.ports, batch=self.batch, max_k=self.max_k, max_n=self.max_n,
                            lanes=self.lanes, addr_width=self.addr_width, dot=self.dot)

    @property
    def vmem_words(self) -> int:
        """VMEM depth (32-bit words per token lane)."""
        if self.vmem_depth is not None:
            return self.vmem_depth
        from ternfpga.rtl.vmem_plan import vmem_plan

        return vmem_plan(self.max_hidden, self.max_ffn, self.max_heads, self.max_kv_heads,
                         self.max_head_dim).total

    @property
    def max_dims(self) -> dict[str, int]:
        """The maxima a model is checked against, by the names ModelConfig uses."""
        return {"hidden": self.max_hidden, "ffn": self.max_ffn, "heads": self.max_heads,
                "kv_heads": self.max_kv_heads, "head_dim": self.max_head_dim, "vocab": self.max_vocab,
                "layers": self.max_layers}

    def check_model(self, cfg, head_k: int) -> None:
        """Refuse a model this bitstream cannot run: one line naming the dim, its value and the maximum."""
        for name, limit in self.max_dims.items():
            value = getattr(cfg, name)
            if value > limit:
                raise TernError(f"the model's {name} {value} exceeds the accelerator's maximum {limit}",
                                f"regenerate the accelerator with a larger --max-{name.replace('_', '-')}")
        if cfg.q_dim > self.max_q_dim:
            raise TernError(f"the model's q_dim {cfg.q_dim} exceeds the accelerator's maximum {self.max_q_dim}",
                            "regenerate the accelerator with larger --max-heads/--max-head-dim")
        if head_k > self.max_head_k:
            raise TernError(f"the image's head_k {head_k} exceeds the accelerator's maximum {self.max_head_k}",
                            "re-quantize with a smaller --head-k or regenerate with a larger --max-head-k")
        if cfg.hidden % BEAT_BYTES or cfg.head_dim % BEAT_BYTES:
            raise TernError(f"the model's hidden {cfg.hidden} / head_dim {cfg.head_dim} are not multiples of "
                            f"{BEAT_BYTES}", "the accelerator reads embedding rows and K/V rows as whole 16-byte beats")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra", None)
        d["vmem_depth"] = self.vmem_words
        return d

    def digest(self) -> int:
        """32-bit hash of the generation parameters (the PARAMS_HASH identification register)."""
        text = json.dumps(self.to_dict(), sort_keys=True).encode()
        return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")

    def with_(self, **kw) -> "AccelParams":
        return replace(self, **kw)
