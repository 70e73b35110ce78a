"""Binary min-heap of ``{key, payload}`` entries in block RAM, ordered by the unsigned ``key``.

The caller encodes its order into the key (the smallest key is the root): top-K keeps the K best with
``{score offset-binary, ~row}`` (the root is the worst kept), sorting pops the same structure.

Layout: heap positions ``1..capacity`` (position ``p`` holds array index ``p - 1``; the children of
``p`` are ``2p`` and ``2p + 1``). Two memories, one per position parity, each ``capacity // 2 + 1``
deep: position ``p`` lives in bank ``p & 1`` at word ``p >> 1``, so both children of ``p`` (word ``p``)
come out of one read cycle. The entry being placed stays in a register while it travels (the "hole"
method: one write per level, never a swap). The root is also kept in the ``top`` register.

Operations, one at a time, each a one-cycle pulse while not ``busy`` (at most one per cycle; if several
come, clear wins, then push, replace_top, pop); ``entry`` is sampled with push and replace_top:

- ``clear``: empty the heap in the cycle of the pulse (also aborts a running operation; no busy cycle).
- ``push`` (ignored when ``full``): append at position ``count + 1`` and sift up.
- ``replace_top`` (ignored when ``empty``): put ``entry`` at the root and sift down.
- ``pop`` (ignored when ``empty``): move the last entry to the root and sift down.

Cost (``busy`` cycles after the cycle of the pulse; a level compared costs 2 cycles: read the
child pair / parent, then register the compares; then decide, write and read the next level):

- push: ``2 * c + f``: ``c`` parents compared (0 into an empty heap), ``f = 1`` when it reaches the root.
- replace_top: ``2 * c + f``: ``c`` child pairs compared, ``f = 1`` when it stops at a leaf.
- pop: ``1 +`` the replace_top cost (the last entry is read first).
Worst case ``2 * floor(log2(capacity)) + 1`` (+1 for pop): 17 (18) cycles at capacity 256.

``count`` takes its new value in the cycle after a push/pop pulse; ``top`` (valid while not ``empty``)
is final whenever the heap is not busy and only ever holds the true root: during a replace_top it holds
the old root until the new root is written. Raw read: ``rd_addr`` (array index, heap order) in a cycle
that is not busy and starts no operation, ``rd_data`` the cycle after.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

# controller states
IDLE, POP_LOAD, UP_CMP, UP_DEC, DN_CMP, DN_DEC, FINAL = range(7)


def entry_layout(key_width: int, payload_width: int) -> data.StructLayout:
    return data.StructLayout({"key": key_width, "payload": payload_width})


class Heap(wiring.Component):
    """Min-heap of ``capacity`` entries (see the module docstring)."""

    def __init__(self, capacity: int, key_width: int, payload_width: int = 0):
        if capacity < 1:
            raise ValueError(f"heap capacity {capacity} must be >= 1")
        if key_width < 1:
            raise ValueError(f"heap key_width {key_width} must be >= 1")
        if payload_width < 0:
            raise ValueError(f"heap payload_width {payload_width} must be >= 0")
        self.capacity, self.key_width, self.payload_width = capacity, key_width, payload_width
        self.layout = entry_layout(key_width, payload_width)
        super().__init__({
            "clear": In(1),
            "push": In(1),
            "replace_top": In(1),
            "pop": In(1),
            "entry": In(self.layout),
            "busy": Out(1),
            "count": Out(range(capacity + 1)),
            "top": Out(self.layout),
            "empty": Out(1),
            "full": Out(1),
            "rd_addr": In(range(max(capacity, 2))),
            "rd_data": Out(self.layout),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cap = self.capacity
        depth = cap // 2 + 1
        rd, wr = [], []
        for b in range(2):
            mem = Memory(shape=self.layout, depth=depth, init=[])
            m.submodules[f"bank{b}"] = mem
            rd.append(mem.read_port(transparent_for=()))
            wr.append(mem.write_port())
        d0, d1 = rd[0].data, rd[1].data  # positions 2w and 2w + 1 of the word read last cycle

        state = Signal(range(7))
        busy = Signal()  # state != IDLE, as its own flip-flop: callers decide on it
        count = Signal(range(cap + 1))
        full = Signal()  # count == cap, registered like the two below
        empty = Signal(init=1)
        single = Signal()  # count == 1
        push_word = Signal(range(depth))  # (count + 1) >> 2: the parent of the next push
        pop_word = Signal(range(depth))  # count >> 1: the last entry
        hole = Signal(range(max(cap + 1, 4)))  # the position the travelling entry may take
        x = Signal(self.layout)  # the travelling entry
        cand = Signal(self.layout)  # the child (sift down) or parent (sift up) compared with x
        lt = Signal()  # cand goes before x: it moves into the hole
        sel = Signal()  # sift down: cand is the right child
        next_stop = Signal()  # sift down: cand has children; sift up: cand is the root
        has_right = Signal()  # sift down: the hole has a right child (2h + 1 <= count)
        rd_bank = Signal()
        rd_word = Signal(range(depth))
        wr_en = Signal()
        wr_cand = Signal()
        wr_data = Signal(self.layout)

        m.d.comb += [
            self.busy.eq(busy),
            self.count.eq(count),
            self.empty.eq(empty),
            self.full.eq(full),
            self.rd_data.eq(Mux(rd_bank, d1, d0)),
            wr_data.eq(Mux(wr_cand, cand, x)),
        ]
        for b in range(2):
            m.d.comb += [rd[b].addr.eq(rd_word),
                         wr[b].addr.eq(hole >> 1), wr[b].data.eq(wr_data), wr[b].en.eq(wr_en & (hole[0] == b))]
        with m.If(wr_en & (hole == 1)):
            m.d.sync += self.top.eq(wr_data)
        m.d.sync += rd_bank.eq(~self.rd_addr[0])  # array index a is position a + 1
        # count only changes as an operation starts, and every operation but clear stays busy for at
        # least one cycle, so these are current again whenever the heap is idle (after a clear the
        # words are stale, but an empty heap reads no word to start an operation)
        m.d.sync += [push_word.eq((count + 1) >> 2), pop_word.eq(count >> 1)]

        def go(next_state, next_busy=1):
            m.d.sync += [state.eq(next_state), busy.eq(next_busy)]

        def set_count(value, now_full, now_empty, now_single):
            m.d.sync += [count.eq(value), full.eq(now_full), empty.eq(now_empty), single.eq(now_single)]

        with m.Switch(state):
            with m.Case(IDLE):
                # the operands load whatever the pulse (they are unused unless an operation starts), so
                # the pulses only steer the read address, the state and the count
                m.d.comb += rd_word.eq(Mux(self.push, push_word, Mux(self.replace_top, 1,  # root's children
                                                                     Mux(self.pop, pop_word,
                                                                         (self.rd_addr + 1) >> 1))))
                m.d.sync += [x.eq(self.entry), has_right.eq(count >= 3),
                             hole.eq(Mux(self.push, count + 1, Mux(self.replace_top, 1, count)))]
                with m.If(self.push):
                    with m.If(~full):
                        set_count(count + 1, count == cap - 1, 0, empty)
                        go(Mux(empty, FINAL, UP_CMP))
                with m.Elif(self.replace_top):
                    with m.If(~empty):
                        go(Mux(single, FINAL, DN_CMP))
                with m.Elif(self.pop):
                    with m.If(~empty):
                        set_count(count - 1, 0, single, count == 2)
                        go(POP_LOAD)
            with m.Case(POP_LOAD):
                m.d.comb += rd_word.eq(1)
                m.d.sync += [x.eq(Mux(hole[0], d1, d0)), hole.eq(1), has_right.eq(count >= 3)]
                go(Mux(empty, IDLE, Mux(single, FINAL, DN_CMP)), ~empty)
            with m.Case(UP_CMP):
                m.d.sync += [cand.eq(Mux(hole[1], d1, d0)), lt.eq(x.key < Mux(hole[1], d1.key, d0.key)),
                             next_stop.eq(hole < 4)]
                go(UP_DEC)
            with m.Case(UP_DEC):
                m.d.comb += [wr_en.eq(1), wr_cand.eq(lt), rd_word.eq(hole >> 3)]
                with m.If(lt):
                    m.d.sync += hole.eq(hole >> 1)
                    go(Mux(next_stop, FINAL, UP_CMP))
                with m.Else():
                    go(IDLE, 0)
            with m.Case(DN_CMP):
                # three key compares side by side, only muxes after them; the position compares
                # (for either child as the next hole) depend on registers only
                right = has_right & (d1.key < d0.key)
                h4 = hole << 2
                m.d.sync += [
                    sel.eq(right),
                    cand.eq(Mux(right, d1, d0)),
                    lt.eq(Mux(right, d1.key < x.key, d0.key < x.key)),
                    next_stop.eq(Mux(right, h4 + 2 <= count, h4 <= count)),
                    has_right.eq(Mux(right, h4 + 3 <= count, h4 + 1 <= count)),
                ]
                go(DN_DEC)
            with m.Case(DN_DEC):
                child = Cat(sel, hole)
                m.d.comb += [wr_en.eq(1), wr_cand.eq(lt), rd_word.eq(child)]
                with m.If(lt):
                    m.d.sync += hole.eq(child)
                    go(Mux(next_stop, DN_CMP, FINAL))
                with m.Else():
                    go(IDLE, 0)
            with m.Case(FINAL):
                m.d.comb += wr_en.eq(1)
                go(IDLE, 0)

        with m.If(self.clear):
            go(IDLE, 0)
            set_count(0, 0, 1, 0)
        return m
