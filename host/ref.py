"""The ``ref`` backend: the golden model (numpy) standing in for the fabric, bit for bit."""
from __future__ import annotations

from typing import Sequence

from ternfpga.sim.golden import Candidates, GoldenModel

from .backend import Backend


class RefBackend(Backend):
    name = "ref"

    def __init__(self):
        super().__init__()
        self.model: GoldenModel | None = None
        self.cache = None

    def load(self, image) -> None:
        self.model = GoldenModel(image)
        self.cache = self.model.new_cache()

    def reset(self) -> None:
        self.cache = self.model.new_cache()

    @property
    def position(self) -> int:
        return 0 if self.cache is None else self.cache.length

    @property
    def max_ctx(self) -> int:
        return self.model.w.max_ctx

    @property
    def head_k(self) -> int:
        return self.model.w.head_k

    def _prefill(self, tokens: Sequence[int]) -> Candidates:
        return self.model.forward(tokens, self.cache).candidates

    def _decode(self, token: int) -> Candidates:
        return self.model.forward([token], self.cache).candidates
