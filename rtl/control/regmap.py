"""The accelerator's register map: defined once here, in plain Python (no Amaranth, so the host imports it
on the board). The RTL register file (:mod:`~ternfpga.rtl.control.regfile`), the host's constants
(:mod:`ternfpga.host.regs`) and the C header (:mod:`~ternfpga.rtl.control.c_header`) are generated from it.

The host reaches the registers through an AXI4-Lite slave: the KV260's M_AXI_HPM0_FPD window at
0xA000_0000 (a generic UIO device on the board), and the same registers in the Verilator model. All
registers are 32 bits wide, at word-aligned byte offsets.

Access kinds (:class:`Access`):

- ``RO``: driven by the core (or a constant of the generation parameters); writes are ignored.
- ``RW``: host read/write, honouring ``wstrb``; only the bits of its fields are stored, others read 0.
- ``W1P``: write-1-pulse: each written 1 bit gives the core a one-cycle pulse; reads 0.
- ``W1C``: bits set by core events, cleared by the host writing 1 (an event in the same cycle wins).

A 64-bit quantity is a pair ``X_LO`` (at an 8-byte-aligned offset) and ``X_HI`` (4 bytes above). For a
read-only pair, reading LO captures HI in the same cycle, and reading HI returns that capture: a 64-bit
read (LO, then HI) never tears, even while the value runs.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from ternfpga.sim.numerics.spec import NUMERICS_VERSION

from .codes import ERROR_DOCS, ErrorCode

if TYPE_CHECKING:
    from ternfpga.rtl.accel_params import AccelParams

REGMAP_VERSION = 1
MAGIC = 0x4E524554  # b"TERN" read as a little-endian u32
WORD_BITS = 32


class Access(str, enum.Enum):
    RO = "RO"
    RW = "RW"
    W1P = "W1P"
    W1C = "W1C"


@dataclass(frozen=True)
class Register:
    """One 32-bit register. ``fields``: ``{name: (lsb, width, doc)}``; none means one 32-bit value.
    ``const``: an identification register, a constant of the generation parameters (:func:`identification`)."""

    name: str
    offset: int
    access: Access
    doc: str
    fields: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    reset: int = 0
    width: int = WORD_BITS
    const: bool = False

    def __post_init__(self):
        if not self.name.isidentifier() or self.name != self.name.upper():
            raise ValueError(f"register name {self.name!r} must be an upper-case identifier")
        if self.offset < 0 or self.offset % 4:
            raise ValueError(f"register {self.name}: offset {self.offset:#x} is not word aligned")
        if self.width != WORD_BITS:
            raise ValueError(f"register {self.name}: width {self.width} (registers are {WORD_BITS} bits)")
        if not self.doc.strip():
            raise ValueError(f"register {self.name} has no doc")
        if self.const and self.access is not Access.RO:
            raise ValueError(f"register {self.name}: a constant register must be RO")
        if self.access in (Access.W1P, Access.W1C) and not self.fields:
            raise ValueError(f"register {self.name}: {self.access.value} needs named bit fields")
        used = 0
        for fname, (lsb, width, fdoc) in self.fields.items():
            if not fname.isidentifier() or fname != fname.upper():
                raise ValueError(f"register {self.name}: field name {fname!r} must be an upper-case identifier")
            if width < 1 or lsb < 0 or lsb + width > self.width:
                raise ValueError(f"register {self.name}: field {fname} [{lsb + width - 1}:{lsb}] is out of range")
            if self.access in (Access.W1P, Access.W1C) and width != 1:
                raise ValueError(f"register {self.name}: {self.access.value} field {fname} must be 1 bit")
            if not fdoc.strip():
                raise ValueError(f"register {self.name}: field {fname} has no doc")
            mask = ((1 << width) - 1) << lsb
            if used & mask:
                raise ValueError(f"register {self.name}: field {fname} overlaps another field")
            used |= mask
        if self.reset & ~self.mask:
            raise ValueError(f"register {self.name}: reset {self.reset:#x} sets bits outside its fields")

    @property
    def mask(self) -> int:
        """The bits the register implements (all 32 when it has no fields)."""
        if not self.fields:
            return (1 << self.width) - 1
        return sum(((1 << w) - 1) << lsb for lsb, w, _ in self.fields.values())

    def field_mask(self, name: str) -> int:
        lsb, width, _ = self.fields[name]
        return ((1 << width) - 1) << lsb

    def field_shift(self, name: str) -> int:
        return self.fields[name][0]

    def get(self, value: int, name: str) -> int:
        """Field ``name`` of a value read from this register."""
        lsb, width, _ = self.fields[name]
        return (value >> lsb) & ((1 << width) - 1)


class RegMap:
    """An ordered set of registers: lookup by name (``regmap["STATUS"]``), by offset, and iteration in
    offset order. Checks that offsets do not overlap and that every ``X_LO`` has its ``X_HI`` 4 bytes up.

    ``irq``: the (W1C status register, RW enable register) pair whose same-named fields raise the
    interrupt output: irq = OR of (status & enable)."""

    def __init__(self, registers: list[Register], *, irq: tuple[str, str] | None = None,
                 version: int = REGMAP_VERSION):
        self.version = version
        self._regs = sorted(registers, key=lambda r: r.offset)
        self._by_name: dict[str, Register] = {}
        self._by_offset: dict[int, Register] = {}
        for r in self._regs:
            if r.name in self._by_name:
                raise ValueError(f"register name {r.name} is used twice")
            if r.offset in self._by_offset:
                raise ValueError(f"registers {self._by_offset[r.offset].name} and {r.name} share offset "
                                 f"{r.offset:#x}")
            self._by_name[r.name] = r
            self._by_offset[r.offset] = r
        self.pairs: dict[str, tuple[Register, Register]] = {}
        for r in self._regs:
            if r.name.endswith("_HI") and r.name[:-3] + "_LO" not in self._by_name:
                raise ValueError(f"register {r.name} has no {r.name[:-3]}_LO")
            if not r.name.endswith("_LO"):
                continue
            base = r.name[:-3]
            hi = self._by_name.get(base + "_HI")
            if hi is None or hi.offset != r.offset + 4 or r.offset % 8:
                raise ValueError(f"64-bit register {base}: {base}_LO must be 8-byte aligned with {base}_HI "
                                 f"4 bytes above it")
            if hi.access is not r.access or r.access not in (Access.RO, Access.RW) or r.fields or hi.fields:
                raise ValueError(f"64-bit register {base}: LO and HI must be the same RO or RW access, no fields")
            self.pairs[base] = (r, hi)
        self.irq = irq
        if irq is not None:
            status, enable = self[irq[0]], self[irq[1]]
            if status.access is not Access.W1C or enable.access is not Access.RW \
                    or set(status.fields) != set(enable.fields):
                raise ValueError(f"irq: {status.name} must be W1C and {enable.name} RW with the same fields")

    def __getitem__(self, name: str) -> Register:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no register named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Register]:
        return iter(self._regs)

    def __len__(self) -> int:
        return len(self._regs)

    def at(self, offset: int) -> Register | None:
        """The register at byte ``offset``, or None (unmapped)."""
        return self._by_offset.get(offset)

    @property
    def span(self) -> int:
        """Bytes from offset 0 to the end of the last register."""
        return self._regs[-1].offset + 4 if self._regs else 0

    def to_dict(self) -> dict:
        return {"version": self.version, "irq": list(self.irq) if self.irq else None, "registers": [
            {"name": r.name, "offset": r.offset, "access": r.access.value, "reset": r.reset, "const": r.const,
             "doc": r.doc, "fields": {n: {"lsb": lsb, "width": w, "doc": d} for n, (lsb, w, d) in r.fields.items()}}
            for r in self._regs]}


# ERROR_CODE values: the same names and numbers as rtl/control/isa.py ErrorCode (which imports Amaranth,
# so the host takes them from here; tests/test_regmap.py checks the two agree).
ERROR_CODES: dict[int, tuple[str, str]] = {int(c): (c.name, ERROR_DOCS[c]) for c in ErrorCode}

# identification registers holding one generation parameter: register -> AccelParams attribute
PARAM_REGISTERS: dict[str, tuple[str, str]] = {
    "BATCH": ("batch", "prefill block B: tokens per engine pass"),
    "MAX_HIDDEN": ("max_hidden", "largest hidden size the bitstream runs"),
    "MAX_FFN": ("max_ffn", "largest FFN (intermediate) size"),
    "MAX_HEADS": ("max_heads", "most query heads"),
    "MAX_KV_HEADS": ("max_kv_heads", "most KV heads"),
    "MAX_HEAD_DIM": ("max_head_dim", "largest head dim"),
    "MAX_CTX": ("max_ctx", "most tokens the KV cache and the attention buffers hold"),
    "MAX_VOCAB": ("max_vocab", "largest vocabulary"),
    "MAX_HEAD_K": ("max_head_k", "longest output-head shortlist (top K)"),
    "MAX_LAYERS": ("max_layers", "most layers"),
    "VMEM_DEPTH": ("vmem_words", "VMEM depth: 32-bit words per token lane"),
}

_IRQ_FIELDS = {"DONE": (0, 1, "a call ended (with or without an error)"),
               "ERROR": (1, 1, "a call ended with an error")}


def _counter(name: str, offset: int, what: str) -> list[Register]:
    return [Register(f"{name}_LO", offset, Access.RO, f"{what}, bits [31:0]; reading it captures {name}_HI"),
            Register(f"{name}_HI", offset + 4, Access.RO, f"{what}, bits [63:32], as captured by the last "
                                                          f"{name}_LO read")]


def _default_registers() -> list[Register]:
    ro, rw = Access.RO, Access.RW
    regs = [
        Register("MAGIC", 0x000, ro, 'constant 0x4E524554, "TERN" in little-endian bytes', const=True),
        Register("VERSION", 0x004, ro, "versions of the contracts the bitstream implements", const=True, fields={
            "NUMERICS": (0, 16, "numerics version (docs/numerics.md) the arithmetic is bit-exact with"),
            "REGMAP": (16, 16, "register map version (REGMAP_VERSION)")}),
        Register("PARAMS_HASH", 0x008, ro, "32-bit hash of the generation parameters (AccelParams.digest())",
                 const=True),
    ]
    for i, (name, (_, doc)) in enumerate(PARAM_REGISTERS.items()):
        regs.append(Register(name, 0x00C + 4 * i, ro, f"generation parameter: {doc}", const=True))
    regs += [
        Register("CONTROL", 0x040, Access.W1P, "starts or aborts a call (write 1 to a bit; reads 0)", fields={
            "START": (0, 1, "start a call with the PROGRAM/TOKENS/POSITION/COUNT registers (ignored while busy)"),
            "ABORT": (1, 1, "stop the running call at the next descriptor boundary; it ends with ABORTED")}),
        Register("STATUS", 0x044, ro, "state of the sequencer", fields={
            "BUSY": (0, 1, "a call is running"),
            "DONE": (1, 1, "a call has ended since the last START (cleared by START)"),
            "ERROR": (2, 1, "the last call ended with an error (ERROR_CODE, ERROR_DESC, ERROR_ADDR)")}),
        Register("ERROR_CODE", 0x048, ro, "error of the last call (0 OK; the ErrorCode values of isa.py)"),
        Register("ERROR_DESC", 0x04C, ro, "index of the descriptor that failed, from the program's start"),
        Register("ERROR_ADDR_LO", 0x050, ro, "DDR byte address the error code names, bits [31:0]"),
        Register("ERROR_ADDR_HI", 0x054, ro, "DDR byte address the error code names, bits [63:32] (as captured by "
                                             "the last ERROR_ADDR_LO read)"),
        Register("IRQ_ENABLE", 0x058, rw, "which IRQ_STATUS bits raise the interrupt", fields={
            k: (lsb, w, f"interrupt when IRQ_STATUS.{k} is set: {d}") for k, (lsb, w, d) in _IRQ_FIELDS.items()}),
        Register("IRQ_STATUS", 0x05C, Access.W1C, "interrupt events, set by the core, cleared by writing 1",
                 fields=_IRQ_FIELDS),
        Register("DDR_BASE_LO", 0x060, rw, "physical address every descriptor offset is relative to, bits [31:0]"),
        Register("DDR_BASE_HI", 0x064, rw, "physical address every descriptor offset is relative to, bits [63:32]"),
        Register("PROGRAM", 0x068, rw, "offset (from DDR_BASE) of the program's first descriptor"),
        Register("PROGRAM_SIZE", 0x06C, rw, "size of the program in bytes (a multiple of 64)"),
        Register("TOKENS", 0x070, rw, "offset (from DDR_BASE) of the call's u32 token ids"),
        Register("POSITION", 0x074, rw, "position of the call's first token"),
        Register("COUNT", 0x078, rw, "tokens in the call"),
    ]
    for i, (name, what) in enumerate((
            ("CYCLES_TOTAL", "cycles busy"),
            ("CYCLES_MATMUL", "cycles running MATMUL ops (not the head's)"),
            ("CYCLES_ATTENTION", "cycles running KV_WRITE and ATTN ops"),
            ("CYCLES_VECTOR", "cycles running EMBED, NORM_QUANT, BIAS, ROPE and STORE ops"),
            ("CYCLES_HEAD", "cycles running the output head (HEAD, MATMUL with the TOPK epilogue)"),
            ("CYCLES_MEMSTALL", "cycles the running op, or the descriptor fetch, waited on DDR"),
            ("OPS", "descriptors executed"))):
        regs += _counter(name, 0x080 + 8 * i, f"counter: {what} in the current or last call (START clears it)")
    return regs


REGMAP = RegMap(_default_registers(), irq=("IRQ_STATUS", "IRQ_ENABLE"))


def identification(params: "AccelParams") -> dict[str, int]:
    """The constant values of the identification registers for ``params`` (register name -> u32)."""
    values = {"MAGIC": MAGIC, "VERSION": NUMERICS_VERSION | REGMAP_VERSION << 16, "PARAMS_HASH": params.digest()}
    for name, (attr, _) in PARAM_REGISTERS.items():
        values[name] = int(getattr(params, attr))
    for name, v in values.items():
        if not 0 <= v < 1 << WORD_BITS:
            raise ValueError(f"identification register {name}: {v} does not fit 32 bits")
    return values
