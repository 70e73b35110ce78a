"""The model image (``.tern``): one self-describing, versioned file holding everything a device needs.

Layout on disk::

    0      64-byte preamble: b"TERNFPGA", u32 version, u32 0, u64 header_offset, u64 header_len,
           u32 crc32(header), zero padding
    4096   sections (tensors), each 4096-aligned (the packed trit sections are copied to DDR as is)
    ...    header: UTF-8 JSON {"format", "version", "config", "numerics", "layout", "quant", "tensors"}

The header goes after the sections and the preamble is written last, so the writer streams sections
straight to disk and a crashed write never looks like a valid image (it also writes to a temp file).
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np

from ..sim.numerics.pf import PF
from .config import ModelConfig
from .errors import TernError
from .layout import TritLayout

IMAGE_VERSION = 1
MAGIC = b"TERNFPGA"
FORMAT = "ternfpga-image"
PREAMBLE = struct.Struct("<8sIIQQI")
PREAMBLE_BYTES = 64
ALIGN = 4096
ARRAY_DTYPES = {"int8": "<i1", "uint8": "<u1", "int16": "<i2", "int32": "<i4"}
PF_DTYPE = np.dtype([("m", "<u2"), ("e", "<i2")])  # 4 bytes per entry
RECREATE = "re-create the image with this version's `ternfpga quantize`"


def _align(x: int) -> int:
    return -(-x // ALIGN) * ALIGN


def _shape(shape) -> list[int]:
    return [int(s) for s in shape]


class ImageWriter:
    """Writes a ``.tern`` image section by section. Use as a context manager::

        with ImageWriter(path, config, layout, numerics, quant) as w:
            w.add_array("embed.int8", q)
    """

    def __init__(self, path: str | Path, config: ModelConfig, layout: TritLayout, numerics: dict, quant: dict):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise TernError(f"output folder '{self.path.parent}' does not exist", "create it first or choose another path")
        self.config = config
        self.layout = layout
        self.numerics = dict(numerics)
        self.quant = dict(quant)
        self.tensors: dict[str, dict] = {}
        self.tmp_path = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        self._f = None
        self._pos = ALIGN  # next free byte (sections start at 4096)
        self.size: int | None = None  # final file size, known after close

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> "ImageWriter":
        try:
            self._f = open(self.tmp_path, "wb")
        except OSError as e:
            raise TernError(f"cannot write '{self.tmp_path}' ({e.strerror})", "check the output folder's permissions") from None
        self._f.write(b"\0" * ALIGN)  # preamble placeholder: an unfinished file has no magic
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._finish()
                return
            except BaseException:
                self._abort()
                raise
        self._abort()

    def _abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        try:
            self.tmp_path.unlink()
        except FileNotFoundError:
            pass

    def _finish(self) -> None:
        f = self._require_open()
        header = {
            "format": FORMAT,
            "version": IMAGE_VERSION,
            "config": self.config.to_dict(),
            "numerics": self.numerics,
            "layout": self.layout.to_dict(),
            "quant": self.quant,
            "tensors": self.tensors,
        }
        blob = json.dumps(header, indent=1).encode("utf-8")
        hoff = _align(self._pos)
        f.seek(hoff)
        f.write(blob)
        f.seek(0)
        f.write(PREAMBLE.pack(MAGIC, IMAGE_VERSION, 0, hoff, len(blob), zlib.crc32(blob)).ljust(PREAMBLE_BYTES, b"\0"))
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._f = None
        os.replace(self.tmp_path, self.path)
        self.size = hoff + len(blob)

    def _require_open(self):
        if self._f is None:
            raise RuntimeError("ImageWriter is not open: use it as a context manager")
        return self._f

    # -- sections -----------------------------------------------------------------------------
    def _begin(self, name: str) -> int:
        if name in self.tensors:
            raise ValueError(f"image section '{name}' written twice")
        f = self._require_open()
        off = _align(self._pos)
        f.seek(off)
        return off

    def _write_blocks(self, name: str, dtype: str, shape, blocks: Iterable) -> None:
        """Stream ``blocks`` (bytes-like) as one section; crc and size are accumulated on the way."""
        off = self._begin(name)
        f = self._f
        crc = 0
        n = 0
        for blk in blocks:
            mv = memoryview(blk).cast("B")
            f.write(mv)
            crc = zlib.crc32(mv, crc)
            n += mv.nbytes
        self._pos = off + n
        self.tensors[name] = {"offset": off, "nbytes": n, "dtype": dtype, "shape": _shape(shape), "crc32": crc}

    def add_array(self, name: str, arr: np.ndarray) -> None:
        """An int8/uint8/int16/int32 array, stored little-endian, C order."""
        arr = np.asarray(arr)
        dt = arr.dtype.name
        if dt not in ARRAY_DTYPES:
            raise ValueError(f"image section '{name}': dtype {dt} is not one of {list(ARRAY_DTYPES)}")
        data = np.ascontiguousarray(arr, dtype=ARRAY_DTYPES[dt])
        self._write_blocks(name, dt, arr.shape, [data])

    def add_array_chunks(self, name: str, dtype: str, shape, chunks: Iterable[np.ndarray]) -> None:
        """An array streamed as leading-axis chunks (e.g. row ranges of a huge int8 embedding)."""
        if dtype not in ARRAY_DTYPES:
            raise ValueError(f"image section '{name}': dtype {dtype} is not one of {list(ARRAY_DTYPES)}")
        shape = _shape(shape)
        row = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(ARRAY_DTYPES[dtype]).itemsize
        self._write_blocks(name, dtype, shape,
                           (np.ascontiguousarray(c, dtype=ARRAY_DTYPES[dtype]) for c in chunks))
        got = self.tensors[name]["nbytes"]
        if got != shape[0] * row:
            raise ValueError(f"image section '{name}': chunks hold {got} bytes, shape {shape} needs {shape[0] * row}")

    def add_trits(self, name: str, trits: np.ndarray) -> None:
        """A ternary matrix int8 [rows, cols], packed in the layout's stream order."""
        trits = np.asarray(trits)
        if trits.ndim != 2:
            raise ValueError(f"image section '{name}': trits must be 2-D, got shape {trits.shape}")
        self._write_blocks(name, "trits", trits.shape, [self.layout.pack(trits)])

    def add_trits_chunks(self, name: str, rows: int, cols: int, chunks: Iterable[np.ndarray]) -> None:
        """A ternary matrix given as consecutive row chunks (each a multiple of lanes*ports rows but
        the last). Only the packed output (1.6 bits per weight) is held, never the whole int8 matrix."""
        buf = self.layout.new_buffer(rows, cols)
        r = 0
        for c in chunks:
            self.layout.pack_into(buf, c, r, rows, cols)
            r += len(c)
        if r != rows:
            raise ValueError(f"image section '{name}': chunks hold {r} rows, expected {rows}")
        self._write_blocks(name, "trits", (rows, cols), [buf])

    def add_pf(self, name: str, s: PF) -> None:
        """A pseudo-float scale array: per entry little-endian u16 mantissa, then i16 exponent."""
        m = np.asarray(s.m, dtype=np.int64)
        e = np.asarray(s.e, dtype=np.int64)
        if m.shape != e.shape:
            raise ValueError(f"image section '{name}': pf mantissa and exponent shapes differ")
        if np.any((m < 0) | (m > 0xFFFF)) or np.any((e < -(1 << 15)) | (e >= 1 << 15)):
            raise ValueError(f"image section '{name}': pf values out of u16/i16 range")
        rec = np.empty(m.shape, dtype=PF_DTYPE)
        rec["m"] = m
        rec["e"] = e
        self._write_blocks(name, "pf", m.shape, [rec.reshape(-1).view(np.uint8)])

    def add_bytes(self, name: str, data: bytes) -> None:
        self._write_blocks(name, "bytes", (len(data),), [bytes(data)])

    def add_alias(self, name: str, target: str) -> None:
        """``name`` reads the same bytes as ``target`` (a tied head sharing the embedding)."""
        if name in self.tensors:
            raise ValueError(f"image section '{name}' written twice")
        if target not in self.tensors:
            raise ValueError(f"alias target '{target}' is not in the image")
        self.tensors[name] = dict(self.tensors[target], alias_of=target)

    def set_quant(self, **kv) -> None:
        """Update the header's quant dict (statistics are known only after the sections)."""
        self.quant.update(kv)


