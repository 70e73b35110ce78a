"""AXI4 write master that writes one contiguous region per command: the mirror of :mod:`.reader`.

:class:`AxiWriter` takes a command ``(addr, beats)`` and exactly ``beats`` data beats (data + byte
strobes) from the producer, in order. The beats collect in a BRAM FIFO; the command is split into
INCR bursts of at most ``max_burst`` beats that never cross a 4 KiB boundary, and a burst's AW is
issued only once all of its beats are in the FIFO, so W never waits on the producer mid-burst. W
beats follow AW order (``wlast`` from a small ring of issued burst lengths); up to
``max_outstanding`` bursts may await their B response.

Timing (producer and slave always ready): command handshake at edge N; a burst's AW is loaded at
the edge after its last beat was pushed (edge M+1, and not before N+2), its first W beat is offered
after edge M+2; at most one AW every other cycle (every cycle when ``max_burst`` is 1). It sustains
one beat per cycle on long commands while the B latency (in cycles) stays below about
``max_outstanding * max_burst`` (defaults 8 * 16) and the FIFO holds two bursts.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from . import bursts
from .reader import cmd_layout
from .signature import AxiWriteSignature


def beat_layout(data_width: int) -> data.StructLayout:
    """Payload of :attr:`AxiWriter.data`: one beat and its byte strobes (bit i enables byte i)."""
    return data.StructLayout({"data": data_width, "strb": data_width // 8})


class AxiWriter(wiring.Component):
    """Writes the beats pushed into ``data`` to ``cmd.beats`` consecutive beats from byte ``cmd.addr``.

    ``cmd`` is accepted only while no command is being split (``cmd.ready`` = not active): the next
    command is taken the cycle after the previous one's last AW was loaded, so its beats may still be
    in flight. The low ``log2(data_width // 8)`` address bits are ignored; ``beats == 0`` is accepted
    and does nothing. Data beats may be pushed before or after their command.

    ``error`` is sticky: set by a B response SLVERR/DECERR (that burst was answered, every other burst
    is still written), cleared by ``error_clear`` (a new error in the same cycle wins). ``error_addr``:
    byte address of the first burst that answered an error since the last clear. ``idle``: no command
    being split, no beat buffered, every issued burst's B response received; it rises one cycle after
    the last B and falls the cycle after a command or beat is accepted. ``busy`` = ``~idle``.
    """

    def __init__(self, *, addr_width: int = 40, data_width: int = 128, len_width: int = 24,
                 max_burst: int = 16, fifo_depth: int = 64, max_outstanding: int = 8):
        if not 12 <= addr_width <= 64:
            raise ValueError(f"addr_width {addr_width} must be in 12..64")
        if not 8 <= data_width <= 1024 or data_width & (data_width - 1):
            raise ValueError(f"data_width {data_width} must be a power of two in 8..1024")
        if not 1 <= len_width <= 64:
            raise ValueError(f"len_width {len_width} must be in 1..64")
        if not 1 <= max_burst <= 256:
            raise ValueError(f"max_burst {max_burst} must be in 1..256 (AXI4 INCR limit)")
        # A whole burst must fit in the FIFO before its AW goes out. From depth 4 SyncFIFOBuffered's
        # w_rdy is exactly level < depth (see reader.py), so "level >= burst" is always reachable.
        if fifo_depth < max(4, max_burst) or fifo_depth & (fifo_depth - 1):
            raise ValueError(f"fifo_depth {fifo_depth} must be a power of two >= max(4, max_burst "
                             f"{max_burst})")
        if not 1 <= max_outstanding <= 256:
            raise ValueError(f"max_outstanding {max_outstanding} must be in 1..256")
        self.addr_width, self.data_width, self.len_width = addr_width, data_width, len_width
        self.max_burst, self.fifo_depth, self.max_outstanding = max_burst, fifo_depth, max_outstanding
        self.beat_shift = exact_log2(data_width // 8)  # = awsize
        super().__init__({
            "cmd": In(stream.Signature(cmd_layout(addr_width, len_width))),
            "data": In(stream.Signature(beat_layout(data_width))),
            "axi": Out(AxiWriteSignature(addr_width, data_width)),
            "error": Out(1),
            "error_addr": Out(addr_width),
            "error_clear": In(1),
            "idle": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        axi, shift = self.axi, self.beat_shift

        # Issue side: the command split into 4 KiB-safe bursts (rtl/axi/bursts.py), all from registers.
        bs = bursts.split(m, self.cmd, addr_width=self.addr_width, len_width=self.len_width,
                          data_width=self.data_width, max_burst=self.max_burst)
        active, burst, burst_ok, beat_addr = bs.active, bs.burst, bs.ready, bs.beat_addr

        # Data FIFO. ``avail``: beats in it not yet claimed by an issued AW (a push counts from the
        # next cycle, by when the beat is stored). Claimed beats leave on W without waiting for anyone
        # but the slave, so a burst's AW only goes out once ``avail`` covers it.
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.data_width + self.data_width // 8,
                                                   depth=self.fifo_depth)
        push = Signal()
        m.d.comb += [
            fifo.w_data.eq(self.data.payload),
            fifo.w_en.eq(self.data.valid),
            self.data.ready.eq(fifo.w_rdy),
            push.eq(self.data.valid & fifo.w_rdy),
        ]
        avail = Signal(range(self.fifo_depth + 1))

        # Bursts issued and not yet answered on B; checked one cycle ahead from a register.
        outstanding = Signal(range(self.max_outstanding + 1))
        slot_ok = Signal(init=1)
        b_beat = Signal()
        m.d.comb += [axi.bready.eq(1), b_beat.eq(axi.bvalid)]

        # The AW register reloads when empty or being accepted.
        issue = Signal()
        m.d.comb += issue.eq(active & burst_ok & (~axi.awvalid | axi.awready) & slot_ok & (avail >= burst))
        bursts.drive_address(m, axi, "aw", bs, issue, self.data_width)
        outstanding_next = Signal(range(self.max_outstanding + 2))
        m.d.comb += outstanding_next.eq(outstanding + issue - b_beat)
        m.d.sync += [
            avail.eq(avail + push - Mux(issue, burst, 0)),
            outstanding.eq(outstanding_next),
            slot_ok.eq(outstanding_next < self.max_outstanding),
        ]

        # Rings of issued bursts (at most max_outstanding live entries, so no overflow check): their
        # lengths for the W side, their addresses for error_addr. Pushed at issue, one write pointer.
        ring_bits = max(1, ceil_log2(self.max_outstanding))
        m.submodules.len_ring = len_ring = Memory(shape=8, depth=1 << ring_bits, init=[])
        m.submodules.addr_ring = addr_ring = Memory(shape=self.addr_width - shift, depth=1 << ring_bits,
                                                    init=[])
        len_w, addr_w = len_ring.write_port(), addr_ring.write_port()
        len_r, addr_r = len_ring.read_port(domain="comb"), addr_ring.read_port(domain="comb")
        wr = Signal(ring_bits + 1)  # one extra bit tells a full ring from an empty one on the W side
        w_rd = Signal(ring_bits + 1)
        b_rd = Signal(ring_bits)
        m.d.comb += [
            len_w.addr.eq(wr[:ring_bits]), len_w.data.eq(burst - 1), len_w.en.eq(issue),
            addr_w.addr.eq(wr[:ring_bits]), addr_w.data.eq(beat_addr), addr_w.en.eq(issue),
            len_r.addr.eq(w_rd[:ring_bits]),
            addr_r.addr.eq(b_rd),
        ]
        with m.If(issue):
            m.d.sync += wr.eq(wr + 1)
        with m.If(b_beat):
            m.d.sync += b_rd.eq(b_rd + 1)

        # W side: the burst being sent (w_have), beats after the current one (w_left), and whether the
        # current beat is its last (w_last, registered). A burst is loaded from the ring as the
        # previous one's last beat goes, so bursts follow each other without a gap.
        w_have = Signal()
        w_left = Signal(8)
        w_last = Signal()
        w_beat = Signal()
        load = Signal()
        m.d.comb += [
            axi.wvalid.eq(w_have & fifo.r_rdy),
            axi.wdata.eq(fifo.r_data[:self.data_width]),
            axi.wstrb.eq(fifo.r_data[self.data_width:]),
            axi.wlast.eq(w_last),
            fifo.r_en.eq(w_have & axi.wready),
            w_beat.eq(axi.wvalid & axi.wready),
            load.eq((wr != w_rd) & (~w_have | (w_beat & w_last))),
        ]
        with m.If(load):
            m.d.sync += [w_have.eq(1), w_left.eq(len_r.data), w_last.eq(len_r.data == 0), w_rd.eq(w_rd + 1)]
        with m.Elif(w_beat):
            m.d.sync += [w_left.eq(w_left - 1), w_last.eq(w_left == 1)]
            with m.If(w_last):
                m.d.sync += w_have.eq(0)

        # B side: error and the address of the first failing burst (B answers in AW order).
        b_err = Signal()
        m.d.comb += b_err.eq(b_beat & axi.bresp[1])  # SLVERR (0b10) or DECERR (0b11)
        with m.If(b_err):
            m.d.sync += self.error.eq(1)
            with m.If(~self.error | self.error_clear):
                m.d.sync += self.error_addr.eq(Cat(Const(0, shift), addr_r.data))
        with m.Elif(self.error_clear):
            m.d.sync += self.error.eq(0)

        # idle, one cycle late but exact on the way down: only an accepted command or beat leaves
        # the idle state (nothing is issued while inactive), and both clear it at once.
        m.d.sync += self.idle.eq(~active & (avail == 0) & (outstanding == 0) & ~push & ~self.cmd.valid)
        m.d.comb += self.busy.eq(~self.idle)
        return m
