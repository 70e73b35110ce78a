"""The ATTN op's chunks: which (query head, token) pairs share a K/V pass, their queries loaded, their
DDR reads requested.

KV head by KV head, the pairs (h, t) of its ``G`` query heads (h-major) go to lanes, up to ``lanes`` per
chunk. For each chunk this block: waits until the query store is free (``q_free``: the previous chunk's
K pass is over), requests its reads from the AXI reader in stream order (the KV head's K and V scales
with its first chunk, then the chunk's K rows and V rows, each one run, for the keys ``0 .. pos0 + T - 1``
of the block's last token), hands every lane's query to :class:`~.load.QueryLoad`, waits for the load,
and offers the chunk (``chunk_valid`` with ``chunk``) until ``take``. The reads go out before the load,
so DDR latency and the scale stream hide behind it. ``finished``: every chunk was offered
and taken. So the next chunk's queries load while one chunk's V pass and output run.

DDR addresses of KV head ``kh``: rows at ``base + kh S d``, scales at ``base + 4 kh S`` (running sums).
"""
from __future__ import annotations

from amaranth.hdl import C, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..axi.reader import cmd_layout


def chunk_layout(lanes: int, batch: int, max_ctx: int, vmem_depth: int) -> data.StructLayout:
    return data.StructLayout({
        "valid": lanes,  # the lane holds a pair
        "t": data.ArrayLayout(range(max(batch, 2)), lanes),  # token lane
        "pos": data.ArrayLayout(range(max_ctx), lanes),  # its position
        "obase": data.ArrayLayout(range(max(vmem_depth, 2)), lanes),  # VMEM address of its output row
        "n": range(lanes + 1),  # lanes in use: 0 .. n - 1
        "nkeys": range(max_ctx + 1),  # keys 0 .. nkeys - 1 (those of the block's last token)
        "scales": 1,  # the KV head's first chunk: its scales come first in the stream
        "k_off": 2,  # word offsets of the KV head's scale arrays in their first beat
        "v_off": 2,
    })