class ModelImage:
    """A read-only, memory-mapped ``.tern`` image. Use :meth:`open`."""

    def __init__(self, path: Path, mm: np.ndarray, header: dict):
        self.path = path
        self._mm = mm
        self.header = header
        self.config = ModelConfig.from_dict(header["config"])
        self.layout = TritLayout.from_dict(header["layout"])
        self.tensors: dict[str, dict] = header["tensors"]

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> "ModelImage":
        path = Path(path)
        if not path.exists():
            raise TernError(f"model image '{path}' does not exist", "create it with `ternfpga quantize CKPT -o MODEL.tern`")
        if not path.is_file():
            raise TernError(f"model image '{path}' is not a file", "pass the .tern file written by `ternfpga quantize`")
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                pre = f.read(PREAMBLE_BYTES)
        except OSError as e:
            raise TernError(f"cannot read model image '{path}' ({e.strerror})", "check the file's permissions") from None
        bad = f"'{path}' is not a ternfpga model image"
        if len(pre) < PREAMBLE.size:
            raise TernError(f"{bad} (only {size} bytes)", "the file is empty or truncated: re-create or copy it again")
        magic, version, _, hoff, hlen, hcrc = PREAMBLE.unpack_from(pre)
        if magic != MAGIC:
            raise TernError(f"{bad} (wrong magic)", "pass the .tern file written by `ternfpga quantize`")
        if version != IMAGE_VERSION:
            raise TernError(f"model image '{path}' has format version {version}, this ternfpga reads version {IMAGE_VERSION}",
                            RECREATE)
        if hoff + hlen > size:
            raise TernError(f"model image '{path}' is truncated ({size} bytes, header ends at {hoff + hlen})",
                            "copy it again or re-create it with `ternfpga quantize`")
        mm = np.memmap(path, dtype=np.uint8, mode="r")
        blob = mm[hoff: hoff + hlen].tobytes()
        if zlib.crc32(blob) != hcrc:
            raise TernError(f"model image '{path}' header fails its CRC check", "the file is corrupt: re-create or copy it again")
        try:
            header = json.loads(blob.decode("utf-8"))
            if header.get("format") != FORMAT or not isinstance(header.get("tensors"), dict):
                raise ValueError
            for t in header["tensors"].values():
                if not all(isinstance(t[k], int) for k in ("offset", "nbytes", "crc32")) or not isinstance(t["shape"], list):
                    raise ValueError
            img = cls(path, mm, header)
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            raise TernError(f"model image '{path}' has a malformed header", RECREATE) from None
        for name, t in img.tensors.items():
            if t["offset"] + t["nbytes"] > size:
                raise TernError(f"model image '{path}' is truncated: section '{name}' ends past the end of the file",
                                "copy it again or re-create it with `ternfpga quantize`")
        if verify:
            for name, ok in img.verify().items():
                if not ok:
                    raise TernError(f"section '{name}' of model image '{path}' fails its CRC check",
                                    "the file is corrupt: re-create it with `ternfpga quantize` or copy it again")
        return img

    # -- table --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self.tensors)

    def has(self, name: str) -> bool:
        return name in self.tensors

    def info(self, name: str) -> dict:
        return dict(self._entry(name))

    def _entry(self, name: str) -> dict:
        try:
            return self.tensors[name]
        except KeyError:
            raise TernError(f"model image '{self.path}' lacks section '{name}'", RECREATE) from None

    def _typed(self, name: str, dtype: str) -> dict:
        t = self._entry(name)
        if t["dtype"] != dtype:
            raise TernError(f"section '{name}' of '{self.path}' holds {t['dtype']}, not {dtype}", RECREATE)
        return t

    # -- data ---------------------------------------------------------------------------------
    def raw(self, name: str) -> np.ndarray:
        """The section's bytes (read-only uint8), e.g. packed trits exactly as DDR holds them."""
        t = self._entry(name)
        return self._mm[t["offset"]: t["offset"] + t["nbytes"]]

    def array(self, name: str) -> np.ndarray:
        t = self._entry(name)
        if t["dtype"] not in ARRAY_DTYPES:
            raise TernError(f"section '{name}' of '{self.path}' holds {t['dtype']}, not an integer array", RECREATE)
        return self.raw(name).view(ARRAY_DTYPES[t["dtype"]]).reshape(t["shape"])

    def pf(self, name: str) -> PF:
        t = self._typed(name, "pf")
        rec = self.raw(name).view(PF_DTYPE).reshape(t["shape"])
        return PF(rec["m"].astype(np.int64), rec["e"].astype(np.int64))

    def trits(self, name: str) -> np.ndarray:
        t = self._typed(name, "trits")
        rows, cols = t["shape"]
        return self.layout.unpack(self.raw(name), rows, cols)

    def tokenizer(self):
        from tokenizers import Tokenizer

        self._typed("tokenizer", "bytes")
        try:
            return Tokenizer.from_str(self.raw("tokenizer").tobytes().decode("utf-8"))
        except Exception as e:  # tokenizers raises a bare Exception subclass
            raise TernError(f"the tokenizer in '{self.path}' cannot be loaded ({str(e)[:100]})", RECREATE) from None

    def verify(self) -> dict[str, bool]:
        """Section name -> whether its bytes match the recorded CRC-32 (an alias reuses its target's check)."""
        ok: dict[str, bool] = {}
        for name, t in self.tensors.items():
            target = t.get("alias_of")
            if target in ok and self.tensors[target]["offset"] == t["offset"]:
                ok[name] = ok[target] and t["crc32"] == self.tensors[target]["crc32"]
            else:
                ok[name] = zlib.crc32(self.raw(name)) == t["crc32"]
        return ok
