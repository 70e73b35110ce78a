"""One token lane of the matmul epilogue's multiplying modes: SiLU, ReLU² and the gate product.

``mode`` picks what ``out`` becomes for an input ``x`` (the engine's FX output) and ``a`` (the VMEM word
the epilogue read for this row), exactly as ``sim/numerics/fixed.py`` ``gated_act`` (docs/numerics.md
"MLP"):

- SILU:  ``rshift_round(x * sigmoid_fx(x), 16)`` (fits int32: ``sigmoid_fx <= 2**16``),
- RELU2: ``sat32(rshift_round(max(x, 0)**2, 16))``,
- GATE:  ``sat32(rshift_round(a * x, 16))`` (gated_act's second step, with ``a`` the activation).

All three share one signed 32x32 multiplier (several DSP48E2s). ``sigmoid_fx`` comes from a ROM of
1024 words ``{SIG[k], SIG[k+1] - SIG[k]}`` (sim/numerics/tables.py; the step is at most 10 bits), so
one read gives the base and the slope of the segment, then a 10x11 DSP multiply interpolates.
For ``-16 <= x < 16`` (``-2**20 <= x < 2**20``, i.e. bits 20..31 of ``x`` all equal) the table
offset ``x + 2**20`` is ``x[0:21]`` with bit 20 flipped: segment ``k`` = its top 10 bits, fraction ``f`` =
``x[0:11]``. Outside, the sigmoid is 0 (negative) or ``2**16``.

Pipeline: ``LATENCY`` = 8 cycles from ``valid``/``x``/``a`` to ``out_valid``/``out``, one value per
cycle, no back-pressure (``mode`` must be steady while values are in flight):

1. ROM read; fraction and range flags
2. slope x fraction (DSP)
3. sigmoid = base + rounded interpolation (or the clamp)
4. multiplier operands by mode
5-6. the 32x32 product (DSP, two registers)
7. round half up, shift by 16
8. saturate to int32
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ternfpga.sim.numerics.spec import FX_FRAC, SIG_STEP_SHIFT
from ternfpga.sim.numerics.tables import SIG_LO, sigmoid_table

LATENCY = 8
SIG_BITS = 17  # SIG[k] in 0..2**16
SLOPE_BITS = 10  # SIG[k+1] - SIG[k] <= 512
SEGMENTS = 1024
RANGE_BIT = (-SIG_LO).bit_length() - 1 + FX_FRAC  # 20: the table covers [-2**20, 2**20) in FX


class ActMode(enum.Enum, shape=2):
    SILU = 0
    RELU2 = 1
    GATE = 2


def sigmoid_rom_words() -> list[int]:
    """The ROM: word k = ``SIG[k] | (SIG[k+1] - SIG[k]) << 17``."""
    sig = [int(v) for v in sigmoid_table()]
    if len(sig) != SEGMENTS + 1 or 1 << RANGE_BIT != -SIG_LO << FX_FRAC or \
            SEGMENTS << SIG_STEP_SHIFT != 2 << RANGE_BIT:
        raise ValueError("the sigmoid table does not match the ROM's segmenting")
    words = []
    for k in range(SEGMENTS):
        slope = sig[k + 1] - sig[k]
        if not 0 <= slope < 1 << SLOPE_BITS or not 0 <= sig[k] < 1 << SIG_BITS:
            raise ValueError(f"sigmoid table entry {k} does not fit the ROM word")
        words.append(sig[k] | slope << SIG_BITS)
    return words


class ActLane(wiring.Component):
    """SiLU / ReLU² / gate product of one lane; see the module docstring."""

    def __init__(self):
        super().__init__({
            "mode": In(ActMode),
            "valid": In(1),
            "x": In(signed(32)),
            "a": In(signed(32)),
            "out_valid": Out(1),
            "out": Out(signed(32)),
        })

    def elaborate(self, platform):
        m = Module()
        valid = [Signal(name=f"v{i}") for i in range(1, LATENCY)]
        m.d.sync += [valid[0].eq(self.valid)] + [valid[i].eq(valid[i - 1]) for i in range(1, LATENCY - 1)]
        m.d.sync += self.out_valid.eq(valid[-1])

        # x and a travel beside the sigmoid until the operand stage (4)
        xs = [Signal(signed(32), name=f"x{i}") for i in range(1, 4)]
        as_ = [Signal(signed(32), name=f"a{i}") for i in range(1, 4)]
        m.d.sync += [xs[0].eq(self.x), as_[0].eq(self.a)]
        m.d.sync += [xs[i].eq(xs[i - 1]) for i in (1, 2)] + [as_[i].eq(as_[i - 1]) for i in (1, 2)]

        # 1: ROM read (registered by the BRAM); fraction and range flags
        m.submodules.rom = rom = Memory(shape=SIG_BITS + SLOPE_BITS, depth=SEGMENTS, init=sigmoid_rom_words())
        rd = rom.read_port(transparent_for=())
        x = self.x
        m.d.comb += rd.addr.eq(Cat(x[SIG_STEP_SHIFT:RANGE_BIT], ~x[RANGE_BIT]))
        frac1 = Signal(SIG_STEP_SHIFT)
        inside1 = Signal()
        neg1 = Signal()
        top = x[RANGE_BIT:]
        m.d.sync += [frac1.eq(x[:SIG_STEP_SHIFT]), neg1.eq(x[31]),
                     inside1.eq(top.all() | ~top.any())]
        # 2: slope x fraction
        interp2 = Signal(SLOPE_BITS + SIG_STEP_SHIFT)
        base2 = Signal(SIG_BITS)
        inside2 = Signal()
        neg2 = Signal()
        m.d.sync += [interp2.eq(rd.data[SIG_BITS:] * frac1), base2.eq(rd.data[:SIG_BITS]),
                     inside2.eq(inside1), neg2.eq(neg1)]
        # 3: sigmoid in Q0.16 (0..2**16)
        sig3 = Signal(SIG_BITS)
        step = (interp2 + (1 << (SIG_STEP_SHIFT - 1)))[SIG_STEP_SHIFT:]
        m.d.sync += sig3.eq(Mux(inside2, base2 + step, Mux(neg2, 0, 1 << FX_FRAC)))

        # 4: multiplier operands
        x3, a3 = xs[2], as_[2]
        relu3 = Mux(x3[31], 0, x3)
        op_a = Signal(signed(32))
        op_b = Signal(signed(32))
        with m.Switch(self.mode):
            with m.Case(ActMode.SILU):
                m.d.sync += [op_a.eq(x3), op_b.eq(sig3)]
            with m.Case(ActMode.RELU2):
                m.d.sync += [op_a.eq(relu3), op_b.eq(relu3)]
            with m.Default():
                m.d.sync += [op_a.eq(a3), op_b.eq(x3)]
        # 5, 6: the product (|a * x| <= 2**62), a second register for the DSP pipeline
        prod5 = Signal(signed(64))
        prod6 = Signal(signed(64))
        m.d.sync += [prod5.eq(op_a * op_b), prod6.eq(prod5)]
        # 7: round half up
        rnd7 = Signal(signed(64 - FX_FRAC))
        m.d.sync += rnd7.eq((prod6 + (1 << (FX_FRAC - 1))) >> FX_FRAC)
        # 8: saturate (SiLU never needs it: |x * sigmoid| <= |x| * 2**16)
        high = rnd7[31:]
        fits = high.all() | ~high.any()
        m.d.sync += self.out.eq(Mux(fits, rnd7[:32], Mux(rnd7[-1], -(1 << 31), (1 << 31) - 1)))
        return m
