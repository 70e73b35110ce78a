"""Read a Hugging Face checkpoint directory: config.json, (sharded) safetensors, tokenizer.json.

Tensors stay memory-mapped in their files; :meth:`Checkpoint.tensor` and :meth:`Checkpoint.rows`
return float32 copies of one tensor (or a row range of one), so a caller that processes tensors one
at a time never holds two copies of the model.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .config import ModelConfig
from .errors import TernError

SUPPORTED_DTYPES = {"BF16", "F16", "F32"}
_SUB_NORMS = ("self_attn.attn_sub_norm.weight", "mlp.ffn_sub_norm.weight")


def layer_tensor_names(cfg: ModelConfig, i: int) -> dict[str, str]:
    """Map our short names for layer ``i`` onto HF tensor names."""
    p = f"model.layers.{i}."
    names = {
        "attn_norm": p + "input_layernorm.weight",
        "mlp_norm": p + "post_attention_layernorm.weight",
        "q": p + "self_attn.q_proj.weight",
        "k": p + "self_attn.k_proj.weight",
        "v": p + "self_attn.v_proj.weight",
        "o": p + "self_attn.o_proj.weight",
        "gate": p + "mlp.gate_proj.weight",
        "up": p + "mlp.up_proj.weight",
        "down": p + "mlp.down_proj.weight",
    }
    if cfg.qkv_bias:
        names.update(q_bias=p + "self_attn.q_proj.bias", k_bias=p + "self_attn.k_proj.bias",
                     v_bias=p + "self_attn.v_proj.bias")
    if cfg.sub_norms:
        names.update(attn_sub_norm=p + _SUB_NORMS[0], mlp_sub_norm=p + _SUB_NORMS[1])
    return names


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the model needs, with its HF shape."""
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (cfg.vocab, cfg.hidden),
        "model.norm.weight": (cfg.hidden,),
    }
    if not cfg.tied:
        shapes["lm_head.weight"] = (cfg.vocab, cfg.hidden)
    lin = {name: (out, inp) for name, out, inp in cfg.linears()}
    for i in range(cfg.layers):
        for short, hf in layer_tensor_names(cfg, i).items():
            if short in lin:
                shapes[hf] = lin[short]
            elif short.endswith("_bias"):
                shapes[hf] = (lin[short[:-5]][0],)
            elif short == "mlp_sub_norm":
                shapes[hf] = (cfg.ffn,)
            elif short == "attn_sub_norm":
                shapes[hf] = (cfg.q_dim,)
            else:
                shapes[hf] = (cfg.hidden,)
    return shapes


def _read_text(p: Path) -> str:
    """A small UTF-8 file's text; FileNotFoundError passes through, other failures become TernError."""
    if p.is_dir():
        raise TernError(f"'{p}' is a directory, not a file", "the checkpoint is damaged: restore the file from the original")
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except PermissionError:
        raise TernError(f"cannot read '{p}': permission denied", "check the file's permissions") from None
    except OSError as e:
        raise TernError(f"cannot read '{p}' ({e.strerror or e.__class__.__name__})", "check the file") from None
    except UnicodeDecodeError:
        raise TernError(f"'{p}' is not UTF-8 text", "the checkpoint is damaged: restore the file from the original") from None


