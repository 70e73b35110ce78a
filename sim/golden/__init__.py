"""The golden model: the fabric's integer arithmetic in numpy (docs/numerics.md)."""
from .head import Candidates
from .model import GoldenModel, KVCache, StepResult, Trace

__all__ = ["Candidates", "GoldenModel", "KVCache", "StepResult", "Trace"]
