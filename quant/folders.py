"""Writing an output folder as a whole: it is either the old one or the new one, never a mix."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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


@contextmanager
def new_folder(out_dir: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``out_dir`` to fill; when the block ends normally it replaces
    ``out_dir`` (:func:`swap_in`), when it raises it is removed and ``out_dir`` is left as it was."""
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
