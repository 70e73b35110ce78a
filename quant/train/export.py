"""A trained model -> a Hugging Face checkpoint directory, and a checkpoint directory -> a model.

The export holds the LATENT float32 weights (not their ternary projections): ``ternfpga quantize``
applies the same absmean rule the training forward applied, so the image computes what training
computed. Files: config.json (quant/synth.py's format), model.safetensors (float32), tokenizer.json
(the training tokenizer, verbatim) and a small tokenizer_config.json for Hugging Face loaders.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..checkpoint import Checkpoint
from ..errors import TernError
from ..folders import new_folder
from .arch import hf_config
from .model import Decoder

MARKER = ".ternfpga-train"  # an export folder carries it; only such folders are ever replaced


def export_checkpoint(model: Decoder, out_dir: str | Path, tokenizer_json: str) -> Path:
    """Write ``model`` to ``out_dir`` via a temporary folder and a rename (a previous export there is
    replaced; any other non-empty folder is refused)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MARKER).exists())):
        raise TernError(f"'{out_dir}' exists and is not a checkpoint this trainer wrote",
                        "choose another output folder")
    cfg = model.cfg
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    with new_folder(out_dir) as tmp:
        (tmp / "config.json").write_text(json.dumps(hf_config(cfg), indent=2) + "\n")
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "tokenizer.json").write_bytes(tokenizer_json.encode("utf-8"))  # verbatim
        tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.max_position}
        eot = _token_text(tokenizer_json, cfg.eos_id)
        if eot is not None:
            tok_cfg.update(bos_token=eot, eos_token=eot)
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
        (tmp / MARKER).write_text("written by ternfpga train: latent float32 weights\n")
    return out_dir


def _token_text(tokenizer_json: str, tid: int | None) -> str | None:
    if tid is None:
        return None
    for t in json.loads(tokenizer_json).get("added_tokens", []):
        if t.get("id") == tid:
            return t.get("content")
    return None


def load_model(ckpt: Checkpoint, quant: bool = False, scale: str = "tensor") -> Decoder:
    """A :class:`Decoder` holding the checkpoint's weights (float32)."""
    model = Decoder(ckpt.config, quant=quant, scale=scale)
    sd = {name: ckpt.tensor(name) for name in model.state_dict()}
    model.load_state_dict(sd, strict=True)
    return model
