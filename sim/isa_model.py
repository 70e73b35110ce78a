"""The accelerator at the level of its instruction set: a numpy interpreter of descriptor programs
(rtl/control/isa.py) over a DDR byte buffer and a VMEM, each op computed with the golden functions.

It states what every op does to DDR and VMEM, so it checks the program compiler and the DDR layout
against the golden model (without any RTL), and it is the per-op reference when a whole-accelerator
simulation disagrees with the golden model: run both, compare VMEM and DDR after each op.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ternfpga.quant.layout import TritLayout
from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.control.isa import (DESC_BYTES, Descriptor, Epilogue, ErrorCode, Flag, NormMode, Op,
                                      StoreMode)

from .golden import head as headmod
from .golden.attention import attend
from .golden.matvec import requant_rows, ternary_acc
from .numerics import pf
from .numerics.fixed import gated_act, norm_quant, quantize_absmax, requant, rope, sat32
from .numerics.pf import PF
from .numerics.spec import FX_FRAC, FX_ONE_LSB


def pf_word(s: PF) -> np.ndarray:
    """pf -> its 32-bit DDR/VMEM word (m | e << 16), as int64 with the sign of e in bit 31."""
    m, e = np.asarray(s.m, np.int64), np.asarray(s.e, np.int64)
    w = m | ((e & 0xFFFF) << 16)
    return np.where(w >> 31, w - (1 << 32), w)


def word_pf(w) -> PF:
    w = np.asarray(w, np.int64) & 0xFFFF_FFFF
    e = w >> 16
    return PF(w & 0xFFFF, np.where(e >> 15, e - (1 << 16), e))


def lane_absmax(h) -> tuple[int, bool]:
    """What the MATMUL unit keeps per token lane for Flag.PRESCANNED, of the words ``h`` it wrote: max |h|
    and whether a word h >= 0 reached it ((0, False) for none)."""
    h = np.asarray(h, np.int64)
    if not h.size:
        return 0, False
    m = int(np.abs(h).max())
    return m, bool((h == m).any())


class DeviceError(Exception):
    def __init__(self, code: ErrorCode, addr: int, desc_index: int):
        super().__init__(f"{code.name} at {addr:#x} (descriptor {desc_index})")
        self.code, self.addr, self.desc_index = code, addr, desc_index


@dataclass
class Ctx:
    T: int
    pos0: int
    tok0: int
    last_block: bool


class IsaModel:
    """``ddr``: the DDR buffer (bytearray, offsets as in host/ddr.py); runs programs like the sequencer."""

    def __init__(self, params: AccelParams, ddr: bytearray):
        self.p = params
        self.B = params.batch
        self.ddr = ddr
        self.vmem = np.zeros((params.vmem_words, self.B), np.int64)
        tpl = params.engine.trits_per_lane
        self.tpl = tpl
        self.x8 = np.zeros((self.B, params.engine.max_chunks * tpl), np.int64)  # the engine's input lanes
        self.x_scale = PF(np.zeros(self.B, np.int64), np.zeros(self.B, np.int64))
        self.topk_rows = np.zeros(0, np.int64)
        self.layout = params.engine.layout
        self.ops_run = 0
        # Flag.PRESCANNED's precondition: which op last wrote each VMEM word (any lane), and the most
        # recent MATMUL (op number, dst, rows written, token lanes)
        self.op_number = 0
        self.vmem_writer = np.full(params.vmem_words, -1, np.int64)
        self.last_matmul: tuple[int, int, int, int] | None = None

    # -- DDR access ---------------------------------------------------------------------------
    def _bytes(self, off: int, n: int) -> np.ndarray:
        if off < 0 or off + n > len(self.ddr):
            raise DeviceError(ErrorCode.AXI_READ, off, -1)
        return np.frombuffer(self.ddr, np.uint8, n, off)

    def _array(self, off: int, n: int, dtype) -> np.ndarray:
        dt = np.dtype(dtype).newbyteorder("<")
        return self._bytes(off, n * dt.itemsize).view(dt).astype(np.int64)

    def _write(self, off: int, data: bytes) -> None:
        if off < 0 or off + len(data) > len(self.ddr):
            raise DeviceError(ErrorCode.AXI_WRITE, off, -1)
        self.ddr[off:off + len(data)] = data

    # -- a call -------------------------------------------------------------------------------
    def run(self, program: int, program_size: int, tokens: int, position: int, count: int,
            on_op=None) -> None:
        """One call: ``count`` tokens (u32 ids at ``tokens``) from ``position``. ``on_op(index, desc,
        ctx)`` is called after every executed op."""
        if count < 1:
            raise DeviceError(ErrorCode.BAD_CALL, 0, 0)
        self.tokens_off = tokens
        for blk in range(0, count, self.B):
            ctx = Ctx(T=min(self.B, count - blk), pos0=position + blk, tok0=blk, last_block=blk + self.B >= count)
            i = 0
            while True:
                off = program + i * DESC_BYTES
                if off + DESC_BYTES > program + program_size:
                    raise DeviceError(ErrorCode.PROGRAM_BOUNDS, off, i)
                d = Descriptor.unpack(bytes(self._bytes(off, DESC_BYTES)))
                if d.op == Op.END:
                    break
                if d.op not in Op.__members__.values():
                    raise DeviceError(ErrorCode.BAD_OPCODE, off, i)
                if not (d.flags & Flag.LAST_BLOCK and not ctx.last_block):
                    try:
                        self.execute(d, ctx)
                    except DeviceError as e:
                        raise DeviceError(e.code, e.addr, i) from None
                    self.ops_run += 1
                    if on_op:
                        on_op(i, d, ctx)
                i += 1

    def tokens_of(self, d: Descriptor, ctx: Ctx) -> range:
        return range(ctx.T - 1, ctx.T) if d.flags & Flag.LAST_TOKEN else range(ctx.T)

    # -- ops ----------------------------------------------------------------------------------
    def execute(self, d: Descriptor, ctx: Ctx) -> None:
        self.op_number += 1
        getattr(self, f"op_{Op(d.op).name.lower()}")(d, ctx)

    def _wrote(self, lo: int, n: int) -> None:
        """Each op reports its VMEM writes here: words lo .. lo + n - 1 (in any lane)."""
        self.vmem_writer[lo:lo + n] = self.op_number

    def _check_prescanned(self, d: Descriptor, ctx: Ctx) -> None:
        """Flag.PRESCANNED is only valid on a vector the most recent MATMUL wrote in full, in every lane
        the op processes, and no op wrote since (the unit takes that MATMUL's per-lane max |h|)."""
        mm = self.last_matmul
        lanes = self.tokens_of(d, ctx)
        ok = (mm is not None and mm[1] == d.src and mm[2] == d.n and lanes[-1] < mm[3]
              and bool((self.vmem_writer[d.src:d.src + d.n] == mm[0]).all()))
        if not ok:
            raise AssertionError(f"NORM_QUANT {d.note or ''} flagged PRESCANNED, but VMEM {d.src}..{d.src + d.n - 1}"
                                 f" is not what the most recent MATMUL ({mm}) wrote, untouched since")

    def op_embed(self, d: Descriptor, ctx: Ctx) -> None:
        for t in self.tokens_of(d, ctx):
            tok_off = self.tokens_off + 4 * (ctx.tok0 + t)
            tid = int(self._array(tok_off, 1, np.uint32)[0])
            if tid >= d.k:
                raise DeviceError(ErrorCode.BAD_TOKEN, tok_off, -1)
            row = self._array(d.addr0 + tid * d.n, d.n, np.int8)
            s = word_pf(self._array(d.addr1 + 4 * tid, 1, np.uint32)[0])
            self.vmem[d.dst:d.dst + d.n, t] = requant(row, s)
            self._wrote(d.dst, d.n)

    def op_norm_quant(self, d: Descriptor, ctx: Ctx) -> None:
        n = d.n
        if d.flags & Flag.PRESCANNED and d.mode != NormMode.HEADS:  # same results; HEADS ignores it
            self._check_prescanned(d, ctx)
        for t in self.tokens_of(d, ctx):
            h = self.vmem[d.src:d.src + n, t]
            mode = NormMode(d.mode)
            if mode == NormMode.HEADS:
                q, s = quantize_absmax(h.reshape(n // d.k, d.k), FX_ONE_LSB)
                self.vmem[d.dst:d.dst + n, t] = q.reshape(-1)
                self.vmem[d.aux:d.aux + n // d.k, t] = pf_word(s)
                self._wrote(d.dst, n)
                self._wrote(d.aux, n // d.k)
                continue
            if mode == NormMode.RMS:
                g = self._array(d.addr0, n, np.int16)
                q, s = norm_quant(h, g, PF(np.int64(d.scale0[0]), np.int64(d.scale0[1])),
                                  PF(np.int64(d.scale1[0]), np.int64(d.scale1[1])))
            else:
                q, s = quantize_absmax(h, FX_ONE_LSB)
            self.x8[t, :n] = q
            self.x8[t, n:-(-n // self.tpl) * self.tpl] = 0  # the last column chunk is padded with zeros
            self.x_scale.m[t], self.x_scale.e[t] = s.m, s.e
            self.vmem[d.dst:d.dst + n, t] = q
            self.vmem[d.aux, t] = pf_word(s)
            self._wrote(d.dst, n)
            self._wrote(d.aux, 1)

    def op_matmul(self, d: Descriptor, ctx: Ctx) -> None:
        lay = self.layout
        rows, cols = d.n, d.k * lay.trits_per_lane
        region = lay.port_region_bytes(rows, cols)
        if region != d.stride:
            raise AssertionError(f"port stride {d.stride} != {region} for a {rows}x{cols} matrix")
        w = lay.unpack(self._bytes(d.addr0, lay.packed_bytes(rows, cols)).copy(), rows, cols)
        T = ctx.T
        acc = ternary_acc(w, self.x8[:T, :cols])  # [T, rows]
        if d.flags & Flag.RAW:
            y = acc
        else:
            y = requant_rows(acc, PF(np.array([d.scale0[0]]), np.array([d.scale0[1]])),
                             PF(self.x_scale.m[:T], self.x_scale.e[:T]))
        mode = Epilogue(d.mode)
        dst = self.vmem[d.dst:d.dst + rows, :T]  # view [rows, T]
        if mode == Epilogue.STORE:
            dst[:] = y.T
        elif mode == Epilogue.RESIDUAL:
            dst[:] = sat32(dst + y.T)
        elif mode in (Epilogue.SILU, Epilogue.RELU2):
            # act(gate) alone: gated_act with up = 1.0 (2**16) is exactly act(gate), the product is exact
            dst[:] = gated_act(y.T, np.int64(1) << FX_FRAC, "silu" if mode == Epilogue.SILU else "relu2")
        elif mode == Epilogue.GATE:
            dst[:] = sat32(pf.rshift_round(dst * y.T, FX_FRAC))
        elif mode == Epilogue.TOPK:
            self.topk_rows = headmod.top_k_indices(acc[T - 1], d.count)
            self.topk_scores = acc[T - 1]
        written = 0 if mode == Epilogue.TOPK else rows
        self._wrote(d.dst, written)
        self.last_matmul = (self.op_number, d.dst, written, T)

    def op_bias(self, d: Descriptor, ctx: Ctx) -> None:
        b = self._array(d.addr0, d.n, np.int32)
        for t in self.tokens_of(d, ctx):
            self.vmem[d.dst:d.dst + d.n, t] = sat32(self.vmem[d.src:d.src + d.n, t] + b)
            self._wrote(d.dst, d.n)

    def op_rope(self, d: Descriptor, ctx: Ctx) -> None:
        half = d.k // 2
        for t in self.tokens_of(d, ctx):
            pos = ctx.pos0 + t
            cos = self._array(d.addr0 + pos * d.k, half, np.int16)
            sin = self._array(d.addr1 + pos * d.k, half, np.int16)
            x = self.vmem[d.src:d.src + d.heads * d.k, t].reshape(d.heads, d.k)
            self.vmem[d.dst:d.dst + d.heads * d.k, t] = rope(x, cos, sin).reshape(-1)
            self._wrote(d.dst, d.heads * d.k)

    def op_kv_write(self, d: Descriptor, ctx: Ctx) -> None:
        for t in self.tokens_of(d, ctx):
            pos = ctx.pos0 + t
            for h in range(d.kv_heads):
                row = self.vmem[d.src + h * d.k:d.src + (h + 1) * d.k, t].astype(np.int8)
                slot = h * d.stride + pos
                self._write(d.addr0 + slot * d.k, row.tobytes())
                word = int(self.vmem[d.aux + h, t]) & 0xFFFF_FFFF
                self._write(d.addr1 + 4 * slot, word.to_bytes(4, "little"))

    def op_attn(self, d: Descriptor, ctx: Ctx) -> None:
        H, KVH, dh, S = d.heads, d.kv_heads, d.k, d.stride
        T = ctx.T
        N = ctx.pos0 + T
        q8 = self.vmem[d.src:d.src + H * dh, :T].T.reshape(T, H, dh)
        qs = word_pf(self.vmem[d.aux:d.aux + H, :T].T)  # [T, H]
        k8 = np.stack([self._array(d.addr0 + h * S * dh, N * dh, np.int8).reshape(N, dh) for h in range(KVH)], 1)
        v8 = np.stack([self._array(d.addr1 + h * S * dh, N * dh, np.int8).reshape(N, dh) for h in range(KVH)], 1)
        ks = word_pf(np.stack([self._array(d.addr2 + 4 * h * S, N, np.uint32) for h in range(KVH)], 1))
        vs = word_pf(np.stack([self._array(d.addr3 + 4 * h * S, N, np.uint32) for h in range(KVH)], 1))
        c = PF(np.int64(d.scale0[0]), np.int64(d.scale0[1]))
        out = _attend(q8, qs, k8, ks, v8, vs, ctx.pos0 + np.arange(T), c)
        self.vmem[d.dst:d.dst + H * dh, :T] = out.reshape(T, H * dh).T
        self._wrote(d.dst, H * dh)

    def op_head(self, d: Descriptor, ctx: Ctx) -> None:
        t = ctx.T - 1
        x8 = self.vmem[d.src:d.src + d.n, t]
        xs = word_pf(self.vmem[d.aux, t])
        rows = self.topk_rows
        head8 = np.stack([self._array(d.addr0 + int(r) * d.n, d.n, np.int8) for r in rows])
        hs = word_pf(np.array([self._array(d.addr1 + 4 * int(r), 1, np.uint32)[0] for r in rows]))
        logits = requant(head8 @ x8, pf.mul(hs, xs))
        order = np.lexsort((rows, -logits))
        out = bytearray()
        for r, lg in zip(rows[order], logits[order]):
            out += int(r).to_bytes(4, "little") + (int(lg) & 0xFFFF_FFFF).to_bytes(4, "little")
        self._write(d.addr2, bytes(out))

    def op_store(self, d: Descriptor, ctx: Ctx) -> None:
        for t in self.tokens_of(d, ctx):
            words = self.vmem[d.src:d.src + d.n, t]
            if d.mode == StoreMode.I8:
                data = (words & 0xFF).astype(np.uint8).tobytes()
            else:
                data = (words & 0xFFFF_FFFF).astype("<u4").tobytes()
            self._write(d.addr0 + (ctx.tok0 + t) * d.stride, data)


def _attend(q8, qs, k8, ks, v8, vs, q_pos, c: PF):
    """golden attend with the logit constant taken from the descriptor (checked equal to the golden's)."""
    from .golden.attention import logit_constant

    want = logit_constant(q8.shape[-1])
    if (int(want.m), int(want.e)) != (int(c.m), int(c.e)):
        raise AssertionError(f"descriptor logit constant {c} differs from the golden {want}")
    return attend(q8, qs, k8, ks, v8, vs, q_pos)
