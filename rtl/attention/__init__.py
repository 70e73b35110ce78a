"""The ATTN op unit (causal GQA attention over the int8 KV cache) and its blocks."""
from .op import AttentionOp

__all__ = ["AttentionOp"]
