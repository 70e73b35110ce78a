"""Softmax weights of a chunk for the V pass (docs/numerics.md "Attention", steps 3-5), a tile of 16
keys at a time, into the PV array's weight registers.

For key ``j`` and lane ``l`` (from the stored logit and the lane's maximum ``max``, exponent ``e``):
``D = max - logit``, ``p = EXP2[D & 1023] >> (D >> 10)`` (0 from a shift of 16 on, and for a masked key
``j > pos[l]``), ``psum[l] += p``, ``w = rshift_round(p * m_vj, 15)``, and for a live key (``m_vj != 0``,
unmasked) ``a = rshift_round(w, e[l] - e_vj)``, else 0. ``a`` (< 2**16) goes to ``a[l][j % 16]``.

Tiles: ``start`` begins the V pass of ``nkeys`` keys (``ceil(nkeys / 16)`` tiles; the keys of the last
tile past ``nkeys`` get ``a = 0``). A tile's weights are issued (``groups = ceil(lanes / pipes)`` cycles
per key, lane ``l`` on pipeline ``l % pipes``); ``ready`` rises as soon as every weight is sure to land
before the PV array's column takes it (column ``k`` takes weight ``k`` ``k + 2`` cycles after the array
enters the tile), so at d = 64 and 8 lanes a tile is issued while the last one is worked on. ``go``
(the array's first column took the weights) lets the next tile be issued once this one's issue is over;
column ``k`` takes its weight ``k`` cycles after column 0, before the next tile's weight ``k`` lands.
``finished`` rises once the last tile is written: ``psum`` is final.

Reads: the logit buffer in its write order (``lb_addr``, ``lb_data`` one cycle later) and the V scale of
the key from the scale buffer (``sc_addr`` = ``j / 4``, ``sc_v`` one cycle later).
Pipeline per (key, lane group), :attr:`latency` = 9 cycles from issue to the weight register: buffers;
``D`` and the V scale; EXP2 ROM and the exponent difference; shift; ``psum`` and ``p * m_v`` (DSP);
``w``; shift; round; write.
"""
from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ternfpga.sim.numerics.tables import exp2_table

from .common import COLS, delay, pick

A_SHIFT_MAX = 17  # rshift_round(w, s) is 0 for w < 2**16 from s = 17 on


