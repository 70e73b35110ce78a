"""The program compiler: a model image -> the descriptor program the accelerator's sequencer runs.

Compiled once per model at load. The program covers one block of up to B tokens (the sequencer runs it
once per block of a call) and names every address: image tensors and KV cache as DDR offsets
(host/ddr.py), activations as VMEM words (rtl/vmem_plan.py). It never depends on the tokens or the
position, which the host writes per call.

Per block (docs/accelerator.md has the same list):

    EMBED
    per layer: NORM_QUANT(RMS attn_norm) -> MATMUL q, k, v [-> BIAS q, k, v] -> ROPE q, k
               -> NORM_QUANT(HEADS) q, k, v -> KV_WRITE k, v -> ATTN
               -> NORM_QUANT(ABSMAX, or RMS attn_sub_norm) -> MATMUL o (+residual)
               -> NORM_QUANT(RMS mlp_norm) -> MATMUL gate (act) -> MATMUL up (gate)
               -> NORM_QUANT(ABSMAX, or RMS mlp_sub_norm) -> MATMUL down (+residual)
    last block only: NORM_QUANT(RMS final_norm, last token) -> MATMUL head (raw, top-K) -> HEAD
    END

Flag.PRESCANNED goes on every NORM_QUANT that reads exactly what the MATMUL before it wrote
(:func:`mark_prescanned`: the residual stream after o / down, the FFN activation after up), so the unit
takes each lane's max |h| from the MATMUL unit instead of scanning for it.

Tracing: ``trace`` names golden-model intermediates (docs/numerics.md "Trace names"); after the op that
produces one, the compiler adds a STORE that copies it from VMEM to the scratch area. The compute ops are
the same with and without tracing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ternfpga.quant.errors import TernError
from ternfpga.rtl.accel_params import AccelParams
from ternfpga.rtl.control.isa import (DESC_BYTES, Descriptor, Epilogue, Flag, NormMode, Op, StoreMode,
                                      pack_program)
from ternfpga.rtl.vmem_plan import VmemPlan, vmem_plan
from ternfpga.sim.golden.attention import logit_constant
from ternfpga.sim.numerics import pf
from ternfpga.sim.numerics.spec import NUMERICS_VERSION

from .ddr import DdrLayout

# golden trace names the program can copy out (the others exist only inside a unit, or are fused away:
# the raw sums *.acc, gate.out / up.out (folded into act), o.out / down.out (added into the residual),
# attn.logits / attn.probs and head.*.scores)
_LAYER_TRACES = ("attn_in.q8", "attn_in.scale", "q.out", "k.out", "v.out", "attn.q8", "attn.q_scale",
                 "attn.k8", "attn.k_scale", "attn.v8", "attn.v_scale", "attn.out", "o_in.q8", "residual_mid",
                 "mlp_in.q8", "act", "down_in.q8", "residual")
_GLOBAL_TRACES = ("embed", "final.q8", "final.scale")


# ops that write no VMEM word (they read it and write DDR): the only ones allowed between a MATMUL and
# the NORM_QUANT that takes its per-lane max
_NO_VMEM_WRITE = frozenset({Op.STORE, Op.KV_WRITE, Op.HEAD})


def mark_prescanned(descs: list[Descriptor]) -> None:
    """Set Flag.PRESCANNED on each NORM_QUANT (RMS or ABSMAX) whose source ``[src, src + n)`` is exactly
    the range the most recent MATMUL wrote (``dst``, ``n`` rows, every token lane), when only ops that
    write no VMEM lie between them and the MATMUL runs whenever the NORM_QUANT does (LAST_BLOCK). Any
    other op in between, the NORM_QUANT itself included, ends the MATMUL's claim. Conservative: a flag
    where it does not hold would be a silent numerics error (sim/isa_model.py asserts it)."""
    last = None  # the most recent MATMUL, while nothing after it wrote VMEM
    for d in descs:
        op = Op(d.op)
        if op == Op.MATMUL:
            last = None if d.mode == Epilogue.TOPK else d
        elif op == Op.NORM_QUANT:
            if (last is not None and d.mode in (NormMode.RMS, NormMode.ABSMAX) and d.src == last.dst
                    and d.n == last.n and (d.flags & Flag.LAST_BLOCK or not last.flags & Flag.LAST_BLOCK)):
                d.flags = int(d.flags | Flag.PRESCANNED)
            last = None
        elif op not in _NO_VMEM_WRITE:
            last = None


def traceable(layers: int) -> list[str]:
    return list(_GLOBAL_TRACES[:1]) + [f"layers.{i}.{n}" for i in range(layers) for n in _LAYER_TRACES] + \
        list(_GLOBAL_TRACES[1:])


@dataclass(frozen=True)
class TraceSlot:
    """Where a traced intermediate lands: token t's row at ``offset + t * stride`` (t counts the tokens
    of the call), ``n`` elements of ``dtype`` ("i8", "i32" FX, or "pf" words)."""

    name: str
    offset: int
    n: int
    dtype: str
    stride: int
    last_token_only: bool = False


@dataclass
class Program:
    descs: list[Descriptor]
    layout: DdrLayout
    vmem: VmemPlan
    traces: dict[str, TraceSlot] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return pack_program(self.descs)

    @property
    def nbytes(self) -> int:
        return DESC_BYTES * len(self.descs)

    def listing(self) -> str:
        """One line per descriptor (for reports and debugging)."""
        return "\n".join(f"{i:4d} {Op(d.op).name:<10} {d.note}" for i, d in enumerate(self.descs))


def device_ctx(image, params: AccelParams) -> int:
    """Positions the device holds: the image's RoPE table length, capped by the generated maximum."""
    return min(int(image.header["quant"]["max_ctx"]), params.max_ctx)


