"""The whole accelerator: four 128-bit AXI4 masters (the KV260's S_AXI_HP0..3_FPD), one AXI4-Lite
register slave (M_AXI_HPM0_FPD) and one interrupt.

```
              AXI4-Lite ──▶ RegFile ──▶ Sequencer ──(descriptors from DDR)
                                           │ one op at a time: start / done / error
      ┌──────────┬──────────┬─────────┬────┴────┬─────────┬──────────┬──────────┬─────────┐
    Embed    NormQuant   Matmul     Bias      Rope     KvWrite     Attention    Head     Store
                 │ act, x_scale ──▶ engine ──▶ epilogue ──▶ VMEM │ TOPK ──▶ TopK ──▶ Head
      └────────── VMEM (one read and one write port, multiplexed by the running op) ──────────┘
HP0..HP3: per port an AXI read arbiter (the engine's weight stream + the units placed on that port)
and, on HP3, a write arbiter (KV-cache, shortlist and trace writes).
```

Every output the program asks for is bit for bit what ``sim/golden/model.py`` computes
(docs/accelerator.md; the ISA-level reference is ``sim/isa_model.py``).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .accel_params import AccelParams
from .axi import AxiLiteSignature, AxiSignature
from .axi.arbiter import AxiReadArbiter, AxiWriteArbiter
from .axi.signature import AxiReadSignature, AxiWriteSignature
from .control.isa import Op
from .control.regfile import RegFile
from .control.regmap import REGMAP
from .control.sequencer import Sequencer
from .vmem import Vmem

# unit name -> the ops it runs (the sequencer's unit index is the position in this list)
UNITS: list[tuple[str, tuple[Op, ...]]] = [
    ("embed", (Op.EMBED,)),
    ("norm_quant", (Op.NORM_QUANT,)),
    ("matmul", (Op.MATMUL,)),
    ("bias", (Op.BIAS,)),
    ("rope", (Op.ROPE,)),
    ("kv_write", (Op.KV_WRITE,)),
    ("attention", (Op.ATTN,)),
    ("head", (Op.HEAD,)),
    ("store", (Op.STORE,)),
]

# which HP port carries which read masters (the engine's stream i is always on HP i) and the writers
READ_PORTS: dict[int, list[str]] = {0: ["seq", "embed", "head"], 1: ["attention"], 2: ["norm_quant", "bias", "rope"],
                                    3: []}
WRITE_PORT = 3
WRITERS = ["kv_write", "head", "store"]

TOP_NAME = "tern_accel"


def make_units(p: AccelParams) -> dict[str, wiring.Component]:
    from .attention.op import AttentionOp
    from .head.op import HeadOp
    from .matmul.op import MatmulOp
    from .vector.bias import BiasOp
    from .vector.embed import EmbedOp
    from .vector.kv_write import KvWriteOp
    from .vector.norm_quant import NormQuantOp
    from .vector.rope import RopeOp
    from .vector.store import StoreOp

    return {"embed": EmbedOp(p), "norm_quant": NormQuantOp(p), "matmul": MatmulOp(p), "bias": BiasOp(p),
            "rope": RopeOp(p), "kv_write": KvWriteOp(p), "attention": AttentionOp(p), "head": HeadOp(p),
            "store": StoreOp(p)}


class Accelerator(wiring.Component):
    """The accelerator top for generation parameters ``params``. Ports: ``hp0 .. hp3`` (AXI4 masters,
    Verilog ``hp0__araddr`` ...), ``s_axil`` (AXI4-Lite slave, ``s_axil__awaddr`` ...), ``irq``."""

    def __init__(self, params: AccelParams | None = None):
        self.p = p = params or AccelParams()
        members = {f"hp{i}": Out(AxiSignature(p.addr_width, 128)) for i in range(p.ports)}
        members["s_axil"] = In(AxiLiteSignature(16, 32))
        members["irq"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        from .head.topk import TopK

        m = Module()
        p = self.p
        B, depth = p.batch, p.vmem_words
        units = make_units(p)
        for name, u in units.items():
            m.submodules[name] = u
        m.submodules.seq = seq = Sequencer(batch=B, units=[ops for _, ops in UNITS], addr_width=p.addr_width)
        m.submodules.regs = regs = RegFile(REGMAP, p)
        m.submodules.vmem = vmem = Vmem(B, depth)
        eng = p.engine
        m.submodules.topk = topk = TopK(p.max_head_k, eng.row_width, eng.acc_width)

        # -- registers <-> sequencer --------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.s_axil), regs.bus)
        m.d.comb += [
            seq.start.eq(regs.control_start), seq.abort.eq(regs.control_abort),
            seq.ddr_base.eq(regs.ddr_base), seq.program.eq(regs.program), seq.program_size.eq(regs.program_size),
            seq.tokens.eq(regs.tokens), seq.position.eq(regs.position), seq.count.eq(regs.count),
            regs.status_busy.eq(seq.busy), regs.status_done.eq(seq.done), regs.status_error.eq(seq.error),
            regs.error_code.eq(seq.error_code), regs.error_desc.eq(seq.error_desc),
            regs.error_addr.eq(seq.error_addr),
            regs.irq_status_done.eq(seq.done_event), regs.irq_status_error.eq(seq.error_event),
            regs.ops.eq(seq.cycles_ops),
            self.irq.eq(regs.irq),
        ]
        for c in ("total", "matmul", "attention", "vector", "head", "memstall"):
            m.d.comb += getattr(regs, f"cycles_{c}").eq(getattr(seq, f"cycles_{c}"))

        # -- sequencer <-> units ------------------------------------------------------------------
        active = {}
        for i, (name, _) in enumerate(UNITS):
            u = units[name]
            active[name] = seq.active[i]
            m.d.comb += [u.start.eq(seq.unit_start[i]), u.desc.eq(seq.desc), u.ctx.eq(seq.ctx),
                         seq.unit_done[i].eq(u.done), seq.unit_stall[i].eq(u.stall),
                         seq.unit_error[i].eq(u.error), seq.unit_error_addr[i].eq(u.error_addr)]

        # -- VMEM: the running op's unit owns both ports --------------------------------------------
        readers = [n for n in units if "vr" in units[n].signature.members]
        writers = [n for n in units if "vw" in units[n].signature.members]
        for name in readers:
            m.d.comb += units[name].vr.data.eq(vmem.r.data)
        m.d.comb += [vmem.r.addr.eq(_select(active, units, readers, "vr", "addr")),
                     vmem.r.en.eq(_select(active, units, readers, "vr", "en")),
                     vmem.w.addr.eq(_select(active, units, writers, "vw", "addr")),
                     vmem.w.en.eq(_select(active, units, writers, "vw", "en")),
                     vmem.w.data.eq(_select(active, units, writers, "vw", "data"))]

        # -- the engine's input and the head's top-K ------------------------------------------------
        nq, mm, hd = units["norm_quant"], units["matmul"], units["head"]
        wiring.connect(m, nq.act, mm.act)
        m.d.comb += [mm.xs_we.eq(nq.xs_we), mm.xs_lane.eq(nq.xs_lane), mm.xs_value.eq(nq.xs_value)]
        # Flag.PRESCANNED: the max |h| per lane of what the last MATMUL wrote
        m.d.comb += [nq.lane_absmax.eq(mm.lane_absmax), nq.lane_absmax_pos.eq(mm.lane_absmax_pos)]
        wiring.connect(m, mm.topk, topk.inp)
        m.d.comb += [topk.clear.eq(mm.topk_clear), topk.k.eq(mm.topk_k), mm.topk_idle.eq(topk.idle),
                     topk.rd_addr.eq(hd.cand_addr), hd.cand_data.eq(topk.rd_data), hd.cand_count.eq(topk.count)]

        # -- AXI: a read arbiter per HP port, the writers on one port ------------------------------
        masters = {"seq": seq.axi, **{n: u.axi for n, u in units.items() if "axi" in u.signature.members}}
        for i in range(p.ports):
            port = getattr(self, f"hp{i}")
            clients = [getattr(mm, f"axi{i}")] + [masters[n] for n in READ_PORTS.get(i, [])]
            arb = AxiReadArbiter(len(clients), addr_width=p.addr_width, data_width=128)
            m.submodules[f"rd_arb{i}"] = arb
            for k, c in enumerate(clients):
                wiring.connect(m, c, getattr(arb, f"m{k}"))
            _connect_part(m, arb.s, port, AxiReadSignature(p.addr_width, 128))
            if i == WRITE_PORT:
                warb = AxiWriteArbiter(len(WRITERS), addr_width=p.addr_width, data_width=128)
                m.submodules.wr_arb = warb
                for k, n in enumerate(WRITERS):
                    wiring.connect(m, units[n].axiw, getattr(warb, f"m{k}"))
                _connect_part(m, warb.s, port, AxiWriteSignature(p.addr_width, 128))
            else:
                m.d.comb += [port.awvalid.eq(0), port.wvalid.eq(0), port.bready.eq(1)]
        return m


def _select(active: dict, units: dict, names: list[str], port: str, member: str):
    """AND-OR multiplexer: the member of the running unit's port (units drive anything while idle)."""
    out = 0
    for n in names:
        sig = getattr(getattr(units[n], port), member)
        out = out | Mux(active[n], sig, 0)
    return out


def _connect_part(m: Module, src, port, sig: wiring.Signature) -> None:
    """Drive the members of ``sig`` (a subset of the AXI4 port ``port``) from the master-side ``src``."""
    for name, member in sig.members.items():
        if member.flow == Out:
            m.d.comb += getattr(port, name).eq(getattr(src, name))
        else:
            m.d.comb += getattr(src, name).eq(getattr(port, name))
