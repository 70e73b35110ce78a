"""AXI4 arbiters: n masters (units' readers and writers) onto one AXI4 slave port (an S_AXI_HPn_FPD).

All IDs are 0, so the slave answers in request order and responses are routed by order queues of
master indices, filled as requests are forwarded:

- :class:`AxiReadArbiter`: round-robin AR arbitration per burst into a two-entry register slice
  (skid buffer); the index of every forwarded AR goes into the R-order queue (an AR is not forwarded
  while it is full, ``max_outstanding`` entries). R beats go to the master at the queue head
  (``rvalid`` to that master only, ``rready`` from it), popped at ``rlast``.
- :class:`AxiWriteArbiter`: the same on AW; every forwarded AW's index goes into a W-order and a
  B-order queue. W beats are taken from the master at the W-queue head (popped at ``wlast``), B
  responses routed by the B-queue head.

Latency and throughput: the per-master ``arready``/``awready`` are registers, decided a cycle ahead
from the round-robin position (a request the grant has to move to waits one cycle), then the
request spends one cycle in the slice. A master with traffic alone gets one AR/AW per cycle, and R,
W and B pass through combinationally (one LUT level each way), so one beat per cycle on R and W. A
waiting master is granted after at most n - 1 other requests.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .signature import AxiReadSignature, AxiWriteSignature

_ADDR_FIELDS = ("addr", "len", "size", "burst", "cache", "prot")  # forwarded; the ID is driven 0


class _OrderQueue(Elaboratable):
    """Master indices of forwarded bursts, oldest first: a LUTRAM ring plus a registered ``head``.

    ``head`` and ``nonempty`` are registers (routing by the head costs one LUT level); ``pop``
    reaches them through one LUT. ``full`` counts a pop up to two cycles late (conservative);
    ``full_next`` is the value ``full`` takes at the next edge.
    """

    def __init__(self, width: int, depth: int):
        self.width, self.depth = width, depth
        self.push, self.index, self.pop = Signal(), Signal(width), Signal()
        self.head, self.nonempty = Signal(width), Signal()
        self.full, self.full_next = Signal(), Signal()

    def elaborate(self, platform) -> Module:
        m = Module()
        bits = max(1, ceil_log2(self.depth))
        m.submodules.ring = ring = Memory(shape=self.width, depth=1 << bits, init=[])
        wp, rp = ring.write_port(), ring.read_port(domain="comb")
        wr, after_head = Signal(bits), Signal(bits, init=1)  # the ring also holds the head's entry
        # count = entries + popped_last_cycle: a late pop reaches only flip-flops, never the adder
        count = Signal(range(self.depth + 2))
        popped = Signal()
        two = Signal()  # at least 2 entries: the one after the head is in the ring
        three = Signal()  # at least 3 entries
        m.d.comb += [
            wp.addr.eq(wr), wp.data.eq(self.index), wp.en.eq(self.push),
            rp.addr.eq(after_head),
            self.full_next.eq(count + self.push >= self.depth),
            three.eq(Mux(popped, count >= 4, count >= 3)),
        ]
        with m.If(self.push):
            m.d.sync += wr.eq(wr + 1)
        with m.If(self.pop):
            m.d.sync += after_head.eq(after_head + 1)
        m.d.sync += [count.eq(count + self.push - popped), popped.eq(self.pop), self.full.eq(self.full_next)]
        with m.If(self.pop):
            m.d.sync += [self.head.eq(Mux(two, rp.data, self.index)),
                         self.nonempty.eq(self.push | two),
                         two.eq(Mux(self.push, two, three))]
        with m.Else():
            m.d.sync += [self.head.eq(Mux(self.nonempty, self.head, self.index)),
                         self.nonempty.eq(self.push | self.nonempty),
                         two.eq(Mux(self.push, self.nonempty, two))]
        return m


def _address_channel(m: Module, masters: list, s, prefix: str, blocked_next) -> tuple[Signal, Signal]:
    """Round-robin arbitration of the ``prefix`` (``ar``/``aw``) channel of ``masters`` into a
    two-entry slice driving ``s``. ``blocked_next``: no request may be taken next cycle (order queue
    full). Returns (accept: a request is taken this cycle, index of its master)."""
    n = len(masters)
    valid = [getattr(p, prefix + "valid") for p in masters]
    sel = Signal(n, init=1, name=f"{prefix}_sel")  # round-robin position: granted / last granted
    take = Signal(n, name=f"{prefix}_take")  # = each master's ready: sel, if there is room
    accept = Signal(name=f"{prefix}_accept")
    index = Signal(max(1, ceil_log2(n)), name=f"{prefix}_index")
    for i, p in enumerate(masters):
        m.d.comb += getattr(p, prefix + "ready").eq(take[i])
        with m.If(take[i]):
            m.d.comb += index.eq(i)
    m.d.comb += accept.eq((take & Cat(*valid)).any())  # take is one-hot or zero

    # Next position: stay while the selected master waits; else the first requester after it.
    sel_next = Signal(n, name=f"{prefix}_sel_next")
    m.d.comb += sel_next.eq(sel)
    with m.If(~((sel & Cat(*valid)).any() & ~accept)):
        for j in range(n):
            with m.If(sel[j]):
                for k, i in enumerate((j + d) % n for d in range(1, n)):
                    with (m.If if k == 0 else m.Elif)(valid[i]):
                        m.d.comb += sel_next.eq(1 << i)
    m.d.sync += sel.eq(sel_next)

    # Two-entry slice: the output register (s) and a skid register, so that ``take`` can be decided
    # a cycle ahead without looking at s's ready.
    out = {f: getattr(s, prefix + f) for f in _ADDR_FIELDS}
    incoming = {f: Signal.like(o, name=f"{prefix}_in_{f}") for f, o in out.items()}
    skid = {f: Signal.like(o, name=f"{prefix}_skid_{f}") for f, o in out.items()}
    for f in _ADDR_FIELDS:
        for i, p in enumerate(masters):
            with m.If(take[i]):
                m.d.comb += incoming[f].eq(getattr(p, prefix + f))
    m.d.comb += getattr(s, prefix + "id").eq(0)
    s_valid, s_ready = getattr(s, prefix + "valid"), getattr(s, prefix + "ready")
    skid_valid = Signal(name=f"{prefix}_skid_valid")
    free = Signal(name=f"{prefix}_free")  # the output register may load this cycle
    skid_next = Signal(name=f"{prefix}_skid_next")
    m.d.comb += [free.eq(~s_valid | s_ready),
                 skid_next.eq(Mux(free, skid_valid & accept, skid_valid | accept))]
    with m.If(free):
        with m.If(skid_valid):
            m.d.sync += [s_valid.eq(1)] + [out[f].eq(skid[f]) for f in _ADDR_FIELDS]
        with m.Else():
            m.d.sync += [s_valid.eq(accept)] + [out[f].eq(incoming[f]) for f in _ADDR_FIELDS]
    with m.If(accept & (skid_valid | ~free)):  # ``take`` guarantees the skid is free when ~free
        m.d.sync += [skid[f].eq(incoming[f]) for f in _ADDR_FIELDS]
    m.d.sync += [skid_valid.eq(skid_next), take.eq(Mux(~skid_next & ~blocked_next, sel_next, 0))]
    return accept, index


def _route(m: Module, head, masters: list, dst, name: str) -> None:
    """dst = ``name`` of the master at ``head`` (0 when head names none)."""
    with m.Switch(head):
        for i, p in enumerate(masters):
            with m.Case(i):
                m.d.comb += dst.eq(getattr(p, name))


def _check(n: int, max_outstanding: int) -> None:
    if n < 1:
        raise ValueError(f"n {n} must be >= 1")
    if not 1 <= max_outstanding <= 256:
        raise ValueError(f"max_outstanding {max_outstanding} must be in 1..256")


class AxiReadArbiter(wiring.Component):
    """``n`` read masters ``m0 .. m{n-1}`` (each an :class:`AxiReadSignature` port: connect a unit's
    ``axi`` to it) onto the slave port ``s``; at most ``max_outstanding`` bursts in flight."""

    def __init__(self, n: int, *, addr_width: int = 40, data_width: int = 128, max_outstanding: int = 16):
        _check(n, max_outstanding)
        self.n, self.max_outstanding = n, max_outstanding
        sig = AxiReadSignature(addr_width, data_width)
        super().__init__({**{f"m{i}": In(sig) for i in range(n)}, "s": Out(sig)})
        self.masters = [getattr(self, f"m{i}") for i in range(n)]

    def elaborate(self, platform) -> Module:
        m = Module()
        s, ms = self.s, self.masters
        m.submodules.order = order = _OrderQueue(max(1, ceil_log2(self.n)), self.max_outstanding)
        accept, index = _address_channel(m, ms, s, "ar", order.full_next)
        m.d.comb += [order.push.eq(accept), order.index.eq(index)]
        # R: the slave answers in AR order, so only ever for a burst in the queue (head valid).
        for i, p in enumerate(ms):
            m.d.comb += [p.rvalid.eq(s.rvalid & (order.head == i)),
                         p.rdata.eq(s.rdata), p.rresp.eq(s.rresp), p.rlast.eq(s.rlast), p.rid.eq(s.rid)]
        _route(m, order.head, ms, s.rready, "rready")
        m.d.comb += order.pop.eq(s.rvalid & s.rready & s.rlast)
        return m


class AxiWriteArbiter(wiring.Component):
    """``n`` write masters ``m0 .. m{n-1}`` (each an :class:`AxiWriteSignature` port) onto the slave
    port ``s``; at most ``max_outstanding`` bursts awaiting B."""

    def __init__(self, n: int, *, addr_width: int = 40, data_width: int = 128, max_outstanding: int = 16):
        _check(n, max_outstanding)
        self.n, self.max_outstanding = n, max_outstanding
        sig = AxiWriteSignature(addr_width, data_width)
        super().__init__({**{f"m{i}": In(sig) for i in range(n)}, "s": Out(sig)})
        self.masters = [getattr(self, f"m{i}") for i in range(n)]

    def elaborate(self, platform) -> Module:
        m = Module()
        s, ms = self.s, self.masters
        width = max(1, ceil_log2(self.n))
        m.submodules.w_order = w_order = _OrderQueue(width, self.max_outstanding)
        m.submodules.b_order = b_order = _OrderQueue(width, self.max_outstanding)
        # A burst leaves the W queue (at wlast) before its B arrives, so the W queue never holds
        # more than the B queue: B full covers both.
        accept, index = _address_channel(m, ms, s, "aw", b_order.full_next)
        m.d.comb += [w_order.push.eq(accept), w_order.index.eq(index),
                     b_order.push.eq(accept), b_order.index.eq(index)]
        # W: from the master at the W-queue head only (a master may offer W before its AW is taken).
        w_valid = Signal()
        _route(m, w_order.head, ms, w_valid, "wvalid")
        for name in ("wdata", "wstrb", "wlast"):
            _route(m, w_order.head, ms, getattr(s, name), name)
        m.d.comb += s.wvalid.eq(w_order.nonempty & w_valid)
        for i, p in enumerate(ms):
            m.d.comb += p.wready.eq(s.wready & w_order.nonempty & (w_order.head == i))
        m.d.comb += w_order.pop.eq(s.wvalid & s.wready & s.wlast)
        # B: in AW order.
        for i, p in enumerate(ms):
            m.d.comb += [p.bvalid.eq(s.bvalid & (b_order.head == i)), p.bresp.eq(s.bresp), p.bid.eq(s.bid)]
        _route(m, b_order.head, ms, s.bready, "bready")
        m.d.comb += b_order.pop.eq(s.bvalid & s.bready)
        return m
