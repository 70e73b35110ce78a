"""Pseudo-float (pf) arithmetic in hardware, bit-exact with sim/numerics/pf.py (docs/numerics.md,
"Scales"): pipelined normalization, product and requantization, a sequential divider and square root,
and the scalar pf unit the op units use for their per-vector scale math."""
from .alu import PfAlu, PfOp
from .apply import Apply
from .divider import Divider
from .isqrt import Isqrt
from .mul import PfMul
from .normalize import Normalize

__all__ = ["Apply", "Divider", "Isqrt", "Normalize", "PfAlu", "PfMul", "PfOp"]
