"""Next-token choice from a device's candidate shortlist: greedy, temperature, top-k, top-p."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ternfpga.quant.errors import TernError
from ternfpga.sim.golden import Candidates


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 0.0  # 0 = greedy
    top_k: int | None = None  # at most the image's shortlist length
    top_p: float | None = None  # nucleus, in (0, 1]
    seed: int | None = None

    def validate(self, head_k: int) -> None:
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise TernError(f"--temperature {self.temperature} is invalid", "use a number >= 0 (0 is greedy)")
        if self.top_k is not None and not 1 <= self.top_k <= head_k:
            raise TernError(f"--top-k {self.top_k} is out of range",
                            f"use 1..{head_k} (the image's head shortlist; re-quantize with a larger --head-k for more)")
        if self.top_p is not None and not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise TernError(f"--top-p {self.top_p} is out of range", "use a number in (0, 1]")
        if self.seed is not None and self.seed < 0:
            raise TernError(f"--seed {self.seed} is negative", "use an integer >= 0")


class Sampler:
    def __init__(self, opts: SamplingOptions, head_k: int):
        opts.validate(head_k)
        self.opts = opts
        self.rng = np.random.default_rng(opts.seed)

    def choose(self, cand: Candidates) -> int:
        """Pick a token id. Candidates arrive ordered by (logit descending, id ascending)."""
        o = self.opts
        if o.temperature == 0:
            return int(cand.ids[0])
        logits = cand.logits
        n = len(logits) if o.top_k is None else min(o.top_k, len(logits))
        # shift before dividing: a tiny temperature sends the gaps to -inf (p = 0), never inf - inf = NaN
        with np.errstate(over="ignore", under="ignore"):
            z = (logits[:n] - logits[:n].max()) / o.temperature
            p = np.exp(z)
        p /= p.sum()
        if o.top_p is not None and o.top_p < 1:
            keep = int(np.searchsorted(np.cumsum(p), o.top_p) + 1)
            p = p[:keep] / p[:keep].sum()
        return int(cand.ids[self.rng.choice(len(p), p=p)])
