"""The learning-rate and weight-decay schedule: a linear warm-up, then BitNet's two stages.

Stage 1 (the first half of the steps after warm-up): LR linear from the peak to 2/3 of it, weight decay
0.1. Stage 2: LR linear from 2/3 peak towards 0 (the last step runs at 2/3 peak / stage length), weight
decay 0. The big loss drop of a ternary run comes in stage 2.
"""
from __future__ import annotations

from dataclasses import dataclass

STAGE1_END_LR = 2.0 / 3.0
STAGE1_WEIGHT_DECAY = 0.1


@dataclass(frozen=True)
class Schedule:
    peak: float
    warmup: int
    total: int
    weight_decay: float = STAGE1_WEIGHT_DECAY

    @property
    def stage2_start(self) -> int:
        return self.warmup + (self.total - self.warmup) // 2

    def lr(self, step: int) -> float:
        """LR of step ``step`` (0-based, < total)."""
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        mid = self.stage2_start
        if step < mid:
            frac = (step - self.warmup) / max(mid - self.warmup, 1)
            return self.peak * (1.0 - (1.0 - STAGE1_END_LR) * frac)
        return self.peak * STAGE1_END_LR * (self.total - step) / max(self.total - mid, 1)

    def wd(self, step: int) -> float:
        return self.weight_decay if step < self.stage2_start else 0.0


def default_warmup(total: int) -> int:
    """375 steps (BitNet's), but at most a tenth of a short run."""
    return max(1, min(375, total // 10))
