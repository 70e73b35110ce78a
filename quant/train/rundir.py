"""The output folder of a run: what it holds, and how a run is started, refused or resumed there.

* ``run.json``: the run's key (every option that decides the weights), its model config and sizes;
* ``state.pt``: the resumable state (model, optimizer, step, planned schedule, RNG states, data position,
  seconds trained), rewritten every ``--save-every`` steps and at the end;
* ``log.jsonl``: one JSON object a step (step, tokens, loss, val_loss, lr, seconds) for plotting;
* ``model/``: the latest saved weights as a Hugging Face checkpoint (``ternfpga quantize`` reads it).

Every file is written to a temporary name and renamed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import TernError

RUN, STATE, LOG, MODEL = "run.json", "state.pt", "log.jsonl", "model"
STATE_VERSION = 1


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def open(self, key: dict, resume: bool) -> dict | None:
        """Check the folder against this run; returns the saved state to resume from, or None for a new run.

        A folder holding another run is refused; one holding this run needs ``--resume``; a folder with
        files that are not a run is refused (nothing here is ever overwritten by surprise)."""
        p = self.path
        fix_other = "choose another -o folder"
        if p.exists() and not p.is_dir():
            raise TernError(f"output '{p}' is a file, not a folder", fix_other)
        for parent in p.parents:
            if parent.exists() and not parent.is_dir():
                raise TernError(f"'{parent}' is a file, so '{p}' cannot be created", fix_other)
        run_file = self.file(RUN)
        if not run_file.exists():
            if p.exists() and any(f for f in p.iterdir() if not f.name.startswith(".")):
                raise TernError(f"output folder '{p}' is not empty and holds no training run", fix_other)
            return None
        try:
            old = json.loads(run_file.read_text())
            old_key = old["key"]
        except (OSError, ValueError, KeyError, TypeError):
            raise TernError(f"'{run_file}' is unreadable", "delete the folder or choose another -o folder") from None
        diff = [k for k in sorted(set(key) | set(old_key)) if key.get(k) != old_key.get(k)]
        if diff:
            k = diff[0]
            raise TernError(f"output folder '{p}' holds a different run ({k}: {old_key.get(k)!r} there, "
                            f"{key.get(k)!r} here)",
                            "choose another -o folder, or repeat that run's options to --resume it")
        if not resume:
            raise TernError(f"output folder '{p}' already holds this run",
                            "pass --resume to continue it, or choose another -o folder")
        state_file = self.file(STATE)
        if not state_file.exists():
            return None  # it never reached its first save: start over
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=False)
            if state.get("version") != STATE_VERSION:
                raise ValueError
        except Exception:  # torch.load raises many kinds
            raise TernError(f"'{state_file}' is damaged or from another version",
                            "delete the folder and start again, or choose another -o folder") from None
        return state

    def write_run(self, info: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.file(RUN), (json.dumps(info, indent=2) + "\n").encode())

    def save_state(self, state: dict) -> None:
        tmp = self.file(f".{STATE}.tmp-{os.getpid()}")
        try:
            torch.save(dict(state, version=STATE_VERSION), tmp)
            os.replace(tmp, self.file(STATE))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class LossLog:
    """log.jsonl, one object a step. On resume the lines after the resumed step are dropped, so the log
    of an interrupted-and-resumed run equals the uninterrupted run's."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        kept = []
        if resume_step and path.exists():
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= resume_step:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    break  # a torn last line
        write_atomic(path, "".join(s + "\n" for s in kept).encode())
        self._f = open(path, "a", encoding="utf-8")

    def write(self, rec: dict) -> None:
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()
