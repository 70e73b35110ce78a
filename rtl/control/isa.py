"""The accelerator's instruction set: 64-byte descriptors the sequencer fetches from DDR, one per op.

Defined once here: the RTL decodes a fetched descriptor through :data:`DESC_LAYOUT` (an Amaranth
struct), and the host packs one with :meth:`Descriptor.pack`, which takes every field's offset and width
from the same layout. A program is a list of descriptors for one block of up to ``B`` tokens; the
sequencer runs it once per block of a call (tokens ``tok0 .. tok0 + T - 1`` at positions
``pos0 ..``), so it is compiled once per model and never depends on the position or the tokens.

All DDR addresses in a descriptor are byte offsets from the DDR_BASE register (programs are
relocatable); VMEM addresses are word addresses, the same in every token lane.

Field use per op (unlisted fields are ignored; ``T`` is the block's token count, ``t < T``):

=========== ============================================================================================
op          fields
=========== ============================================================================================
END         ends the block: the sequencer starts the next block or finishes the call
EMBED       n=hidden, k=vocab, dst=H; addr0=embed.int8, addr1=embed.scale. Token id = u32 at
            TOKENS + 4*(tok0+t) (id >= k: BAD_TOKEN); H[t] = sat32(apply(row_int8, S_row, 16))
NORM_QUANT  mode RMS: RMSNorm (gains int16 at addr0, S_g=scale0, eps=scale1) then absmax int8;
            mode ABSMAX: absmax int8 of src (value scale 2**-16); both write the engine's input lane
            t and x_scale[t], an int8 copy at dst and the scale at aux.
            mode HEADS: absmax per chunk of k elements (n/k chunks) in VMEM: int8 at dst (in place is
            fine), chunk c's scale at aux+c. n, src, dst, aux.
MATMUL      engine pass: addr0=packed trits, stride=port stride (bytes), n=rows, k=k_chunks,
            aux=row groups per port, scale0=w_scale; flag RAW: raw sums (w=1, x=2**-16).
            mode (epilogue, per row r and token lane t < T): STORE dst[r]=y; RESIDUAL
            dst[r]=sat32(dst[r]+y); SILU/RELU2 dst[r]=act(y); GATE dst[r]=sat32(round(dst[r]*y/2**16));
            TOPK: (r, y of lane T-1) into the head's top-count shortlist (count=K)
BIAS        n, src, dst; addr0=int32 bias. dst[i] = sat32(src[i] + b[i])
ROPE        heads, k=head_dim, src, dst; addr0=cos, addr1=sin (int16 rows of k/2 per position)
KV_WRITE    kv_heads, k=head_dim, src=int8 rows [kv_heads*k], aux=scales [kv_heads], stride=S (positions
            per head); addr0=rows: row (h, p) at addr0 + (h*S + p)*k; addr1=scales: addr1 + 4*(h*S + p)
ATTN        heads, kv_heads, k=head_dim, src=q8 [heads*k], aux=q scales [heads], dst=FX out, stride=S;
            addr0=K rows, addr1=V rows, addr2=K scales, addr3=V scales (KV_WRITE's layout);
            scale0=log2(e)/sqrt(k)
HEAD        n=hidden, count=K, src=x8 (lane T-1), aux=its scale; addr0=head.int8, addr1=head.int8_scale,
            addr2=results: K x {u32 id, i32 FX logit}, best first (numerics.md "Output head")
STORE       mode I32 (words) or I8 (packed bytes), n per token, src; token t to addr0 + (tok0+t)*stride
=========== ============================================================================================

Flags: LAST_TOKEN (the op runs for token T-1 only), LAST_BLOCK (skipped unless this is the call's last
block), RAW (MATMUL), PRESCANNED (NORM_QUANT RMS/ABSMAX: src..src+n is exactly what the most recent
MATMUL wrote, in every lane the op processes, and no op wrote it since; the op takes each lane's max |h|
from the MATMUL unit instead of scanning for it, with the same results; HEADS ignores it).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from amaranth.hdl import signed
from amaranth.lib import data

from .codes import (ERROR_DOCS, OP_CLASS, Epilogue, ErrorCode, Flag, NormMode, Op, OpClass,  # noqa: F401
                    StoreMode)

DESC_BYTES = 64
PF_LAYOUT = data.StructLayout({"m": 16, "e": signed(16)})


DESC_LAYOUT = data.StructLayout({
    "op": 8, "flags": 8, "mode": 8, "layer": 8,
    "n": 32, "k": 32,
    "heads": 8, "kv_heads": 8, "count": 16,
    "src": 32, "dst": 32, "aux": 32,
    "stride": 32,
    "scale0": PF_LAYOUT, "scale1": PF_LAYOUT,
    "addr0": 32, "addr1": 32, "addr2": 32, "addr3": 32, "addr4": 32,
    "spare": 32,
})
assert DESC_LAYOUT.size == 8 * DESC_BYTES


def ctx_layout(addr_width: int = 40) -> data.StructLayout:
    """What every unit gets beside its descriptor: the running block and the DDR base."""
    return data.StructLayout({
        "T": 5,  # tokens in this block, 1..B
        "pos0": 32,  # position of the block's first token
        "tok0": 32,  # index of the block's first token within the call (TOKENS array)
        "last_block": 1,
        "ddr_base": addr_width,  # DDR_BASE register: every descriptor address is an offset from it
        "tokens": 32,  # TOKENS register: offset of the call's u32 token ids
    })


@dataclass
class Descriptor:
    """Host-side view of one descriptor (field names as in :data:`DESC_LAYOUT`; pf scales as (m, e))."""

    op: int
    flags: int = 0
    mode: int = 0
    layer: int = 0
    n: int = 0
    k: int = 0
    heads: int = 0
    kv_heads: int = 0
    count: int = 0
    src: int = 0
    dst: int = 0
    aux: int = 0
    stride: int = 0
    scale0: tuple[int, int] = (0, 0)
    scale1: tuple[int, int] = (0, 0)
    addr0: int = 0
    addr1: int = 0
    addr2: int = 0
    addr3: int = 0
    addr4: int = 0
    spare: int = 0
    note: str = field(default="", compare=False)  # what the compiler emitted it for (not packed)

    def pack(self) -> bytes:
        word = 0
        for f in fields(self):
            if f.name == "note":
                continue
            v = getattr(self, f.name)
            fld = DESC_LAYOUT[f.name]
            if f.name.startswith("scale"):
                m, e = (int(x) for x in v)
                if not 0 <= m < 1 << 16 or not -(1 << 15) <= e < 1 << 15:
                    raise ValueError(f"descriptor {self.note or Op(self.op).name}: {f.name} {v} is not a pf")
                v = m | (e & 0xFFFF) << 16
            else:
                v = int(v)
                if not 0 <= v < 1 << fld.width:
                    raise ValueError(f"descriptor {self.note or Op(self.op).name}: {f.name} = {v} does not fit "
                                     f"{fld.width} bits")
            word |= v << fld.offset
        return word.to_bytes(DESC_BYTES, "little")

    @classmethod
    def unpack(cls, raw: bytes) -> "Descriptor":
        word = int.from_bytes(raw[:DESC_BYTES], "little")
        kw = {}
        for f in fields(cls):
            if f.name == "note":
                continue
            fld = DESC_LAYOUT[f.name]
            v = (word >> fld.offset) & ((1 << fld.width) - 1)
            if f.name.startswith("scale"):
                e = v >> 16
                v = (v & 0xFFFF, e - (1 << 16) if e >> 15 else e)
            kw[f.name] = v
        return cls(**kw)


def pack_program(descs: list[Descriptor]) -> bytes:
    return b"".join(d.pack() for d in descs)
