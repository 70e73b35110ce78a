"""The progress line on stderr: updated in place on a terminal, one line every N steps otherwise."""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    def __init__(self, enabled: bool = True, every: int = 10, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.every = every
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = False
        self._last_draw = 0.0

    def update(self, step: int, total: int | None, loss: float, val: float | None, tok_s: float,
               eta_s: float | None, force: bool = False) -> None:
        if not self.enabled or (not self.tty and not force and step % self.every):
            return
        if self.tty and not force:  # redraw at most 10 times a second
            now = time.monotonic()
            if now - self._last_draw < 0.1:
                return
            self._last_draw = now
        parts = [f"step {step}/{total if total else '?'}", f"loss {loss:.4f}"]
        if val is not None:
            parts.append(f"val {val:.4f}")
        parts.append(f"{tok_s / 1000:.1f}k tok/s")
        if eta_s is not None:
            parts.append(f"ETA {_clock(eta_s)}")
        line = "  ".join(parts)
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        self.close()
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
