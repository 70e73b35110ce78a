"""Replacing an output folder as a whole: it is either the old one or the new one, never a mix."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def swap_in(tmp: Path, out_dir: Path) -> None:
    """Move the finished folder ``tmp`` to ``out_dir``. A previous ``out_dir`` is renamed aside first and
    put back if the final rename fails, then removed."""
    if not out_dir.exists():
        tmp.rename(out_dir)
        return
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except BaseException:
        old.rename(out_dir)  # put the previous folder back
        raise
    shutil.rmtree(old, ignore_errors=True)
