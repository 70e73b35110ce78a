"""AXI4 read master that streams one contiguous region per command.

:class:`AxiReader` turns a command ``(addr, beats)`` into INCR bursts of at most ``max_burst`` beats
that never cross a 4 KiB boundary, keeps up to ``max_outstanding`` of them in flight, and delivers
the returned beats in address order through a BRAM FIFO.

Credits: a burst is issued only when ``reserved <= fifo_depth - max_burst`` (checked one cycle
ahead, from a register), where ``reserved`` counts every beat requested (AR pending or accepted) and
not yet taken by the consumer. So the FIFO always has room for every beat in flight, ``rready``
stays high and a slow consumer never stalls the bus.

Timing (consumer always ready, no AR stalls): command handshake at edge N, first ``arvalid`` after
edge N+2, then one AR every other cycle (every cycle when ``max_burst`` is 1) while credits and the
outstanding limit allow; an R beat accepted at
edge M is on ``data`` after edge M+2. It sustains one beat per cycle while the read latency (in
cycles) stays below about ``fifo_depth - max_burst`` and ``max_outstanding * max_burst`` beats
(defaults 512/128/8: up to ~380 cycles).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from . import bursts
from .signature import AxiReadSignature

PAGE_BYTES = bursts.PAGE_BYTES


def cmd_layout(addr_width: int, len_width: int) -> data.StructLayout:
    """Payload of :attr:`AxiReader.cmd`: byte address (beat-aligned) and beat count."""
    return data.StructLayout({"addr": addr_width, "beats": len_width})


class AxiReader(wiring.Component):
    """Streams ``cmd.beats`` beats from byte address ``cmd.addr`` out of ``data``, in address order.

    ``cmd`` is accepted only while idle on the issue side (``cmd.ready`` = no command being issued):
    the next command is taken the cycle after the previous one's last AR was loaded, so its beats may
    still be in flight. The low ``log2(data_width // 8)`` address bits are ignored; ``beats == 0``
    is accepted and does nothing.

    ``error`` is sticky: set by any R beat with RRESP SLVERR/DECERR (that beat is still delivered, so
    the stream always completes), cleared by ``error_clear`` (a new error in the same cycle wins).
    ``error_addr``: byte address (the AR address) of the first burst that answered an error since the
    last clear; it follows ``error`` one cycle later.
    ``busy``: a command is being issued, or beats are requested, in flight or buffered.
    """

    def __init__(self, *, addr_width: int = 40, data_width: int = 128, len_width: int = 24,
                 max_burst: int = 128, fifo_depth: int = 512, max_outstanding: int = 8):
        if not 12 <= addr_width <= 64:
            raise ValueError(f"addr_width {addr_width} must be in 12..64")
        if not 8 <= data_width <= 1024 or data_width & (data_width - 1):
            raise ValueError(f"data_width {data_width} must be a power of two in 8..1024")
        if not 1 <= len_width <= 64:
            raise ValueError(f"len_width {len_width} must be in 1..64")
        if not 1 <= max_burst <= 256:
            raise ValueError(f"max_burst {max_burst} must be in 1..256 (AXI4 INCR limit)")
        # SyncFIFOBuffered(depth=2) refuses a write while moving its one entry to the output
        # register, which would break "credit => room"; from depth 4 its w_rdy is exactly level < depth.
        if fifo_depth < max(4, max_burst) or fifo_depth & (fifo_depth - 1):
            raise ValueError(f"fifo_depth {fifo_depth} must be a power of two >= max(4, max_burst "
                             f"{max_burst})")
        if max_outstanding < 1:
            raise ValueError(f"max_outstanding {max_outstanding} must be >= 1")
        self.addr_width, self.data_width, self.len_width = addr_width, data_width, len_width
        self.max_burst, self.fifo_depth, self.max_outstanding = max_burst, fifo_depth, max_outstanding
        self.beat_shift = exact_log2(data_width // 8)  # = arsize
        super().__init__({
            "cmd": In(stream.Signature(cmd_layout(addr_width, len_width))),
            "data": Out(stream.Signature(data_width)),
            "axi": Out(AxiReadSignature(addr_width, data_width)),
            "error": Out(1),
            "error_addr": Out(addr_width),
            "error_clear": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        axi, shift = self.axi, self.beat_shift

        # Issue side: the command split into 4 KiB-safe bursts (rtl/axi/bursts.py), all from registers.
        bs = bursts.split(m, self.cmd, addr_width=self.addr_width, len_width=self.len_width,
                          data_width=self.data_width, max_burst=self.max_burst)
        active, burst, burst_ok = bs.active, bs.burst, bs.ready

        # Credits: beats requested and not yet consumed; bursts whose last beat has not arrived.
        # Both checks are registered one cycle ahead and reserve a whole max_burst (conservative for
        # a short final burst); the consumer's pops are counted a cycle late (conservative too).
        # This keeps the issue decision off the adder chains and the consumer's ready logic.
        reserved = Signal(range(self.fifo_depth + 1))
        outstanding = Signal(range(self.max_outstanding + 1))
        credit_ok = Signal(init=1)
        slot_ok = Signal(init=1)
        pop = Signal()
        m.d.sync += pop.eq(self.data.valid & self.data.ready)
        r_beat = axi.rvalid & axi.rready
        r_done = r_beat & axi.rlast

        # The AR register reloads when empty or being accepted.
        issue = Signal()
        m.d.comb += issue.eq(active & burst_ok & (~axi.arvalid | axi.arready) & credit_ok & slot_ok)
        bursts.drive_address(m, axi, "ar", bs, issue, self.data_width)
        reserved_next = Signal(range(self.fifo_depth + self.max_burst + 1))
        outstanding_next = Signal(range(self.max_outstanding + 2))
        m.d.comb += [reserved_next.eq(reserved + Mux(issue, burst, 0) - pop),
                     outstanding_next.eq(outstanding + issue - r_done)]
        m.d.sync += [
            reserved.eq(reserved_next),
            outstanding.eq(outstanding_next),
            credit_ok.eq(reserved_next <= self.fifo_depth - self.max_burst),
            slot_ok.eq(outstanding_next < self.max_outstanding),
        ]

        # R side: credits guarantee room, so w_rdy (= rready) stays high; it is only a safety net.
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.data_width, depth=self.fifo_depth)
        m.d.comb += [
            fifo.w_data.eq(axi.rdata),
            fifo.w_en.eq(axi.rvalid),
            axi.rready.eq(fifo.w_rdy),
            self.data.payload.eq(fifo.r_data),
            self.data.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.data.ready),
        ]
        # Addresses of the bursts accepted on AR, popped at rlast (R answers in AR order); at most
        # max_outstanding are live, so the ring needs no full check. The error-address logic runs one
        # cycle behind the R channel (registered beat flags), which keeps it off the rready path; the
        # ring's head then names the burst that answered that cycle's beat.
        ring_bits = max(1, ceil_log2(self.max_outstanding))
        m.submodules.addr_ring = addr_ring = Memory(shape=self.addr_width - shift, depth=1 << ring_bits,
                                                    init=[])
        ring_w, ring_r = addr_ring.write_port(), addr_ring.read_port(domain="comb")
        ring_wr, ring_rd = Signal(ring_bits), Signal(ring_bits)
        beat_d, last_d, resp_d, clear_d, captured = Signal(), Signal(), Signal(), Signal(), Signal()
        m.d.comb += [
            ring_w.addr.eq(ring_wr), ring_w.data.eq(axi.araddr[shift:]),
            ring_w.en.eq(axi.arvalid & axi.arready),
            ring_r.addr.eq(ring_rd),
        ]
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += ring_wr.eq(ring_wr + 1)
        m.d.sync += [beat_d.eq(r_beat), last_d.eq(axi.rlast), resp_d.eq(axi.rresp[1]),
                     clear_d.eq(self.error_clear)]
        with m.If(beat_d & last_d):
            m.d.sync += ring_rd.eq(ring_rd + 1)
        with m.If(beat_d & resp_d & (~captured | clear_d)):  # as error below: a new error wins over a clear
            m.d.sync += [self.error_addr.eq(Cat(Const(0, shift), ring_r.data)), captured.eq(1)]
        with m.Elif(clear_d):
            m.d.sync += captured.eq(0)

        with m.If(r_beat & axi.rresp[1]):  # SLVERR (0b10) or DECERR (0b11)
            m.d.sync += self.error.eq(1)
        with m.Elif(self.error_clear):
            m.d.sync += self.error.eq(0)

        m.d.comb += self.busy.eq(active | (reserved != 0))
        return m