class ChunkPlanner(wiring.Component):
    def __init__(self, *, lanes: int, batch: int, max_ctx: int, vmem_depth: int, max_heads: int,
                 max_head_dim: int, addr_width: int, len_width: int):
        if min(lanes, batch, max_ctx, vmem_depth, max_heads) < 1 or max_head_dim < 16:
            raise ValueError("ChunkPlanner needs lanes, batch, max_ctx, vmem_depth, max_heads >= 1 and "
                             "max_head_dim >= 16")
        self.lanes, self.batch, self.max_ctx, self.vmem_depth = lanes, batch, max_ctx, vmem_depth
        self.max_heads, self.max_head_dim, self.addr_width = max_heads, max_head_dim, addr_width
        self.max_beats = max_head_dim // 16
        vaddr = range(max(vmem_depth, 2))
        super().__init__({
            "start": In(1),
            # the op's geometry, steady from start
            "T": In(range(batch + 1)),
            "pos0": In(range(max_ctx + 1)),
            "G": In(8),
            "kv_heads": In(8),
            "d": In(range(max_head_dim + 1)),
            "src": In(32),
            "aux": In(32),
            "dst": In(32),
            "krow": In(addr_width),
            "vrow": In(addr_width),
            "ksc": In(addr_width),
            "vsc": In(addr_width),
            "row_stride": In(addr_width),
            "sc_stride": In(addr_width),
            # QueryLoad jobs
            "job_valid": Out(1),
            "job_ready": In(1),
            "job_lane": Out(range(max(lanes, 2))),
            "job_t": Out(range(max(batch, 2))),
            "job_q": Out(vaddr),
            "job_s": Out(vaddr),
            "load_idle": In(1),
            # reads
            "cmd": Out(stream.Signature(cmd_layout(addr_width, len_width))),
            # chunks
            "q_free": In(1),
            "planned": Out(1),  # the chunk's reads are requested and chunk.scales / k_off / v_off are set
            "chunk_valid": Out(1),  # ... and its queries are loaded
            "chunk": Out(chunk_layout(lanes, batch, max_ctx, vmem_depth)),
            "take": In(1),
            "finished": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        QL, AW = self.lanes, self.addr_width
        ch = self.chunk

        # -- the pairs: token t of query head h (g-th of its KV head) -------------------------------------
        it_t = Signal.like(self.T)
        it_g = Signal(8)
        it_h = Signal(8)
        it_hd = Signal(range(self.max_heads * self.max_head_dim + 1))  # h d
        kv_left = Signal()  # the KV head has pairs not yet in a chunk
        kh = Signal(8)
        krow, vrow, ksc, vsc = (Signal(AW, name=n) for n in ("krow", "vrow", "ksc", "vsc"))
        need_scales = Signal()
        li = Signal(range(QL + 1))
        assign = Signal()
        m.d.comb += [self.job_lane.eq(li), self.job_t.eq(it_t), self.job_q.eq(self.src + it_hd),
                     self.job_s.eq(self.aux + it_h), assign.eq(self.job_valid & self.job_ready)]
        with m.If(assign):
            for lane in range(QL):
                with m.If(li == lane):
                    m.d.sync += [ch.valid[lane].eq(1), ch.t[lane].eq(it_t), ch.pos[lane].eq(self.pos0 + it_t),
                                 ch.obase[lane].eq(self.dst + it_hd)]
            m.d.sync += [li.eq(li + 1), it_t.eq(it_t + 1)]
            with m.If(it_t == self.T - 1):
                m.d.sync += [it_t.eq(0), it_g.eq(it_g + 1), it_h.eq(it_h + 1), it_hd.eq(it_hd + self.d)]
                with m.If(it_g == self.G - 1):
                    m.d.sync += [it_g.eq(0), kv_left.eq(0)]

        # -- reads, in stream order: K scales, V scales, K rows, V rows (the command register holds one) --
        cmds = [(Signal(name=f"{n}_pend"), Signal(AW, name=f"{n}_addr"), Signal.like(self.cmd.payload.beats,
                 name=f"{n}_beats")) for n in ("ks", "vs", "kr", "vr")]
        pending = Signal()
        m.d.comb += pending.eq(self.cmd.valid | cmds[0][0] | cmds[1][0] | cmds[2][0] | cmds[3][0])
        with m.If(self.cmd.ready):
            m.d.sync += self.cmd.valid.eq(0)
        with m.If(~self.cmd.valid | self.cmd.ready):
            earlier = C(0, 1)
            for pend, addr, beats in cmds:
                with m.If(pend & ~earlier):
                    m.d.sync += [self.cmd.valid.eq(1), self.cmd.payload.addr.eq(addr),
                                 self.cmd.payload.beats.eq(beats), pend.eq(0)]
                earlier = earlier | pend
        # every chunk reads the keys of the block's last token (a chunk without that token masks the
        # few extra keys), so its reads go out before its lanes are known
        nkeys = Signal(range(self.max_ctx + 1))
        row_beats = Signal.like(self.cmd.payload.beats)
        m.d.sync += [nkeys.eq(self.pos0 + self.T), row_beats.eq(nkeys * (self.d >> 4))]

        # -- chunks -------------------------------------------------------------------------------------
        q_free = Signal()
        with m.If(self.q_free):
            m.d.sync += q_free.eq(1)
        with m.If(self.take):
            m.d.sync += [self.chunk_valid.eq(0), self.planned.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [it_t.eq(0), it_g.eq(0), it_h.eq(0), it_hd.eq(0), kv_left.eq(1), kh.eq(0),
                                 need_scales.eq(1), krow.eq(self.krow), vrow.eq(self.vrow), ksc.eq(self.ksc),
                                 vsc.eq(self.vsc), q_free.eq(1), self.finished.eq(0), self.chunk_valid.eq(0),
                                 self.planned.eq(0)]
                    m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(~kv_left):  # the KV head is done: the next one, or the end
                    with m.If(kh == self.kv_heads - 1):
                        m.next = "END"
                    with m.Else():
                        m.d.sync += [kh.eq(kh + 1), kv_left.eq(1), need_scales.eq(1),
                                     krow.eq(krow + self.row_stride), vrow.eq(vrow + self.row_stride),
                                     ksc.eq(ksc + self.sc_stride), vsc.eq(vsc + self.sc_stride)]
                with m.Elif(q_free & ~self.chunk_valid & ~pending):  # after the last chunk's reads
                    m.d.sync += [
                        q_free.eq(0), li.eq(0), ch.valid.eq(0), self.planned.eq(1),
                        cmds[0][0].eq(need_scales), cmds[0][1].eq(ksc), cmds[0][2].eq((ksc[2:4] + nkeys + 3) >> 2),
                        cmds[1][0].eq(need_scales), cmds[1][1].eq(vsc), cmds[1][2].eq((vsc[2:4] + nkeys + 3) >> 2),
                        cmds[2][0].eq(1), cmds[2][1].eq(krow), cmds[2][2].eq(row_beats),
                        cmds[3][0].eq(1), cmds[3][1].eq(vrow), cmds[3][2].eq(row_beats),
                        ch.nkeys.eq(nkeys), ch.scales.eq(need_scales), ch.k_off.eq(ksc[2:4]), ch.v_off.eq(vsc[2:4]),
                        need_scales.eq(0),
                    ]
                    m.next = "ASSIGN"
            with m.State("ASSIGN"):
                m.d.comb += self.job_valid.eq(kv_left & (li != QL))
                with m.If(~self.job_valid):
                    m.d.sync += ch.n.eq(li)
                    m.next = "LOAD"
            with m.State("LOAD"):
                with m.If(self.load_idle):
                    m.d.sync += self.chunk_valid.eq(1)
                    m.next = "NEXT"
            with m.State("END"):
                with m.If(~self.planned):
                    m.d.sync += self.finished.eq(1)
                    m.next = "IDLE"
        return m
