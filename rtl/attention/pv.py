"""The V pass of a chunk: ``acc[l][i] = sum_j a[l][j] * v8_j[i]`` for every query lane ``l`` and element
``i`` (docs/numerics.md "Attention", step 6), at one V beat per cycle.

V rows stream in key-major order (row ``j`` is ``d / 16`` beats). They are staged in a tile buffer of
16 keys and worked on element by element: every lane has a systolic chain of 16 DSP48E2s, one per key of the tile, where column ``k``
multiplies the lane's weight ``a[l][k]`` (held for the tile) by byte ``i`` of key ``k``'s row and adds
the previous column's registered sum (``P_k = P_{k-1} + a_k * v_k[i]``, the PCIN cascade pattern). Column
``k`` works on element ``i`` ``k`` cycles after column 0, so the 16 bytes read in one cycle lie in 16
different byte positions of a beat: the buffer is 16 byte-wide RAMs, one per beat byte position, each
with its own read address, and a two-stage rotation hands each column its byte. The chain's end
(the tile's sum for one element) is added into the element's accumulator in a RAM of ``max_head_dim``
words of ``lanes`` accumulators (read, add, write; one element per cycle). So the V pass takes ``d``
cycles per tile of 16 keys, the accumulators see one read-modify-write per cycle, and the weights
change once per tile. The buffer holds 4 tiles, so the V rows stream in up to two tiles ahead.

Flow: ``start`` latches ``nb = d / 16`` and ``nkeys``. A tile is worked on once its beats are all in and
the softmax holds its weights (``a_ready``); otherwise the whole array holds (one enable for every
stage; with d = 16, while the last tile's weights are not all taken, a group of 16 empty slots runs
instead). ``go`` pulses the cycle after column 0 takes a tile's weights (column ``k`` takes its weight
``k`` cycles after column 0; with d = 16, the cycle after column 15 takes its weight). After the last
tile the chain drains and ``done`` pulses when the last sum is written.
``rd_addr`` / ``rd_data`` read the accumulators (one cycle) while not ``busy``.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .common import BEAT_BYTES, COLS

PROD_MAX = ((1 << 16) - 1) * 128  # |a * v8|
ROT_STAGES = 2  # RAM output -> column operand: rotate by phase % 4, then by 4 * (phase // 4)
B_STAGE = 1 + ROT_STAGES  # slot entry (RAM read) -> column 0's byte register
SUM_STAGE = B_STAGE + 2 + (COLS - 1)  # -> the last column's sum registered (byte, product, sums)
RELEASE_STAGE = COLS  # the slot's last RAM read (column 15) is behind it
# Tile buffers: a tile's buffer is free 16 slots after its last element entered, and refilling it takes
# as long as working on a tile, so with 2 the writer would fall behind by 16 cycles a tile; 4 let it
# run up to two tiles ahead (the block RAMs hold 4 tiles of d = 128 anyway).
TILE_BUFS = 4
BUF_BITS = 2


class PvArray(wiring.Component):
    def __init__(self, *, lanes: int, max_beats: int, max_ctx: int, acc_width: int):
        if lanes < 1 or max_beats < 1 or max_ctx < 1:
            raise ValueError("PvArray needs lanes, max_beats and max_ctx >= 1")
        self.lanes, self.max_beats, self.max_ctx, self.acc_width = lanes, max_beats, max_ctx, acc_width
        self.max_d = max_beats * BEAT_BYTES
        self.max_tiles = -(-max_ctx // COLS)
        super().__init__({
            "start": In(1),
            "nb": In(range(max_beats + 1)),
            "nkeys": In(range(max_ctx + 1)),
            "v": In(stream.Signature(8 * BEAT_BYTES)),
            "a": In(data.ArrayLayout(data.ArrayLayout(16, COLS), lanes)),
            "a_ready": In(1),
            "go": Out(1),
            "done": Out(1),
            "busy": Out(1),
            "rd_addr": In(range(self.max_d)),
            "rd_data": Out(data.ArrayLayout(signed(acc_width), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        L, AW = self.lanes, self.acc_width
        beat_bits = max(1, ceil_log2(self.max_beats))
        elem = range(self.max_d)
        tiles = range(self.max_tiles + 1)

        nb = Signal.like(self.nb)
        last_e = Signal(elem)  # d - 1
        last_tile = Signal(tiles)

        # -- tile buffer: 16 byte RAMs, address {buffer, beat, key} -----------------------------------
        depth = TILE_BUFS << (beat_bits + 4)
        rams = []
        for c in range(BEAT_BYTES):
            # block RAM: as distributed RAM the 16 buffers would cost 64 LUTs each at d = 128
            ram = Memory(shape=8, depth=depth, init=[], attrs={"ram_style": "block"})
            m.submodules[f"vbuf{c}"] = ram
            rams.append((ram.write_port(), ram.read_port(transparent_for=())))

        # writer: tile wt into buffer wt % TILE_BUFS, key wk, beat wb
        wt = Signal(tiles)
        wk = Signal(range(COLS))
        wb = Signal(range(max(self.max_beats, 2)))
        wrem = Signal(range(self.max_ctx + 1))  # keys from tile wt on
        free = Signal(TILE_BUFS)  # the buffer may be (re)filled
        filled = Signal(TILE_BUFS)  # the buffer holds the next tile for it, complete
        writing = Signal()
        take = Signal()
        m.d.comb += [self.v.ready.eq(writing & free.bit_select(wt[:BUF_BITS], 1)), take.eq(self.v.valid & self.v.ready)]
        for c, (wp, _) in enumerate(rams):
            m.d.comb += [wp.addr.eq(Cat(wk, wb[:beat_bits], wt[:BUF_BITS])), wp.data.eq(self.v.payload.word_select(c, 8)),
                         wp.en.eq(take)]
        release = Signal(TILE_BUFS)
        tile_in = Signal(TILE_BUFS)
        with m.If(take):
            m.d.sync += wb.eq(wb + 1)
            with m.If(wb == nb - 1):
                m.d.sync += [wb.eq(0), wk.eq(wk + 1)]
                with m.If((wk == COLS - 1) | (wk == wrem - 1)):  # the tile's last key
                    m.d.comb += tile_in.eq(1 << wt[:BUF_BITS])
                    m.d.sync += [wk.eq(0), wt.eq(wt + 1), wrem.eq(wrem - COLS)]
                    with m.If(wt == last_tile):
                        m.d.sync += writing.eq(0)
        m.d.sync += [free.eq((free | release) & ~tile_in), filled.eq((filled | tile_in) & ~release)]

        # -- processor: one slot (tile pt, element pe) per enabled cycle -----------------------------
        # A tile starts only when its beats are in and the softmax holds its weights; otherwise the
        # array holds (no slot enters, no stage moves). While the last tile's weights are not all taken
        # (``go`` pending: only with d = 16, see below) a hold would keep them from being taken, so a
        # group of 16 empty slots runs instead (tiles start at phase 0).
        running = Signal()  # slots of real tiles remain
        empty = Signal()  # a group of empty slots is entering
        flushing = Signal(range(SUM_STAGE + 3))  # empty slots left to drain the chain after the last tile
        ce = Signal()  # this cycle a slot enters and every stage advances
        pt = Signal(tiles)
        pe = Signal(elem)
        phase = Signal(4)  # = pe % 16 of a real slot
        taking = Signal()  # a tile started whose weights were not all taken yet (go to come)
        m.d.comb += self.busy.eq(running | (flushing != 0))

        real = Signal()
        m.d.comb += real.eq(ce & running & ~empty)
        n_running, n_pt, n_pe = Signal.like(running), Signal.like(pt), Signal.like(pe)
        m.d.comb += [n_running.eq(running), n_pt.eq(pt), n_pe.eq(pe)]
        with m.If(real):
            m.d.comb += n_pe.eq(pe + 1)
            with m.If(pe == last_e):
                m.d.comb += [n_pe.eq(0), n_pt.eq(pt + 1)]
                with m.If(pt == last_tile):
                    m.d.comb += n_running.eq(0)
        n_flushing = Signal.like(flushing)
        m.d.comb += n_flushing.eq(Mux(real & ~n_running, SUM_STAGE + 2,
                                      Mux(ce & (flushing != 0), flushing - 1, flushing)))
        n_taking = Signal()
        m.d.comb += n_taking.eq(Mux(real & (pe == 0), 1, taking & ~self.go))
        stay_empty = empty & ~(ce & (phase == COLS - 1))
        at_start = n_running & (n_pe == 0) & ~stay_empty  # next cycle would start a tile
        # (taking, not n_taking: the cycle after go the softmax's ready is that of the next tile)
        ok = filled.bit_select(n_pt[:BUF_BITS], 1) & self.a_ready & ~taking
        n_empty = Signal()
        m.d.comb += n_empty.eq(stay_empty | (at_start & ~ok & n_taking))
        m.d.sync += [running.eq(n_running), pt.eq(n_pt), pe.eq(n_pe), flushing.eq(n_flushing),
                     taking.eq(n_taking), empty.eq(n_empty),
                     ce.eq(n_empty | (n_flushing != 0) | (n_running & (~at_start | ok)))]
        with m.If(ce):
            m.d.sync += phase.eq(phase + 1)

        # slot descriptors down the pipeline (stage i: the slot that entered i enabled cycles ago)
        slot = data.StructLayout({"valid": 1, "first": 1, "tile0": 1, "last": 1, "buf": BUF_BITS, "e": elem})
        entering = Signal(slot)
        m.d.comb += [entering.valid.eq(running & ~empty), entering.first.eq(running & ~empty & (pe == 0)),
                     entering.tile0.eq(pt == 0),
                     entering.last.eq(pe == last_e), entering.buf.eq(pt[:BUF_BITS]), entering.e.eq(pe)]
        stages = [entering]
        for i in range(1, SUM_STAGE + 2):
            st = Signal(slot, name=f"slot{i}")
            with m.If(ce):
                m.d.sync += st.eq(stages[-1])
            stages.append(st)
        with m.If(ce & stages[RELEASE_STAGE].valid & stages[RELEASE_STAGE].last):
            m.d.comb += release.eq(1 << stages[RELEASE_STAGE].buf)

        # RAM c is read for column k = (phase - c) % 16, i.e. the slot k cycles back: in this slot's
        # group of 16 elements (c <= phase) or the previous one
        grp = data.StructLayout({"buf": BUF_BITS, "beat": beat_bits})
        cur_grp, prev_grp = Signal(grp), Signal(grp)
        m.d.comb += [cur_grp.buf.eq(pt[:BUF_BITS]), cur_grp.beat.eq(pe >> 4)]
        with m.If(ce & (phase == COLS - 1)):
            m.d.sync += prev_grp.eq(cur_grp)
        for c, (_, rp) in enumerate(rams):
            in_cur = phase >= c
            m.d.comb += [rp.addr.eq(Cat((phase - c)[:4], Mux(in_cur, cur_grp.beat, prev_grp.beat),
                                        Mux(in_cur, cur_grp.buf, prev_grp.buf))),
                         rp.en.eq(ce)]
        # rotation: column k takes RAM (phase - k) % 16, in two 4:1 stages
        ph1 = Signal(4)
        ph2 = Signal(4)
        with m.If(ce):
            m.d.sync += [ph1.eq(phase), ph2.eq(ph1)]
        x = [rp.data for _, rp in rams]
        z = [Signal(8, name=f"rot1_{i}") for i in range(COLS)]
        y = [Signal(signed(8), name=f"vbyte{k}") for k in range(COLS)]
        with m.If(ce):
            for i in range(COLS):
                with m.Switch(ph1[:2]):
                    for b in range(4):
                        with m.Case(b):
                            m.d.sync += z[i].eq(x[(b - i) % COLS])
            for k in range(COLS):
                with m.Switch(ph2[2:]):
                    for a4 in range(4):
                        with m.Case(a4):
                            m.d.sync += y[k].eq(z[(k - 4 * a4) % COLS])

        # -- the chains: column k of lane l -------------------------------------------------------------
        sums = [None] * L
        loads = []
        for k in range(COLS):
            load = stages[B_STAGE - 1 + k].first & ce  # the slot reaching column k's registers starts a tile
            loads.append(load)
            width = ((k + 1) * PROD_MAX).bit_length() + 1
            for lane in range(L):
                areg = Signal(16, name=f"a{lane}_{k}")
                prod = Signal(signed(24), name=f"pv{lane}_{k}")
                s = Signal(signed(width), name=f"ps{lane}_{k}")
                with m.If(load):
                    m.d.sync += areg.eq(self.a[lane][k])
                with m.If(ce):
                    m.d.sync += [prod.eq(areg * y[k]), s.eq(prod if sums[lane] is None else sums[lane] + prod)]
                sums[lane] = s

        # The softmax may overwrite weight k once column k took it. A tile's first d slots enter without
        # a hold, so with d >= 32 column 15 (stage 17) takes its weight before any hold: column 0's take
        # frees the weights. With d = 16 the next tile may hold the array before column 15 took its
        # weight: then column 15's take does.
        # (registered: it starts the softmax's next tile, one cycle later is as safe)
        m.d.sync += self.go.eq(Mux(nb == 1, loads[COLS - 1], loads[0]))

        # -- accumulators: read at SUM_STAGE - 1, add and write at SUM_STAGE ------------------------------
        accmem = Memory(shape=data.ArrayLayout(signed(AW), L), depth=self.max_d, init=[])
        m.submodules.acc = accmem
        ap_w = accmem.write_port()
        ap_r = accmem.read_port(transparent_for=())
        fin = stages[SUM_STAGE]
        m.d.comb += [
            ap_r.addr.eq(Mux(self.busy, stages[SUM_STAGE - 1].e, self.rd_addr)),
            ap_r.en.eq(~self.busy | ce),
            self.rd_data.eq(ap_r.data),
            ap_w.addr.eq(fin.e),
            ap_w.en.eq(ce & fin.valid),
        ]
        for lane in range(L):
            m.d.comb += ap_w.data[lane].eq(Mux(fin.tile0, 0, ap_r.data[lane]) + sums[lane])

        # -- start / done -----------------------------------------------------------------------------
        m.d.sync += self.done.eq(0)
        with m.If(ce & (flushing == 1)):
            m.d.sync += self.done.eq(1)
        with m.If(self.start):
            m.d.sync += [nb.eq(self.nb), last_e.eq((self.nb << 4) - 1), last_tile.eq((self.nkeys - 1) >> 4),
                         wt.eq(0), wk.eq(0), wb.eq(0), wrem.eq(self.nkeys), writing.eq(1), free.eq((1 << TILE_BUFS) - 1),
                         filled.eq(0), running.eq(1), pt.eq(0), pe.eq(0), phase.eq(0), flushing.eq(0),
                         ce.eq(0), prev_grp.eq(0), taking.eq(0), empty.eq(0)]
        return m
