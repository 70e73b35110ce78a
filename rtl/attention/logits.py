"""Log2-domain logits of a chunk, their running maxima and the V-scale exponents (docs/numerics.md
"Attention", steps 2-3 and the ``E`` of step 5), one key at a time during the K pass.

For a key ``j`` (``key_valid``: its scores for every lane are in ``score``) and every lane ``l``:
``logit = sat32(apply(s, mul(SqC[l], S_kj), 10))`` (``SqC = mul(S_q, log2(e)/sqrt(d))``, per lane), the
logit goes into the logit buffer (``lb_*``: one word of ``pipes`` logits per lane group, written in
key-major order from address 0), and ``max[l]`` follows the largest logit of the keys ``j <= pos[l]``
(key 0 sets it). ``E[l]`` and ``live[l]``: the largest V-scale exponent over the keys ``j <= pos[l]``
with a non-zero V scale, and whether there is one; a running maximum over the keys is captured into
the lanes whose position is ``j``.

``pipes`` shared pipelines (``PfMul`` then ``Apply``) serve the lanes: lane ``l`` is pipeline
``l % pipes``, in group ``l // pipes``; a key takes ``groups = ceil(lanes / pipes)`` issue cycles, the
first in the ``key_valid`` cycle. ``score``, ``sqc``, ``pos`` must hold for those cycles, and keys must
come at least ``groups`` cycles apart (:attr:`key_period`).

The key's scales come from the scale buffer (``sc_addr`` = ``j / 4`` in an issue cycle, ``sc_k`` /
``sc_v`` four pf words one cycle later). ``clear`` (a new chunk) resets the key count and the logit
buffer address. Pipeline: issue, PfMul (3), Apply (4), write: :attr:`latency` = 8 cycles.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..control.isa import PF_LAYOUT
from ..pf import Apply, PfMul
from .common import LOGIT_FRAC, delay, pick


class LogitUnit(wiring.Component):
    """Logits, maxima and V-scale exponents of the K pass; see the module docstring."""

    def __init__(self, *, lanes: int, pipes: int, max_ctx: int, score_width: int):
        if lanes < 1 or pipes < 1 or max_ctx < 1:
            raise ValueError("LogitUnit needs lanes, pipes and max_ctx >= 1")
        self.lanes, self.pipes, self.max_ctx, self.score_width = lanes, pipes, max_ctx, score_width
        self.groups = -(-lanes // pipes)
        self.key_period = self.groups
        self.lb_depth = max_ctx * self.groups
        self._mul = [PfMul() for _ in range(pipes)]
        self._apply = [Apply(score_width, LOGIT_FRAC) for _ in range(pipes)]
        self.latency = 1 + PfMul.latency + self._apply[0].latency
        rows = -(-max_ctx // 4)
        super().__init__({
            "clear": In(1),
            "key_valid": In(1),
            "score": In(data.ArrayLayout(signed(score_width), lanes)),
            "sqc": In(data.ArrayLayout(PF_LAYOUT, lanes)),
            "pos": In(data.ArrayLayout(range(max_ctx), lanes)),
            "lane_valid": In(lanes),
            "sc_addr": Out(range(max(rows, 2))),
            "sc_k": In(128),
            "sc_v": In(128),
            "lb_addr": Out(range(max(self.lb_depth, 2))),
            "lb_data": Out(32 * pipes),
            "lb_en": Out(1),
            "max": Out(data.ArrayLayout(signed(32), lanes)),
            "e": Out(data.ArrayLayout(signed(16), lanes)),
            "live": Out(lanes),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L, P, G = self.lanes, self.pipes, self.groups

        # -- issue: group g of key j in the key_valid cycle and the groups - 1 cycles after it --------
        j = Signal(range(self.max_ctx + 1))
        gi = Signal(range(max(G, 2)))
        issuing = Signal()
        issue = Signal()
        g = Signal(range(max(G, 2)))
        m.d.comb += [issue.eq(self.key_valid | issuing), g.eq(Mux(issuing, gi, 0))]
        last_group = g == G - 1
        with m.If(issue):
            m.d.sync += [gi.eq(g + 1), issuing.eq(~last_group)]
            with m.If(last_group):
                m.d.sync += j.eq(j + 1)
        with m.If(self.clear):
            m.d.sync += [j.eq(0), issuing.eq(0)]
        m.d.comb += self.sc_addr.eq(j >> 2)

        v1 = Signal()
        g1 = Signal.like(g)
        j1 = Signal.like(j)
        first1 = Signal()
        m.d.sync += [v1.eq(issue & ~self.clear), g1.eq(g), j1.eq(j), first1.eq(j == 0)]

        # -- per pipeline: select the lane, scale, logit -------------------------------------------------
        logits = []
        for q in range(P):
            lanes_q = list(range(q, L, P))  # group i of pipeline q is lane q + i * P
            m.submodules[f"mul{q}"] = mul = self._mul[q]
            m.submodules[f"apply{q}"] = app = self._apply[q]
            s_sel = pick(m, [self.score[lane] for lane in lanes_q], g, signed(self.score_width), f"s_sel{q}")
            c_sel = pick(m, [self.sqc[lane] for lane in lanes_q], g, PF_LAYOUT, f"c_sel{q}")
            p_sel = pick(m, [self.pos[lane] for lane in lanes_q], g, range(self.max_ctx), f"p_sel{q}")
            ok_sel = pick(m, [self.lane_valid[lane] for lane in lanes_q] + [0] * (G - len(lanes_q)), g, 1,
                           f"ok_sel{q}")
            s1 = Signal(signed(self.score_width), name=f"s1_{q}")
            c1 = Signal(PF_LAYOUT, name=f"c1_{q}")
            masked1 = Signal(name=f"masked1_{q}")
            m.d.sync += [s1.eq(s_sel), c1.eq(c_sel), masked1.eq(~ok_sel | (j > p_sel))]
            # stage 1: the key's K scale (word j % 4 of the row read in the issue cycle) into PfMul
            m.d.comb += [mul.a.eq(c1), mul.b.eq(self.sc_k.word_select(j1[:2], 32))]
            s4 = delay(m, s1, PfMul.latency, f"s{q}")
            m.d.comb += [app.x.eq(s4), app.s.eq(mul.o)]
            lat = PfMul.latency + app.latency
            masked_o = delay(m, masked1, lat, f"masked{q}")
            logits.append((lanes_q, app.o, masked_o))

        lat = PfMul.latency + self._apply[0].latency
        v_o = delay(m, v1, lat, "v_o")
        g_o = delay(m, g1, lat, "g_o")
        first_o = delay(m, first1, lat, "first_o")

        # -- outputs: the logit buffer write and the running maxima ---------------------------------
        lb_addr = Signal.like(self.lb_addr)
        m.d.comb += [self.lb_en.eq(v_o), self.lb_addr.eq(lb_addr),
                     self.lb_data.eq(Cat(logit for _, logit, _ in logits))]
        with m.If(v_o):
            m.d.sync += lb_addr.eq(lb_addr + 1)
        with m.If(self.clear):
            m.d.sync += lb_addr.eq(0)
        for q, (lanes_q, logit, masked) in enumerate(logits):
            cur = pick(m, [self.max[lane] for lane in lanes_q], g_o, signed(32), f"cur{q}")
            upd = Signal(name=f"upd{q}")
            m.d.comb += upd.eq(v_o & ~masked & (first_o | (logit > cur)))
            for i, lane in enumerate(lanes_q):
                with m.If(upd & (g_o == i)):
                    m.d.sync += self.max[lane].eq(logit)

        # -- E and live: running maximum of the live V-scale exponents, captured at j == pos ----------
        vs = Signal(PF_LAYOUT)
        m.d.comb += vs.eq(self.sc_v.word_select(j1[:2], 32))
        kev1 = Signal()
        m.d.comb += kev1.eq(v1 & (g1 == 0))
        run_e = Signal(signed(16))
        run_live = Signal()
        prev_live = Signal()
        m.d.comb += prev_live.eq(run_live & ~first1)
        key_live = vs.m != 0
        hit2 = Signal(L)
        kev2 = Signal()
        m.d.sync += kev2.eq(kev1)
        with m.If(kev1):
            m.d.sync += run_live.eq(prev_live | key_live)
            with m.If(key_live & (~prev_live | (vs.e > run_e))):
                m.d.sync += run_e.eq(vs.e)
            m.d.sync += [hit2[lane].eq(j1 == self.pos[lane]) for lane in range(L)]
        with m.If(kev2):
            for lane in range(L):
                with m.If(hit2[lane]):
                    m.d.sync += [self.e[lane].eq(run_e), self.live[lane].eq(run_live)]

        # idle once the last issue has left every pipeline stage (and the E capture)
        quiet = Signal(range(self.latency + 3))
        with m.If(issue):
            m.d.sync += quiet.eq(self.latency + 2)
        with m.Elif(quiet != 0):
            m.d.sync += quiet.eq(quiet - 1)
        m.d.comb += self.idle.eq(~issue & (quiet == 0))
        return m
