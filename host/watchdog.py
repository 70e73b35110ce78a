"""The driver's watchdog: a cycle budget for one call, computed from the work the call must do, so a device
that never finishes (a hung interconnect, a stuck unit) is caught in bounded time, while no real call, on
any model the bitstream runs, comes near it.

The estimate W (cycles) is deliberately pessimistic in every term; the budget is ``factor * W + FLOOR``:

    W = bytes / RHO + ops * C_OP + tokens * E * C_ELEM + kv_passes * C_POS + head

- bytes: what the call moves over DDR. Per block of up to B tokens: every layer section of the image
  (trits, norm gains, biases, scales) and the RoPE tables, the block's embedding rows, the K/V rows and
  scales the attention reads (positions up to the block's last, once per KV pass) and writes, and the
  descriptors; in the last block also the final norm, the head's trits, the head_k int8 rows it rescores
  and the shortlist it writes. RHO = 4 bytes/cycle (1 GB/s at 250 MHz): a quarter of what one HP port
  streams and 1/16 of the four ports together.
- ops: descriptors run (per block; LAST_BLOCK ones counted in every block). C_OP = 1024 cycles each: the
  descriptor fetch and the op's own DDR round trips at a pessimistic read latency.
- E: vector elements per token, layers * (4 hidden + 4 (q_dim + 2 kv_dim) + 2 q_dim + 3 ffn) + 2 hidden
  (embedding, norms, bias, RoPE, per-head quantization, the epilogues' rows), C_ELEM = 4 cycles each
  (the vector units run one element per cycle per pass, two passes).
- kv_passes: (layer, KV head, pass, cached position) visits of the attention, C_POS = 2 * q_lanes + 4
  cycles each (logit and softmax pipelines shared by the pass's query lanes).
- head: one cycle per vocabulary row into the top-K, and per candidate a heap-sort step of 4 * log2(K)
  cycles.

FACTOR = 4 by default (a driver option), FLOOR = 100,000 cycles (0.4 ms at 250 MHz). The tests check that
every call they run takes fewer cycles than W itself (tests/test_sim_backend.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

RHO = 4  # bytes per cycle
C_OP = 1024  # cycles per descriptor
C_ELEM = 4  # cycles per vector element per token
FLOOR = 100_000  # cycles added to every budget
ABORT_WAIT_CYCLES = 65_536  # after ABORT: the running op must end within this (0.26 ms at 250 MHz)
BEAT = 16


@dataclass(frozen=True)
class Watchdog:
    """The per-model terms of the estimate (module docstring)."""

    batch: int
    q_lanes: int
    layers: int
    kv_heads: int
    group: int  # query heads per KV head
    head_dim: int
    hidden: int
    vocab: int
    head_k: int
    block_bytes: int  # layer sections + RoPE tables + descriptors, read once per block
    last_block_bytes: int  # final norm, head trits, head_k int8 rows and scales, the shortlist
    token_bytes: int  # per token: embedding row + scale, K/V rows + scales written, token id
    ops: int  # descriptors per block
    elems: int  # vector elements per token

    @classmethod
    def for_model(cls, image, program, params) -> "Watchdog":
        c = image.config
        lay = program.layout

        def size(prefix: str) -> int:
            return sum(int(image.info(n)["nbytes"]) for n in image.names() if n.startswith(prefix))

        ops = len(program.descs)
        block = size("layers.") + size("rope.") + 64 * ops
        last = size("final_norm.") + size("head.trits") + size("head.scale") + lay.head_k * (c.hidden + 4) \
            + 8 * lay.head_k
        kv_dim = c.kv_heads * c.head_dim
        token = c.hidden + 4 + c.layers * c.kv_heads * 2 * (c.head_dim + 4) + 4
        elems = c.layers * (4 * c.hidden + 4 * (c.q_dim + 2 * kv_dim) + 2 * c.q_dim + 3 * c.ffn) + 2 * c.hidden
        return cls(batch=params.batch, q_lanes=params.q_lanes, layers=c.layers, kv_heads=c.kv_heads,
                   group=c.heads // c.kv_heads, head_dim=c.head_dim, hidden=c.hidden, vocab=c.vocab,
                   head_k=lay.head_k, block_bytes=block, last_block_bytes=last, token_bytes=token, ops=ops,
                   elems=elems)

    def estimate(self, tokens: int, position: int) -> int:
        """W: pessimistic cycles for a call of ``tokens`` tokens at ``position``."""
        nbytes = self.last_block_bytes + tokens * self.token_bytes
        visits = 0  # (layer, KV head, pass, cached position) visits of the attention
        blocks = 0
        for start in range(0, tokens, self.batch):
            tb = min(self.batch, tokens - start)
            end = position + start + tb  # positions the block's last token attends to
            passes = -(-self.group * tb // self.q_lanes)
            visits += self.layers * self.kv_heads * passes * end
            blocks += 1
        nbytes += blocks * self.block_bytes + visits * 2 * (self.head_dim + 4)
        head = self.vocab + self.head_k * 4 * max(1, math.ceil(math.log2(max(self.head_k, 2))))
        cycles = (nbytes / RHO + blocks * self.ops * C_OP + tokens * self.elems * C_ELEM
                  + visits * (2 * self.q_lanes + 4) + head)
        return int(math.ceil(cycles))

    def budget(self, tokens: int, position: int, factor: float = 4.0) -> int:
        return int(factor * self.estimate(tokens, position)) + FLOOR
