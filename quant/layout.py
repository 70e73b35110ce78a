"""The packed trit layout: the byte order in which the FPGA engine streams ternary weights from DDR.

Five trits per byte, base 3: ``byte = sum_i (t_i + 1) * 3**i`` with ``t_0`` the lowest column (so
trit 0 everywhere is byte 121). Rows come in groups of ``lanes`` consecutive rows; group ``g`` goes to
port ``g % ports`` as that port's local group ``g // ports``. A port's stream walks its local groups
in order; inside a group it walks column chunks of ``trits_per_lane`` columns, and one chunk is one
AXI beat: lane ``l`` contributes ``beat_bytes / lanes`` bytes covering row ``g * lanes + l``. Every
port's region is padded with zero bytes to a 4 KiB multiple and the regions follow one another.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import TernError

TRITS_PER_BYTE = 5
REGION_ALIGN = 4096
ZERO_BYTE = 121  # five zero trits: (0+1) * (1+3+9+27+81)

# decode table: byte -> its 5 trits (bytes above 242 are not valid encodings, see _check_bytes)
_DIGITS = np.array([[(b // 3**i) % 3 - 1 for i in range(TRITS_PER_BYTE)] for b in range(256)], dtype=np.int8)
_MAX_CODE = 3**TRITS_PER_BYTE - 1  # 242


def _ceil_to(x: int, m: int) -> int:
    return -(-x // m) * m


@dataclass(frozen=True)
class TritLayout:
    beat_bytes: int = 16  # one AXI beat (128 bit)
    ports: int = 4  # parallel weight streams (HP0..HP3)
    lanes: int = 16  # output rows per beat

    def __post_init__(self) -> None:
        for k in ("beat_bytes", "ports", "lanes"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise TernError(f"trit layout {k}={v!r} is invalid", "beat_bytes, ports and lanes must be positive integers")
        if self.beat_bytes % self.lanes:
            raise TernError(f"trit layout beat_bytes={self.beat_bytes} is not a multiple of lanes={self.lanes}",
                            "every lane needs a whole number of bytes per beat")

    # -- geometry -----------------------------------------------------------------------------
    @property
    def bytes_per_lane(self) -> int:
        return self.beat_bytes // self.lanes

    @property
    def trits_per_lane(self) -> int:
        """Columns of one row carried by one beat."""
        return TRITS_PER_BYTE * self.bytes_per_lane

    @property
    def row_block(self) -> int:
        """Rows of one round over all ports (lanes * ports): row chunks for streaming packing."""
        return self.lanes * self.ports

    def padded(self, rows: int, cols: int) -> tuple[int, int]:
        return _ceil_to(rows, self.row_block), _ceil_to(cols, self.trits_per_lane)

    def payload_bytes(self, rows: int, cols: int) -> int:
        """Bytes of beats in one port's stream, before the 4 KiB alignment."""
        r, c = self.padded(rows, cols)
        return (r // self.row_block) * (c // self.trits_per_lane) * self.beat_bytes

    def port_region_bytes(self, rows: int, cols: int) -> int:
        return _ceil_to(self.payload_bytes(rows, cols), REGION_ALIGN)

    def packed_bytes(self, rows: int, cols: int) -> int:
        return self.ports * self.port_region_bytes(rows, cols)

    def port_offsets(self, rows: int, cols: int) -> list[int]:
        region = self.port_region_bytes(rows, cols)
        return [p * region for p in range(self.ports)]

    # -- packing ------------------------------------------------------------------------------
    def _port_view(self, buf: np.ndarray, rows: int, cols: int) -> np.ndarray:
        """View of ``buf`` as [ports, local groups, chunks, lanes, bytes_per_lane] (payload only)."""
        r, c = self.padded(rows, cols)
        region = self.port_region_bytes(rows, cols)
        used = self.payload_bytes(rows, cols)
        return buf[: self.ports * region].reshape(self.ports, region)[:, :used].reshape(
            self.ports, r // self.row_block, c // self.trits_per_lane, self.lanes, self.bytes_per_lane)

    def pack(self, trits: np.ndarray) -> np.ndarray:
        """int8 [rows, cols] in {-1, 0, 1} -> uint8 [packed_bytes(rows, cols)]."""
        trits = np.asarray(trits)
        if trits.ndim != 2:
            raise ValueError(f"pack needs a 2-D trit matrix, got shape {trits.shape}")
        rows, cols = trits.shape
        out = self.new_buffer(rows, cols)
        self.pack_into(out, trits, 0, rows, cols)
        return out

    def new_buffer(self, rows: int, cols: int) -> np.ndarray:
        """An empty packed buffer for :meth:`pack_into` (region padding already zero)."""
        return np.zeros(self.packed_bytes(rows, cols), dtype=np.uint8)

    def pack_into(self, out: np.ndarray, trits: np.ndarray, row0: int, rows: int, cols: int) -> None:
        """Pack rows ``row0 : row0 + len(trits)`` of a [rows, cols] matrix into its packed buffer ``out``.

        ``row0`` must be a multiple of ``row_block``, and so must the chunk length unless the chunk
        ends the matrix; the chunk then also writes the row padding. Chunks touch disjoint bytes.
        """
        trits = np.asarray(trits)
        n = trits.shape[0]
        if trits.ndim != 2 or trits.shape[1] != cols:
            raise ValueError(f"trit chunk has shape {trits.shape}, expected [n, {cols}]")
        if trits.dtype != np.int8:
            trits = trits.astype(np.int8)
        if row0 % self.row_block or row0 + n > rows or (n % self.row_block and row0 + n != rows):
            raise ValueError(f"trit chunk rows {row0}:{row0 + n} do not fall on {self.row_block}-row blocks of {rows}")
        if out.dtype != np.uint8 or out.shape != (self.packed_bytes(rows, cols),):
            raise ValueError("pack_into needs the uint8 buffer of packed_bytes(rows, cols)")
        r_pad, c_pad = self.padded(rows, cols)
        nr = min(_ceil_to(n, self.row_block), r_pad - row0)
        # digits 0..2 as uint8: int8 -1/0/1 viewed as uint8 is 255/0/1, +1 wraps to 0/1/2
        if nr == n and c_pad == cols:
            d = trits.view(np.uint8) + np.uint8(1)
        else:
            d = np.ones((nr, c_pad), dtype=np.uint8)  # padding: trit 0
            d[:n, :cols] = trits.view(np.uint8)
            d[:n, :cols] += np.uint8(1)
        if n and int(d.max()) > 2:
            raise ValueError("trits must be -1, 0 or 1")
        d = d.reshape(nr, c_pad // TRITS_PER_BYTE, TRITS_PER_BYTE)
        # Horner in uint8 (max 242 fits): byte = d0 + 3*(d1 + 3*(d2 + 3*(d3 + 3*d4)))
        b = d[:, :, 4].copy()
        for i in (3, 2, 1, 0):
            b *= np.uint8(3)
            b += d[:, :, i]
        del d
        # rows -> (local group j, port p, lane l); cols -> (chunk c, byte k); stream order is p, j, c, l, k
        g0 = row0 // self.row_block
        src = b.reshape(nr // self.row_block, self.ports, self.lanes, c_pad // self.trits_per_lane, self.bytes_per_lane)
        dst = self._port_view(out, rows, cols)[:, g0: g0 + nr // self.row_block]
        np.copyto(dst, src.transpose(1, 0, 3, 2, 4))

    def unpack(self, buf: np.ndarray, rows: int, cols: int) -> np.ndarray:
        """Inverse of :meth:`pack`: packed uint8 bytes -> int8 [rows, cols]."""
        buf = np.asarray(buf)
        need = self.packed_bytes(rows, cols)
        if buf.dtype != np.uint8 or buf.ndim != 1 or buf.shape[0] < need:
            raise ValueError(f"unpack needs at least {need} uint8 bytes for a [{rows}, {cols}] matrix")
        r_pad, c_pad = self.padded(rows, cols)
        v = self._port_view(buf, rows, cols)  # [p, j, c, l, k]
        b = np.ascontiguousarray(v.transpose(1, 0, 3, 2, 4)).reshape(r_pad, c_pad // TRITS_PER_BYTE)
        if b.size and int(b.max()) > _MAX_CODE:
            raise TernError("packed trits hold byte values above 242", "the image is corrupt: re-create it with `ternfpga quantize`")
        t = _DIGITS[b].reshape(r_pad, c_pad)
        return t if (r_pad, c_pad) == (rows, cols) else np.ascontiguousarray(t[:rows, :cols])

    # -- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TritLayout":
        keys = ("beat_bytes", "ports", "lanes")
        if not isinstance(d, dict) or any(k not in d for k in keys):
            raise TernError(f"trit layout {d!r} lacks one of {list(keys)}", "re-create the image with `ternfpga quantize`")
        return cls(**{k: d[k] for k in keys})
