"""The DDR layout of one loaded model: where the token ids, the shortlist, the program, the image, the
KV cache and the scratch area live. One object, used by the program compiler, the host drivers (board
and simulator), the tests and docs/accelerator.md.

Every address is a byte offset from the DDR buffer's start (the DDR_BASE register holds its physical
address), so programs are relocatable. Regions are 4 KiB aligned.

| region   | size                                   | content                                            |
|----------|----------------------------------------|----------------------------------------------------|
| tokens   | 4 * max_ctx                            | u32 token ids of the current call (host writes)    |
| results  | 8 * head_k                             | shortlist: {u32 id, i32 FX logit}, best first      |
| program  | 64 * max_descriptors                   | the compiled program (rtl/control/isa.py)          |
| image    | the .tern file                         | copied byte for byte: tensor at image + its offset |
| kv       | per layer: K rows, V rows, K/V scales  | KV cache (see :meth:`DdrLayout.kv_layer`)          |
| scratch  | requested bytes                        | intermediates the program copies out (tracing)     |
"""
from __future__ import annotations

from dataclasses import dataclass

from ternfpga.quant.errors import TernError
from ternfpga.rtl.control.isa import DESC_BYTES

ALIGN = 4096
PF_BYTES = 4
RESULT_BYTES = 8  # per shortlist entry: u32 id, i32 logit


def align(x: int, a: int = ALIGN) -> int:
    return -(-x // a) * a


@dataclass(frozen=True)
class KvLayer:
    """One layer's KV cache: row (h, p) of K at ``k_rows + (h * ctx + p) * head_dim`` (int8), its pf
    scale at ``k_scales + 4 * (h * ctx + p)``; V alike."""

    k_rows: int
    v_rows: int
    k_scales: int
    v_scales: int


@dataclass(frozen=True)
class DdrLayout:
    tokens: int
    results: int
    program: int
    program_bytes: int
    image: int
    image_bytes: int
    kv: int
    kv_layer_bytes: int
    scratch: int
    scratch_bytes: int
    total: int
    # model dims the KV cache is laid out for
    layers: int
    kv_heads: int
    head_dim: int
    ctx: int  # positions per KV head (the device's max context)
    head_k: int

    @classmethod
    def plan(cls, *, image_bytes: int, layers: int, kv_heads: int, head_dim: int, ctx: int, head_k: int,
             max_descriptors: int, scratch_bytes: int = 0) -> "DdrLayout":
        at = 0

        def take(n: int) -> int:
            nonlocal at
            start, at = at, at + align(max(n, 1))
            return start

        tokens = take(4 * ctx)
        results = take(RESULT_BYTES * head_k)
        program_bytes = DESC_BYTES * max_descriptors
        program = take(program_bytes)
        image = take(image_bytes)
        rows = kv_heads * ctx * head_dim
        scales = kv_heads * ctx * PF_BYTES
        kv_layer_bytes = align(2 * rows + 2 * scales)
        kv = take(layers * kv_layer_bytes)
        scratch = take(scratch_bytes)
        return cls(tokens=tokens, results=results, program=program, program_bytes=program_bytes, image=image,
                   image_bytes=image_bytes, kv=kv, kv_layer_bytes=kv_layer_bytes, scratch=scratch,
                   scratch_bytes=scratch_bytes, total=at, layers=layers, kv_heads=kv_heads, head_dim=head_dim,
                   ctx=ctx, head_k=head_k)

    def kv_layer(self, i: int) -> KvLayer:
        if not 0 <= i < self.layers:
            raise ValueError(f"layer {i} outside 0..{self.layers - 1}")
        base = self.kv + i * self.kv_layer_bytes
        rows = self.kv_heads * self.ctx * self.head_dim
        scales = self.kv_heads * self.ctx * PF_BYTES
        return KvLayer(k_rows=base, v_rows=base + rows, k_scales=base + 2 * rows, v_scales=base + 2 * rows + scales)

    def tensor(self, image, name: str) -> int:
        """DDR offset of an image section (the image is copied byte for byte)."""
        return self.image + int(image.info(name)["offset"])

    def check_fits(self, buffer_bytes: int) -> None:
        if self.total > buffer_bytes:
            raise TernError(f"the model needs {self.total / 2**20:.1f} MiB of DDR, the buffer holds "
                            f"{buffer_bytes / 2**20:.1f} MiB", "use a larger DDR buffer or a smaller --max-ctx")

    def regions(self) -> list[tuple[str, int, int]]:
        """(name, offset, bytes) of every region, in address order (for reports and docs)."""
        return [("tokens", self.tokens, 4 * self.ctx), ("results", self.results, RESULT_BYTES * self.head_k),
                ("program", self.program, self.program_bytes), ("image", self.image, self.image_bytes),
                ("kv", self.kv, self.layers * self.kv_layer_bytes), ("scratch", self.scratch, self.scratch_bytes)]


def ddr_image(image_path, program) -> bytearray:
    """The DDR buffer's initial contents for ``program`` (host/program.py): the image file copied to
    its region and the program to its region; everything else zero."""
    lay = program.layout
    buf = bytearray(lay.total)
    with open(image_path, "rb") as f:
        data = f.read()
    if len(data) != lay.image_bytes:
        raise TernError(f"the image file has {len(data)} bytes, the program was compiled for {lay.image_bytes}",
                        "compile the program for this image")
    buf[lay.image:lay.image + len(data)] = data
    code = program.to_bytes()
    buf[lay.program:lay.program + len(code)] = code
    return buf
