"""What a training run is given (:class:`TrainOptions`) and the checks that turn nonsense into one line."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import TernError
from .arch import ArchSpec

DEFAULT_CTX = 256
DEFAULT_BATCH = 32
DEFAULT_LR = 2e-3
DEFAULT_KL_WEIGHT = 1.0
DEFAULT_TEMPERATURE = 1.0


@dataclass
class TrainOptions:
    data: list[str]
    out: str
    tokenizer: str | None = None  # None only with a teacher (its tokenizer)
    val: str | None = None
    arch: ArchSpec | None = None  # a from-scratch student (after --preset / --arch + dims)
    teacher: str | None = None
    from_teacher: bool = False
    quant: bool = True  # False: a float model (teachers, baselines)
    steps: int | None = None
    tokens: int | None = None
    minutes: float | None = None
    batch: int = DEFAULT_BATCH
    ctx: int = DEFAULT_CTX
    lr: float = DEFAULT_LR
    warmup: int | None = None  # None: schedule.default_warmup
    scale: str = "tensor"
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    resume: bool = False
    save_every: int = 500
    eval_every: int = 200
    val_windows: int = 64
    kl_weight: float = DEFAULT_KL_WEIGHT
    temperature: float = DEFAULT_TEMPERATURE
    hidden_weight: float = 0.0
    stop_after: int | None = None  # stop this session after so many steps (the schedule still plans all)
    progress: bool = True
    print_every: int = 10  # steps between progress lines when stderr is not a terminal
    extra: dict = field(default_factory=dict)

    def run_key(self) -> dict:
        """Everything that decides the trained weights: a folder's run must match it to be resumed."""
        keep = ("tokenizer", "val", "teacher", "from_teacher", "quant", "steps", "tokens", "minutes", "batch",
                "ctx", "lr", "warmup", "scale", "seed", "val_windows", "kl_weight", "temperature", "hidden_weight")
        d = {k: getattr(self, k) for k in keep}
        for k in ("tokenizer", "val", "teacher"):
            d[k] = None if d[k] is None else str(Path(d[k]).resolve())
        d["data"] = [str(Path(p).resolve()) for p in self.data]
        d["arch"] = None if self.arch is None else asdict(self.arch)
        if self.teacher is None:
            for k in ("kl_weight", "temperature", "hidden_weight"):
                d.pop(k)
        return d


def check_options(o: TrainOptions) -> None:
    """Refuse impossible numbers and combinations (one line each) before any work."""
    def positive_int(name: str, v, minimum: int = 1) -> None:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < minimum):
            raise TernError(f"--{name} {v} is not an integer >= {minimum}", f"pass --{name} {minimum} or more")

    def positive_real(name: str, v, zero_ok: bool = False) -> None:
        if v is None:
            return
        bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
            or (v == 0 and not zero_ok)
        if bad:
            raise TernError(f"--{name} {v} is not a {'non-negative' if zero_ok else 'positive'} finite number",
                            f"pass a sensible --{name}")

    if not o.data:
        raise TernError("no training data", "pass --data FILE [FILE ...]")
    budgets = [k for k in ("steps", "tokens", "minutes") if getattr(o, k) is not None]
    if len(budgets) != 1:
        raise TernError("give exactly one budget" + (f" (got --{' --'.join(budgets)})" if budgets else ""),
                        "pass --steps N, --tokens N or --minutes M")
    positive_int("steps", o.steps)
    positive_int("tokens", o.tokens)
    positive_real("minutes", o.minutes)
    positive_int("batch", o.batch)
    positive_int("ctx", o.ctx, 2)
    positive_real("lr", o.lr)
    positive_int("warmup", o.warmup)
    positive_int("threads", o.threads)
    positive_int("save-every", o.save_every)
    positive_int("eval-every", o.eval_every)
    positive_int("val-windows", o.val_windows)
    positive_int("stop-after", o.stop_after)
    positive_int("print-every", o.print_every)
    positive_real("kl-weight", o.kl_weight, zero_ok=True)
    positive_real("temperature", o.temperature)
    positive_real("hidden-weight", o.hidden_weight, zero_ok=True)
    if isinstance(o.seed, bool) or not isinstance(o.seed, int) or o.seed < 0:
        raise TernError(f"--seed {o.seed} is not a non-negative integer", "pass --seed 0 or more")
    if o.lr > 1.0:
        raise TernError(f"--lr {o.lr} is far too large", "ternary runs use about 5e-4 to 3e-3")
    if o.scale not in ("tensor", "channel"):
        raise TernError(f"unknown --scale {o.scale!r}", "use tensor or channel")
    if o.device not in ("auto", "cpu", "cuda"):
        raise TernError(f"unknown --device {o.device!r}", "use auto, cpu or cuda")
    if o.teacher is None:
        if o.arch is None:
            raise TernError("no model to train", "pass --arch A [dims], --preset NAME or --teacher DIR")
        if o.tokenizer is None:
            raise TernError("no tokenizer", "pass --tokenizer TOKENIZER.json")
        if o.from_teacher:
            raise TernError("--from-teacher needs --teacher DIR", "pass the teacher's checkpoint folder")
    elif o.from_teacher and o.arch is not None:
        raise TernError("--from-teacher copies the teacher's shape: --arch/--preset/dims do not apply",
                        "drop either --from-teacher or the model dims")
    if o.steps is not None and o.warmup is not None and o.warmup >= o.steps:
        raise TernError(f"--warmup {o.warmup} is not below --steps {o.steps}", "use a shorter warm-up")