class SoftmaxUnit(wiring.Component):
    def __init__(self, *, lanes: int, pipes: int, max_ctx: int):
        if lanes < 1 or pipes < 1 or max_ctx < 1:
            raise ValueError("SoftmaxUnit needs lanes, pipes and max_ctx >= 1")
        self.lanes, self.pipes, self.max_ctx = lanes, pipes, max_ctx
        self.groups = -(-lanes // pipes)
        self.lb_depth = max_ctx * self.groups
        self.latency = 9
        rows = -(-max_ctx // 4)
        self.max_tiles = -(-max_ctx // COLS)
        super().__init__({
            "start": In(1),
            "nkeys": In(range(max_ctx + 1)),
            "max": In(data.ArrayLayout(signed(32), lanes)),
            "e": In(data.ArrayLayout(signed(16), lanes)),
            "pos": In(data.ArrayLayout(range(max_ctx), lanes)),
            "lane_valid": In(lanes),
            "lb_addr": Out(range(max(self.lb_depth, 2))),
            "lb_data": In(32 * pipes),
            "sc_addr": Out(range(max(rows, 2))),
            "sc_v": In(128),
            "go": In(1),
            "a": Out(data.ArrayLayout(data.ArrayLayout(16, COLS), lanes)),
            "ready": Out(1),
            "finished": Out(1),
            "psum": Out(data.ArrayLayout(32, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        L, P, G = self.lanes, self.pipes, self.groups

        # -- issue: tile n, key k (j = 16 n + k), group g ----------------------------------------------
        nkeys = Signal.like(self.nkeys)
        tile = Signal(range(self.max_tiles + 1))
        last_tile = Signal(range(self.max_tiles + 1))
        k = Signal(range(COLS))
        g = Signal(range(max(G, 2)))
        j = Signal(range(self.max_ctx + COLS))
        lb_row = Signal.like(self.lb_addr)
        issuing = Signal()
        m.d.comb += [j.eq(Cat(k, tile)), self.lb_addr.eq(lb_row),
                     self.sc_addr.eq(Mux(j < nkeys, j >> 2, 0))]
        # A tile's weights are issued in 16 groups cycles from I0; key k's last lands at the end of cycle
        # I0 + k groups + groups - 1 + latency - 1. The PV array enters a tile the cycle after it sees
        # ready and column k takes weight k k + 2 cycles later, so ready may rise at
        # I0 + 15 (groups - 1) + groups + latency - 4 (+ 1 to spare), before the last weight lands.
        ready_at = 15 * (G - 1) + G + self.latency - 4
        full = COLS * G + self.latency  # every weight and psum of the tile written
        cnt = Signal(range(full + 1))  # cycles since the tile's first issue
        active = Signal()
        go_seen = Signal()  # the PV array took the tile's weights: the next tile may be issued
        with m.If(active & (cnt != full)):
            m.d.sync += cnt.eq(cnt + 1)
        with m.If(active & (cnt == ready_at)):
            m.d.sync += self.ready.eq(1)
        with m.If(active & (cnt == full)):
            m.d.sync += [active.eq(0), self.finished.eq(tile == last_tile)]
        with m.If(self.go & self.ready):
            m.d.sync += [self.ready.eq(0), go_seen.eq(1)]
        with m.If(issuing):
            with m.If(j < nkeys):
                m.d.sync += lb_row.eq(lb_row + 1)
            m.d.sync += g.eq(g + 1)
            with m.If(g == G - 1):
                m.d.sync += [g.eq(0), k.eq(k + 1)]
                with m.If(k == COLS - 1):
                    m.d.sync += issuing.eq(0)
        with m.Elif(go_seen & (tile != last_tile)):
            m.d.sync += [tile.eq(tile + 1), issuing.eq(1), cnt.eq(0), active.eq(1), go_seen.eq(0)]
        with m.If(self.start):
            m.d.sync += [nkeys.eq(self.nkeys), last_tile.eq((self.nkeys - 1) >> 4), tile.eq(0), k.eq(0),
                         g.eq(0), lb_row.eq(0), issuing.eq(1), cnt.eq(0), active.eq(1), go_seen.eq(0),
                         self.ready.eq(0), self.finished.eq(0)]
            m.d.sync += [self.psum[lane].eq(0) for lane in range(L)]

        v1 = Signal()
        g1 = Signal.like(g)
        k1 = Signal.like(k)
        j1 = Signal(2)
        m.d.sync += [v1.eq(issuing & ~self.start), g1.eq(g), k1.eq(k), j1.eq(j[:2])]
        vs = Signal.like(self.sc_v[:32])
        m.d.comb += vs.eq(self.sc_v.word_select(j1, 32))
        v_m, v_e = vs[:16], vs[16:].as_signed()

        lat = self.latency
        v_w = delay(m, v1, lat - 2, "v_w")  # the write stage (a8 visible)
        g_w = delay(m, g1, lat - 2, "g_w")
        k_w = delay(m, k1, lat - 2, "k_w")
        g_s = delay(m, g1, 3, "g_s")  # the psum stage
        v_s = delay(m, v1, 3, "v_s")

        exp2 = [int(x) for x in exp2_table()]
        for q in range(P):
            lanes_q = list(range(q, L, P))
            mx = pick(m, [self.max[lane] for lane in lanes_q], g, signed(32), f"mx{q}")
            ex = pick(m, [self.e[lane] for lane in lanes_q], g, signed(16), f"ex{q}")
            ps = pick(m, [self.pos[lane] for lane in lanes_q], g, range(self.max_ctx), f"ps{q}")
            ok = pick(m, [self.lane_valid[lane] for lane in lanes_q] + [0] * (G - len(lanes_q)), g, 1, f"ok{q}")
            # 1: the lane's values, the mask
            m1 = Signal(signed(32), name=f"m1_{q}")
            e1 = Signal(signed(16), name=f"e1_{q}")
            masked1 = Signal(name=f"masked1_{q}")
            m.d.sync += [m1.eq(mx), e1.eq(ex), masked1.eq(~ok | (j > ps))]
            # 2: D = max - logit (>= 0 unmasked), the V scale, E - e_v
            logit = self.lb_data.word_select(q, 32).as_signed()
            d2 = Signal(33, name=f"d2_{q}")
            mv2 = Signal(16, name=f"mv2_{q}")
            de2 = Signal(signed(18), name=f"de2_{q}")
            masked2 = Signal(name=f"masked2_{q}")
            live2 = Signal(name=f"live2_{q}")
            m.d.sync += [d2.eq(m1 - logit), mv2.eq(v_m), de2.eq(e1 - v_e), masked2.eq(masked1),
                         live2.eq(~masked1 & (v_m != 0))]
            # 3: EXP2[D & 1023] (ROM, out next cycle); D >> 10 >= 16 gives 0; the a shift, clamped
            rom = Memory(shape=16, depth=1024, init=exp2)
            m.submodules[f"exp2_{q}"] = rom
            rp = rom.read_port(transparent_for=())
            m.d.comb += rp.addr.eq(d2[:10])
            zero3 = Signal(name=f"zero3_{q}")
            sh3 = Signal(4, name=f"sh3_{q}")
            mv3 = Signal(16, name=f"mv3_{q}")
            ash3 = Signal(range(A_SHIFT_MAX + 1), name=f"ash3_{q}")
            live3 = Signal(name=f"live3_{q}")
            m.d.sync += [zero3.eq(masked2 | (d2[14:32] != 0)), sh3.eq(d2[10:14]), mv3.eq(mv2), live3.eq(live2),
                         ash3.eq(Mux(de2 < 0, 0, Mux(de2 > A_SHIFT_MAX, A_SHIFT_MAX, de2)))]
            # 4: p
            p4 = Signal(16, name=f"p4_{q}")
            mv4 = Signal(16, name=f"mv4_{q}")
            m.d.sync += [p4.eq(Mux(zero3, 0, rp.data >> sh3)), mv4.eq(mv3)]
            ash4 = delay(m, ash3, 1, f"ash{q}")
            live4 = delay(m, live3, 1, f"live{q}")
            # psum (this pipeline's lanes), p * m_v (DSP)
            cur = pick(m, [self.psum[lane] for lane in lanes_q], g_s, 32, f"psum_cur{q}")
            for i, lane in enumerate(lanes_q):
                with m.If(v_s & (g_s == i)):
                    m.d.sync += self.psum[lane].eq(cur + p4)
            pm5 = Signal(32, name=f"pm5_{q}")
            m.d.sync += pm5.eq(p4 * mv4)
            # 6: w = rshift_round(p * m_v, 15) < 2**16
            w6 = Signal(16, name=f"w6_{q}")
            m.d.sync += w6.eq((pm5 + (1 << 14)) >> 15)
            ash6 = delay(m, ash4, 2, f"ash6_{q}")
            live6 = delay(m, live4, 2, f"live6_{q}")
            # 7: (2 w) >> s; 8: a = ((2 w >> s) + 1) >> 1 = rshift_round(w, s)
            t7 = Signal(17, name=f"t7_{q}")
            m.d.sync += t7.eq(Cat(C(0, 1), w6) >> ash6)
            live7 = delay(m, live6, 1, f"live7_{q}")
            a8 = Signal(16, name=f"a8_{q}")
            m.d.sync += a8.eq(Mux(live7, (t7 + 1) >> 1, 0))
            # 9: the weight register
            for i, lane in enumerate(lanes_q):
                for kk in range(COLS):
                    with m.If(v_w & (g_w == i) & (k_w == kk)):
                        m.d.sync += self.a[lane][kk].eq(a8)
        return m