class Checkpoint:
    """An opened HF checkpoint directory. Use :meth:`open`."""

    def __init__(self, path: Path, raw_config: dict, index: dict[str, Path], tokenizer_json: str):
        self.path = path
        self.raw_config = raw_config
        self._index = index  # tensor name -> shard file
        self._handles: dict[Path, object] = {}
        self.tokenizer_json = tokenizer_json
        names = set(index)
        has_sub = all(f"model.layers.0.{s}" in names for s in _SUB_NORMS)
        self.config = ModelConfig.from_hf(raw_config, sub_norms=has_sub, has_lm_head="lm_head.weight" in names)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> "Checkpoint":
        path = Path(path)
        hint = "pass the folder that holds config.json, model.safetensors (or its index) and tokenizer.json"
        if not path.exists():
            raise TernError(f"checkpoint directory '{path}' does not exist", hint)
        if not path.is_dir():
            raise TernError(f"checkpoint path '{path}' is not a directory", hint)
        cfg_path = path / "config.json"
        try:
            raw_config = json.loads(_read_text(cfg_path))
        except FileNotFoundError:
            raise TernError(f"no config.json in '{path}'", hint) from None
        except json.JSONDecodeError as e:
            raise TernError(f"config.json in '{path}' is not valid JSON (line {e.lineno})",
                            "restore it from the original checkpoint") from None
        if not isinstance(raw_config, dict):
            raise TernError(f"config.json in '{path}' is not a JSON object", "restore it from the original checkpoint")
        index = cls._read_index(path, hint)
        tok_path = path / "tokenizer.json"
        try:
            tokenizer_json = _read_text(tok_path)
        except FileNotFoundError:
            raise TernError(f"no tokenizer.json in '{path}'", hint) from None
        ckpt = cls(path, raw_config, index, tokenizer_json)
        ckpt._check_tokenizer()
        ckpt.validate()
        return ckpt

    @staticmethod
    def _read_index(path: Path, hint: str) -> dict[str, Path]:
        single = path / "model.safetensors"
        idx_path = path / "model.safetensors.index.json"
        if single.exists():
            files = [single]
        elif idx_path.exists():
            try:
                weight_map = json.loads(_read_text(idx_path))["weight_map"]
                if not isinstance(weight_map, dict) or not weight_map \
                        or not all(isinstance(f, str) and f for f in weight_map.values()):
                    raise ValueError
            except FileNotFoundError:  # raced away
                raise TernError(f"'{idx_path}' disappeared while reading it", "try again") from None
            except (ValueError, KeyError, TypeError):
                raise TernError(f"'{idx_path}' is not valid JSON with a weight_map of tensor name -> shard file",
                                "restore it from the original checkpoint") from None
            files = sorted({path / f for f in weight_map.values()})
        else:
            raise TernError(f"no model.safetensors or model.safetensors.index.json in '{path}'", hint)
        index: dict[str, Path] = {}
        for f in files:
            if not f.exists():
                raise TernError(f"shard '{f.name}' named by the index is missing", "download every shard of the checkpoint")
            if not f.is_file():
                raise TernError(f"'{f}' is not a file", "the checkpoint is damaged: download it again")
            try:
                with safe_open(str(f), framework="pt") as h:
                    for name in h.keys():
                        index[name] = f
            except (SafetensorError, OSError, ValueError) as e:
                why = (str(e).splitlines() or [e.__class__.__name__])[0][:120]
                raise TernError(f"'{f.name}' is not a readable safetensors file ({why})",
                                "the file is truncated or corrupt: download it again") from None
        return index

    def _check_tokenizer(self) -> None:
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_str(self.tokenizer_json)
        except Exception as e:  # tokenizers raises a bare Exception subclass
            raise TernError(f"tokenizer.json in '{self.path}' cannot be loaded ({str(e)[:100]})",
                            "restore it from the original checkpoint") from None

    def _handle(self, name: str):
        try:
            f = self._index[name]
        except KeyError:
            raise TernError(f"checkpoint lacks tensor '{name}'", "the checkpoint is incomplete or not of the architecture config.json names") from None
        h = self._handles.get(f)
        if h is None:
            h = self._handles[f] = safe_open(str(f), framework="pt")
        return h

    # -- access --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._index)

    def has(self, name: str) -> bool:
        return name in self._index

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handle(name).get_slice(name).get_shape())

    def dtype(self, name: str) -> str:
        return self._handle(name).get_slice(name).get_dtype()

    def tensor(self, name: str) -> torch.Tensor:
        """One tensor as float32 (a copy)."""
        try:
            t = self._handle(name).get_tensor(name)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise TernError(f"cannot read tensor '{name}' ({str(e)[:100]})", "the file is corrupt: download it again") from None
        return t.to(torch.float32)

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of a 2-D tensor as float32, read without loading the rest."""
        try:
            t = self._handle(name).get_slice(name)[start:stop]
        except (SafetensorError, OSError, RuntimeError) as e:
            raise TernError(f"cannot read tensor '{name}' ({str(e)[:100]})", "the file is corrupt: download it again") from None
        return t.to(torch.float32)

    def validate(self) -> None:
        """Check that every expected tensor is present with the right shape and a supported dtype."""
        for name, shape in expected_shapes(self.config).items():
            if name not in self._index:
                raise TernError(f"checkpoint lacks tensor '{name}'",
                                f"it is required by {self.config.architecture}; the checkpoint is incomplete")
            got = self.shape(name)
            if got != shape:
                raise TernError(f"tensor '{name}' has shape {list(got)}, config.json implies {list(shape)}",
                                "config.json does not match the weights")
            dt = self.dtype(name)
            if dt not in SUPPORTED_DTYPES:
                raise TernError(f"tensor '{name}' has dtype {dt}", "supported: bf16, fp16, fp32")
