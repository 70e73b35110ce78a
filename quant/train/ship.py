"""A finished training run -> the folder we ship: the checkpoint in a compact dtype, its loss log, a
loss curve and a model card. ``make demo-model`` runs it on ``build/shakespeare-run``:

    python -m ternfpga.quant.train.ship RUN_DIR OUT_DIR [--dtype float16] [--title TEXT]

float16 halves the float32 export. The shipped checkpoint is what `ternfpga quantize` and every
figure of the demo read, so the demo is consistent with itself; rounding the latent weights to float16
moves a weight across a ternary threshold only when it sits within float16's relative step (2^-11) of
it (the card records how many trits differ from the float32 export).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import TernError
from ..folders import new_folder

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
HF_NAMES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}
LOG = "log.jsonl"


def _trit_changes(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Trits that differ between the two weight sets under the quantizer's per-tensor rule."""
    from ..ternarize import ternarize

    changed = total = 0
    for name, w in src.items():
        if w.ndim != 2 or "embed" in name or "lm_head" in name:
            continue
        t0 = ternarize(w.float()).trits
        t1 = ternarize(dst[name].float()).trits
        changed += int((t0 != t1).sum())
        total += t0.size
    return changed, total


def _rel(path: str) -> str:
    p = Path(path)
    try:
        return str(p.relative_to(Path.cwd())) if p.is_absolute() else path
    except ValueError:
        return path


def plot_log(log: Path, png: Path, title: str) -> None:
    """Training and validation loss against tokens seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    tok = [r["tokens"] / 1e6 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(tok, [r["loss"] for r in rows], lw=0.8, alpha=0.7, label="training loss (batch)")
    val = [(r["tokens"] / 1e6, r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val), "o-", ms=3, label="validation loss (Julius Caesar)")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = png.with_name(png.name + f".tmp-{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png)


def ship(run: Path, out: Path, dtype: str = "float16", title: str = "") -> Path:
    from ..checkpoint import Checkpoint

    model = run / "model"
    if not (model / "model.safetensors").is_file() or not (run / LOG).is_file():
        raise TernError(f"'{run}' holds no finished training run (model/ and {LOG})",
                        "run `ternfpga train ... -o RUN_DIR` to the end first")
    if dtype not in DTYPES:
        raise TernError(f"unknown dtype {dtype!r}", f"use one of {', '.join(DTYPES)}")
    Checkpoint.open(model)  # a readable checkpoint, or one line saying why not
    src = load_file(str(model / "model.safetensors"))
    dst = {k: v.to(DTYPES[dtype]).contiguous() for k, v in src.items()}
    changed, total = _trit_changes(src, dst)
    with new_folder(out) as tmp:
        hf = json.loads((model / "config.json").read_text())
        hf["torch_dtype"] = HF_NAMES[dtype]
        (tmp / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
        save_file(dst, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        os.chmod(tmp / "model.safetensors", 0o644)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            if (model / name).is_file():
                shutil.copyfile(model / name, tmp / name)
        shutil.copyfile(run / LOG, tmp / LOG)
        plot_log(run / LOG, tmp / "loss.png", title or f"{out.name}: ternary QAT")
        rows = [json.loads(line) for line in (run / LOG).read_text().splitlines() if line.strip()]
        last_val = next((r["val_loss"] for r in reversed(rows) if r.get("val_loss") is not None), None)
        params = sum(v.numel() for v in src.values())
        key = json.loads((run / "run.json").read_text()).get("key", {}) if (run / "run.json").is_file() else {}
        for k in ("tokenizer", "val", "data"):  # paths relative to the working folder, not this machine's
            v = key.get(k)
            key[k] = [_rel(x) for x in v] if isinstance(v, list) else _rel(v) if isinstance(v, str) else v
        info = {"run": key,
                "parameters": params, "dtype": dtype, "steps": rows[-1]["step"], "tokens": rows[-1]["tokens"],
                "seconds": rows[-1]["seconds"], "final_train_loss": rows[-1]["loss"], "final_val_loss": last_val,
                "trits_changed_by_dtype": changed, "trits": total}
        (tmp / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"shipped {out}: {params:,} parameters in {dtype}, {rows[-1]['step']} steps, {rows[-1]['tokens']:,} tokens, "
          f"final validation loss {last_val:.4f} nats/token; {changed} of {total:,} trits differ from the float32 "
          f"export")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ternfpga.quant.train.ship", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="the run folder of `ternfpga train -o`")
    ap.add_argument("out", type=Path, help="the folder to ship (replaced)")
    ap.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    ap.add_argument("--title", default="")
    args = ap.parse_args(argv)
    try:
        ship(args.run, args.out, args.dtype, args.title)
    except TernError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
