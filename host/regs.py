"""The accelerator's registers for host code (board and simulator backends), from the one register map
in rtl/control/regmap.py. Imports no Amaranth: this module runs on the board.

Module constants, generated from the map:

- ``<REG>``: the register's byte offset, e.g. ``CONTROL == 0x040``, ``CYCLES_TOTAL_LO == 0x080`` (so
  ``MAGIC`` is an offset; the constant it holds is ``MAGIC_VALUE``);
- ``<REG>_<FIELD>``: the field's mask within the register, e.g. ``STATUS_BUSY == 0x1``;
  ``<REG>_<FIELD>_SHIFT``: its lowest bit.

Dicts of the same: :data:`OFFSETS`, :data:`MASKS`, :data:`SHIFTS`; :data:`PAIRS` gives a 64-bit value's
(LO, HI) offsets (read LO first: it captures HI); :data:`ERROR_NAMES` the ERROR_CODE names.
"""
from __future__ import annotations

from ternfpga.rtl.control.regmap import MAGIC as MAGIC_VALUE
from ternfpga.rtl.control.regmap import REGMAP, REGMAP_VERSION, ERROR_CODES, Access, Register, RegMap, identification

OFFSETS: dict[str, int] = {r.name: r.offset for r in REGMAP}
MASKS: dict[str, int] = {f"{r.name}_{f}": r.field_mask(f) for r in REGMAP for f in r.fields}
SHIFTS: dict[str, int] = {f"{r.name}_{f}": r.field_shift(f) for r in REGMAP for f in r.fields}
PAIRS: dict[str, tuple[int, int]] = {base: (lo.offset, hi.offset) for base, (lo, hi) in REGMAP.pairs.items()}
ERROR_NAMES: dict[int, str] = {code: name for code, (name, _) in ERROR_CODES.items()}
ERROR_DOCS: dict[int, str] = {code: doc for code, (_, doc) in ERROR_CODES.items()}


def _export() -> None:
    shifts = {f"{k}_SHIFT": v for k, v in SHIFTS.items()}
    names = {**OFFSETS, **MASKS, **shifts}
    clash = (set(OFFSETS) & set(MASKS)) | ((set(OFFSETS) | set(MASKS)) & set(shifts)) | (set(names) & set(globals()))
    if clash:  # a map edit that makes two constants share a name must be renamed, not shadowed
        raise RuntimeError(f"register map names collide: {sorted(clash)}")
    globals().update(names)


_export()


def error_name(code: int) -> str:
    """The ERROR_CODE name of ``code`` (``UNKNOWN(<n>)`` for a value the map does not define)."""
    return ERROR_NAMES.get(code, f"UNKNOWN({code})")


def field(value: int, name: str) -> int:
    """Field ``<REG>_<FIELD>`` of a value read from that register, e.g. ``field(v, "VERSION_NUMERICS")``."""
    return (value & MASKS[name]) >> SHIFTS[name]


__all__ = ["ERROR_CODES", "ERROR_DOCS", "ERROR_NAMES", "MAGIC_VALUE", "MASKS", "OFFSETS", "PAIRS", "REGMAP",
           "REGMAP_VERSION", "SHIFTS", "Access", "RegMap", "Register", "error_name", "field", "identification",
           *OFFSETS, *MASKS, *(f"{k}_SHIFT" for k in SHIFTS)]