def check_image(image, params: AccelParams) -> None:
    """Refuse an image this accelerator cannot run (numerics, trit layout, dims, scale kind)."""
    cfg = image.config
    nv = image.header.get("numerics", {}).get("version")
    if nv != NUMERICS_VERSION:
        raise TernError(f"the image uses numerics version {nv}, the accelerator implements {NUMERICS_VERSION}",
                        "re-create the image with this version's `ternfpga quantize`")
    lay = params.engine.layout
    if image.layout != lay:
        raise TernError(f"the image's trit layout {image.layout.to_dict()} differs from the accelerator's "
                        f"{lay.to_dict()}", "re-quantize for this accelerator's ports/lanes/beat")
    params.check_model(cfg, int(image.header["quant"]["head_k"]))
    for i in range(cfg.layers):
        for n in ("q", "k", "v", "o", "gate", "up", "down"):
            if int(np.prod(image.info(f"layers.{i}.{n}.scale")["shape"])) != 1:
                raise TernError("the image has per-channel weight scales, the accelerator applies one scale per "
                                "tensor", "re-quantize with `ternfpga quantize --scale tensor`")


class _Emitter:
    def __init__(self, image, params: AccelParams, layout: DdrLayout | None, trace: set[str]):
        self.img, self.p, self.L = image, params, layout
        self.cfg = image.config
        c = self.cfg
        self.v = vmem_plan(c.hidden, c.ffn, c.heads, c.kv_heads, c.head_dim)
        self.trace_names = trace
        self.descs: list[Descriptor] = []
        self.traces: dict[str, TraceSlot] = {}
        self.scratch_at = 0

    # -- helpers ------------------------------------------------------------------------------
    def off(self, name: str) -> int:
        return self.L.tensor(self.img, name) if self.L else 0

    def emit(self, op: Op, note: str, **kw) -> Descriptor:
        d = Descriptor(op=int(op), note=note, **kw)
        self.descs.append(d)
        return d

    def store(self, name: str, src: int, n: int, dtype: str, flags: int = 0) -> None:
        """Copy a traced intermediate out (only when it was asked for)."""
        if name not in self.trace_names:
            return
        esize = 1 if dtype == "i8" else 4
        stride = -(-n * esize // 16) * 16  # whole beats per token row
        ctx = self.L.ctx if self.L else 1
        offset = (self.L.scratch if self.L else 0) + self.scratch_at
        self.scratch_at += stride * ctx
        self.traces[name] = TraceSlot(name, offset, n, dtype, stride, bool(flags & Flag.LAST_TOKEN))
        self.emit(Op.STORE, f"trace {name}", mode=int(StoreMode.I8 if dtype == "i8" else StoreMode.I32),
                  flags=flags, n=n, src=src, addr0=offset, stride=stride)

    def norm_quant(self, note: str, mode: NormMode, src: int, n: int, norm: str | None, flags: int = 0) -> None:
        kw = {}
        if mode == NormMode.RMS:
            s = self.img.pf(f"{norm}.scale")
            eps = pf.from_float(self.cfg.eps)
            kw = dict(addr0=self.off(f"{norm}.weight"), scale0=(int(s.m.reshape(-1)[0]), int(s.e.reshape(-1)[0])),
                      scale1=(int(eps.m), int(eps.e)))
        self.emit(Op.NORM_QUANT, note, mode=int(mode), flags=flags, n=n, src=src, dst=self.v.x8,
                  aux=self.v.x_scale, **kw)

    def matmul(self, note: str, tensor: str, rows: int, cols: int, epilogue: Epilogue, dst: int,
               flags: int = 0, count: int = 0, layer: int = 0) -> None:
        lay = self.p.engine.layout
        r_pad, c_pad = lay.padded(rows, cols)
        s = self.img.pf(tensor.replace(".trits", ".scale"))
        scale = (1 << 15, -15) if flags & Flag.RAW else (int(s.m.reshape(-1)[0]), int(s.e.reshape(-1)[0]))
        self.emit(Op.MATMUL, note, mode=int(epilogue), flags=flags, layer=layer, n=rows,
                  k=c_pad // lay.trits_per_lane, aux=r_pad // lay.row_block, count=count,
                  stride=lay.port_region_bytes(rows, cols), addr0=self.off(tensor), scale0=scale, dst=dst)

    # -- the program --------------------------------------------------------------------------
    def build(self) -> None:
        c, v = self.cfg, self.v
        d, H, KVH = c.head_dim, c.heads, c.kv_heads
        self.emit(Op.EMBED, "embed", n=c.hidden, k=c.vocab, dst=v.h, addr0=self.off("embed.int8"),
                  addr1=self.off("embed.scale"))
        self.store("embed", v.h, c.hidden, "i32")
        C = logit_constant(d)
        for i in range(c.layers):
            p = f"layers.{i}"
            kv = self.L.kv_layer(i) if self.L else None
            self.norm_quant(f"{p} attn_norm", NormMode.RMS, v.h, c.hidden, f"{p}.attn_norm")
            self.store(f"{p}.attn_in.q8", v.x8, c.hidden, "i8")
            self.store(f"{p}.attn_in.scale", v.x_scale, 1, "pf")
            for name, rows, dst in (("q", c.q_dim, v.q), ("k", c.kv_dim, v.k), ("v", c.kv_dim, v.v)):
                self.matmul(f"{p} {name}_proj", f"{p}.{name}.trits", rows, c.hidden, Epilogue.STORE, dst, layer=i)
            for name, rows, dst in (("q", c.q_dim, v.q), ("k", c.kv_dim, v.k), ("v", c.kv_dim, v.v)):
                if c.qkv_bias:
                    self.emit(Op.BIAS, f"{p} {name} bias", layer=i, n=rows, src=dst, dst=dst,
                              addr0=self.off(f"{p}.{name}.bias"))
                self.store(f"{p}.{name}.out", dst, rows, "i32")
            for name, heads, dst in (("q", H, v.q), ("k", KVH, v.k)):
                self.emit(Op.ROPE, f"{p} rope {name}", layer=i, heads=heads, k=d, src=dst, dst=dst,
                          addr0=self.off("rope.cos"), addr1=self.off("rope.sin"))
            for name, heads, dst, sc in (("q", H, v.q, v.q_scale), ("k", KVH, v.k, v.k_scale),
                                         ("v", KVH, v.v, v.v_scale)):
                self.emit(Op.NORM_QUANT, f"{p} quant {name} heads", mode=int(NormMode.HEADS), layer=i,
                          n=heads * d, k=d, src=dst, dst=dst, aux=sc)
                self.store(f"{p}.attn.{name}8", dst, heads * d, "i8")
                self.store(f"{p}.attn.{name}_scale", sc, heads, "pf")
            for name, src, sc, rows_off, sc_off in (("k", v.k, v.k_scale, kv and kv.k_rows, kv and kv.k_scales),
                                                    ("v", v.v, v.v_scale, kv and kv.v_rows, kv and kv.v_scales)):
                self.emit(Op.KV_WRITE, f"{p} kv write {name}", layer=i, kv_heads=KVH, k=d, src=src, aux=sc,
                          stride=self.L.ctx if self.L else 0, addr0=rows_off or 0, addr1=sc_off or 0)
            self.emit(Op.ATTN, f"{p} attention", layer=i, heads=H, kv_heads=KVH, k=d, src=v.q, aux=v.q_scale,
                      dst=v.att, stride=self.L.ctx if self.L else 0, scale0=(int(C.m), int(C.e)),
                      addr0=kv.k_rows if kv else 0, addr1=kv.v_rows if kv else 0,
                      addr2=kv.k_scales if kv else 0, addr3=kv.v_scales if kv else 0)
            self.store(f"{p}.attn.out", v.att, c.q_dim, "i32")
            if c.sub_norms:
                self.norm_quant(f"{p} attn_sub_norm", NormMode.RMS, v.att, c.q_dim, f"{p}.attn_sub_norm")
            else:
                self.norm_quant(f"{p} o input", NormMode.ABSMAX, v.att, c.q_dim, None)
            self.store(f"{p}.o_in.q8", v.x8, c.q_dim, "i8")
            self.matmul(f"{p} o_proj", f"{p}.o.trits", c.hidden, c.q_dim, Epilogue.RESIDUAL, v.h, layer=i)
            self.store(f"{p}.residual_mid", v.h, c.hidden, "i32")
            self.norm_quant(f"{p} mlp_norm", NormMode.RMS, v.h, c.hidden, f"{p}.mlp_norm")
            self.store(f"{p}.mlp_in.q8", v.x8, c.hidden, "i8")
            act = Epilogue.SILU if c.act == "silu" else Epilogue.RELU2
            self.matmul(f"{p} gate_proj", f"{p}.gate.trits", c.ffn, c.hidden, act, v.act, layer=i)
            self.matmul(f"{p} up_proj", f"{p}.up.trits", c.ffn, c.hidden, Epilogue.GATE, v.act, layer=i)
            self.store(f"{p}.act", v.act, c.ffn, "i32")
            if c.sub_norms:
                self.norm_quant(f"{p} ffn_sub_norm", NormMode.RMS, v.act, c.ffn, f"{p}.mlp_sub_norm")
            else:
                self.norm_quant(f"{p} down input", NormMode.ABSMAX, v.act, c.ffn, None)
            self.store(f"{p}.down_in.q8", v.x8, c.ffn, "i8")
            self.matmul(f"{p} down_proj", f"{p}.down.trits", c.hidden, c.ffn, Epilogue.RESIDUAL, v.h, layer=i)
            self.store(f"{p}.residual", v.h, c.hidden, "i32")
        last = int(Flag.LAST_TOKEN | Flag.LAST_BLOCK)
        self.norm_quant("final_norm", NormMode.RMS, v.h, c.hidden, "final_norm", flags=last)
        self.store("final.q8", v.x8, c.hidden, "i8", flags=last)
        self.store("final.scale", v.x_scale, 1, "pf", flags=last)
        head_k = min(int(self.img.header["quant"]["head_k"]), c.vocab)
        self.matmul("head scores", "head.trits", c.vocab, c.hidden, Epilogue.TOPK, 0,
                    flags=int(Flag.RAW | Flag.LAST_BLOCK), count=head_k)
        self.emit(Op.HEAD, "head rescoring", flags=int(Flag.LAST_BLOCK), n=c.hidden, count=head_k, src=v.x8,
                  aux=v.x_scale, addr0=self.off("head.int8"), addr1=self.off("head.int8_scale"),
                  addr2=self.L.results if self.L else 0)
        self.emit(Op.END, "end of block")
        mark_prescanned(self.descs)


def compile_program(image, params: AccelParams, trace=(), image_bytes: int | None = None) -> Program:
    """Compile ``image`` for an accelerator generated with ``params``. ``trace``: golden trace names (or
    regular expressions matched against :func:`traceable`) to copy out to the scratch area."""
    check_image(image, params)
    cfg = image.config
    names = traceable(cfg.layers)
    wanted: set[str] = set()
    for t in trace:
        hits = [n for n in names if n == t] or [n for n in names if re.fullmatch(t, n)]
        if not hits:
            raise TernError(f"'{t}' is not a traceable intermediate", f"choose from {', '.join(names[:6])} ...")
        wanted.update(hits)
    dry = _Emitter(image, params, None, wanted)
    dry.build()
    if image_bytes is None:
        image_bytes = image.path.stat().st_size
    ctx = device_ctx(image, params)
    # trace rows: every traced tensor holds up to ctx tokens (a whole call)
    layout = DdrLayout.plan(image_bytes=image_bytes, layers=cfg.layers, kv_heads=cfg.kv_heads,
                            head_dim=cfg.head_dim, ctx=ctx, head_k=min(int(image.header["quant"]["head_k"]), cfg.vocab),
                            max_descriptors=len(dry.descs), scratch_bytes=dry.scratch_at * ctx)
    em = _Emitter(image, params, layout, wanted)
    em.build()
    assert len(em.descs) == len(dry.descs)
    if em.v.total > params.vmem_words:
        raise TernError(f"the model's activations need {em.v.total} VMEM words, the accelerator has "
                        f"{params.vmem_words}", "regenerate the accelerator with larger maxima")
    return Program(em.descs, layout, em.v, em.traces)
