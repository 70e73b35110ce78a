"""Distillation from a float teacher: the teacher's checkpoint, its tokenizer check, and the loss

    L = CE(student, targets) + λ·τ²·KL(teacher_τ ‖ student_τ) + μ·MSE(n(h_student), n(h_teacher))

with ``_τ`` the softmax at temperature τ, the KL averaged over tokens (τ² keeps its gradient on the CE's
scale as τ grows), and ``n(h)`` the last residual state divided by its RMS (the hidden term needs equal
hidden sizes; μ = 0 leaves it out).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checkpoint import Checkpoint
from ..config import ModelConfig
from ..errors import TernError
from .arch import ArchSpec
from .data import TokenizerInfo, load_tokenizer, load_tokenizer_json


@dataclass(frozen=True)
class DistillWeights:
    kl: float
    temperature: float
    hidden: float = 0.0


def teacher_tokenizer(ckpt: Checkpoint, student_tokenizer: str | None) -> TokenizerInfo:
    """The tokenizer to train with: the teacher's, or ``student_tokenizer`` if it is the same one."""
    theirs = load_tokenizer_json(ckpt.tokenizer_json, str(ckpt.path / "tokenizer.json"))
    if theirs.vocab_size > ckpt.config.vocab:
        raise TernError(f"the teacher's tokenizer has {theirs.vocab_size} tokens, more than its vocab_size "
                        f"{ckpt.config.vocab}", "use a consistent teacher checkpoint")
    if student_tokenizer is None:
        return theirs
    ours = load_tokenizer(student_tokenizer)
    if ours.vocab_size != theirs.vocab_size:
        raise TernError(f"tokenizer '{student_tokenizer}' has {ours.vocab_size} tokens, the teacher's "
                        f"{theirs.vocab_size}", "distil with the teacher's tokenizer (omit --tokenizer)")
    if ours.vocab() != theirs.vocab():
        raise TernError(f"tokenizer '{student_tokenizer}' maps tokens to different ids than the teacher's",
                        "distil with the teacher's tokenizer (omit --tokenizer)")
    return ours


def student_arch(teacher: ModelConfig, arch: ArchSpec | None) -> ArchSpec:
    """The student's shape: ``arch`` with the teacher's vocabulary, or the teacher's own shape."""
    if arch is None:
        return ArchSpec(family=teacher.family, hidden=teacher.hidden, ffn=teacher.ffn, layers=teacher.layers,
                        heads=teacher.heads, kv_heads=teacher.kv_heads, head_dim=teacher.head_dim,
                        vocab=teacher.vocab, max_position=teacher.max_position, rope_theta=teacher.rope_theta,
                        eps=teacher.eps, tied=teacher.tied, act=teacher.act)
    if arch.vocab and arch.vocab != teacher.vocab:
        raise TernError(f"the student's vocabulary {arch.vocab} differs from the teacher's {teacher.vocab}",
                        "a distilled student shares the teacher's vocabulary: drop --vocab")
    from dataclasses import replace

    return replace(arch, vocab=teacher.vocab, max_position=arch.max_position or teacher.max_position)


def _unit_rms(h: torch.Tensor) -> torch.Tensor:
    h = h.float()
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)


def distill_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, targets: torch.Tensor, w: DistillWeights,
                 s_hidden: torch.Tensor | None = None, t_hidden: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total loss, CE, KL) over all tokens; logits [B, T, V], targets [B, T]."""
    V = s_logits.shape[-1]
    s = s_logits.float().reshape(-1, V)
    ce = F.cross_entropy(s, targets.reshape(-1))
    tau = w.temperature
    log_s = F.log_softmax(s / tau, dim=-1)
    log_t = F.log_softmax(t_logits.float().reshape(-1, V) / tau, dim=-1)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction="sum") / s.shape[0]
    loss = ce + w.kl * tau * tau * kl
    if w.hidden > 0 and s_hidden is not None and t_hidden is not None:
        loss = loss + w.hidden * F.mse_loss(_unit_rms(s_hidden), _unit_rms(t_hidden))
    return loss, ce, kl
