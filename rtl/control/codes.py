"""The accelerator's codes in plain Python (no Amaranth): opcodes, flags, modes, op classes and error
codes. rtl/control/isa.py re-exports them beside the descriptor layout; host code imports them here."""
from __future__ import annotations

import enum


class Op(enum.IntEnum):
    # 0 is not an op: a zeroed descriptor (a program that ran past its end) is a BAD_OPCODE error
    END = 1
    EMBED = 2
    NORM_QUANT = 3
    MATMUL = 4
    BIAS = 5
    ROPE = 6
    KV_WRITE = 7
    ATTN = 8
    HEAD = 9
    STORE = 10


class Flag(enum.IntFlag):
    LAST_TOKEN = 1
    LAST_BLOCK = 2
    RAW = 4  # MATMUL: raw integer sums
    PRESCANNED = 8  # NORM_QUANT RMS/ABSMAX: max |h| per lane from the MATMUL unit, no scanning pass


class NormMode(enum.IntEnum):
    RMS = 0
    ABSMAX = 1
    HEADS = 2


class Epilogue(enum.IntEnum):
    STORE = 0
    RESIDUAL = 1
    SILU = 2
    RELU2 = 3
    GATE = 4
    TOPK = 5


class StoreMode(enum.IntEnum):
    I32 = 0
    I8 = 1


class OpClass(enum.IntEnum):
    """Cycle-counter classes (the CYCLES_* registers)."""

    MATMUL = 0
    ATTENTION = 1
    VECTOR = 2
    HEAD = 3


OP_CLASS = {Op.EMBED: OpClass.VECTOR, Op.NORM_QUANT: OpClass.VECTOR, Op.MATMUL: OpClass.MATMUL,
            Op.BIAS: OpClass.VECTOR, Op.ROPE: OpClass.VECTOR, Op.KV_WRITE: OpClass.ATTENTION,
            Op.ATTN: OpClass.ATTENTION, Op.HEAD: OpClass.HEAD, Op.STORE: OpClass.VECTOR}
# a MATMUL with the TOPK epilogue counts as HEAD


class ErrorCode(enum.IntEnum):
    """The ERROR_CODE register (ERROR_DOCS says what ERROR_ADDR holds for each)."""

    OK = 0
    AXI_READ = 1
    AXI_WRITE = 2
    BAD_OPCODE = 3
    PROGRAM_BOUNDS = 4
    ABORTED = 5
    BAD_TOKEN = 6
    BAD_CALL = 7
    BAD_DESC = 8


ERROR_DOCS = {
    ErrorCode.OK: "no error",
    ErrorCode.AXI_READ: "a DDR read answered SLVERR/DECERR; ERROR_ADDR: the failing burst",
    ErrorCode.AXI_WRITE: "a DDR write answered SLVERR/DECERR; ERROR_ADDR: the failing burst",
    ErrorCode.BAD_OPCODE: "a descriptor with an unknown op; ERROR_ADDR: the descriptor",
    ErrorCode.PROGRAM_BOUNDS: "a descriptor fetch outside [PROGRAM, PROGRAM + PROGRAM_SIZE); ERROR_ADDR: its address",
    ErrorCode.ABORTED: "the host wrote CONTROL.ABORT; ERROR_ADDR: the descriptor that was running",
    ErrorCode.BAD_TOKEN: "a token id >= vocab; ERROR_ADDR: the token's address",
    ErrorCode.BAD_CALL: "COUNT is 0",
    ErrorCode.BAD_DESC: "a descriptor field beyond the generated maxima; ERROR_ADDR: the descriptor",
}
