"""Generation parameters of the ternary matmul engine, with the checks that refuse a config that
cannot work (one-line reasons, raised as TernError at generation time)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ternfpga.quant.errors import TernError
from ternfpga.quant.layout import TritLayout
from ternfpga.sim.numerics.spec import ACT_MAX, MAX_IN_FEATURES

DOT_KINDS = ("tree", "lut")


@dataclass(frozen=True)
class EngineParams:
    """Defaults: KV260 (4 HP ports, 128-bit beats) and Qwen2.5-0.5B (K up to 4864, N up to the
    151,936-row head)."""

    ports: int = 4  # parallel weight streams, one AXI read master each (HP0..HP3)
    batch: int = 1  # activation vectors per weight pass (decode 1, prefill > 1)
    max_k: int = 4864  # largest input dim
    max_n: int = 151936  # largest output dim
    beat_bytes: int = 16  # AXI data width / 8
    lanes: int = 16  # output rows per beat
    addr_width: int = 40
    max_burst: int = 128  # beats per AXI burst
    fifo_depth: int = 512  # beats buffered per port (read latency it hides: fifo_depth - max_burst)
    dot: str = "tree"  # "tree" (add/subtract tree) or "lut" (TeLLMe-style precomputed sums)

    def __post_init__(self):
        def bad(reason: str):
            raise TernError(f"engine config refused: {reason}", "change the generation parameters")

        if self.batch < 1:
            bad(f"batch {self.batch} must be >= 1")
        if self.ports < 1:
            bad(f"ports {self.ports} must be >= 1")
        if self.beat_bytes < 1 or self.beat_bytes & (self.beat_bytes - 1):
            bad(f"beat_bytes {self.beat_bytes} must be a power of two")
        if self.lanes < 1 or self.beat_bytes % self.lanes:
            bad(f"{self.lanes} lanes do not divide the {self.beat_bytes}-byte beat")
        if not 1 <= self.max_k <= MAX_IN_FEATURES:
            bad(f"max_k {self.max_k} is outside 1..{MAX_IN_FEATURES} (docs/numerics.md)")
        if self.max_n < 1 or self.max_n >= 1 << 20:
            bad(f"max_n {self.max_n} is outside 1..{(1 << 20) - 1}")
        if not 1 <= self.max_burst <= 256:
            bad(f"max_burst {self.max_burst} is outside 1..256")
        if self.fifo_depth < 2 * self.max_burst or self.fifo_depth & (self.fifo_depth - 1):
            bad(f"fifo_depth {self.fifo_depth} must be a power of two >= 2 * max_burst")
        if not 32 <= self.addr_width <= 64:
            bad(f"addr_width {self.addr_width} is outside 32..64")
        if self.dot not in DOT_KINDS:
            bad(f"dot {self.dot!r} is not one of {', '.join(DOT_KINDS)}")

    # -- derived ---------------------------------------------------------------------------------
    @property
    def bytes_per_lane(self) -> int:
        return self.beat_bytes // self.lanes

    @property
    def trits_per_lane(self) -> int:
        """Columns each lane consumes per beat (= activations read per beat)."""
        return 5 * self.bytes_per_lane

    @property
    def max_chunks(self) -> int:
        """Beats per row group at max_k."""
        return -(-self.max_k // self.trits_per_lane)

    @property
    def max_groups(self) -> int:
        """Row groups (of ``lanes`` rows) one port handles at max_n."""
        return -(-self.max_n // (self.lanes * self.ports))

    @property
    def acc_width(self) -> int:
        """Signed accumulator width: |acc| <= 127 * max_k."""
        return (ACT_MAX * self.trits_per_lane * self.max_chunks).bit_length() + 1

    @property
    def row_width(self) -> int:
        return max(1, (self.max_n - 1).bit_length())

    @property
    def layout(self) -> TritLayout:
        return TritLayout(beat_bytes=self.beat_bytes, ports=self.ports, lanes=self.lanes)

    def check_matrix(self, n: int, k: int) -> None:
        """Refuse a matrix the generated engine cannot run."""
        if not 1 <= k <= self.max_k:
            raise TernError(f"matrix input dim {k} is outside 1..{self.max_k} (the engine's max_k)",
                            "regenerate the engine with a larger --max-k")
        if not 1 <= n <= self.max_n:
            raise TernError(f"matrix output dim {n} is outside 1..{self.max_n} (the engine's max_n)",
                            "regenerate the engine with a larger --max-n")

    def to_dict(self) -> dict:
        return asdict(self)
