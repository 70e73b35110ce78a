"""One training run: set up (tokenizer, data, model, teacher, output folder), train, evaluate, save.

Budget: ``--steps N`` plans N steps; ``--tokens N`` plans ceil(N / (batch x ctx)) steps; ``--minutes M``
runs the first :data:`PLAN_STEPS` steps under the warm-up, measures seconds per step over all but the
first of them (plus one validation pass, when there is a validation file), and then plans the number of
steps that fits M minutes with a 5 % margin (evaluations included); the schedule is fixed from then on, and
the run also stops if the minutes run out first (cumulative seconds over resumed sessions).

Reproducibility: on CPU, the same options, seed and thread count give bit-identical runs (weights are
initialized from the seed, batch k is a function of (seed, k), and nothing else draws random numbers);
a run stopped after N steps and resumed gives the same weights and losses as one that never stopped.
On CUDA the forward runs under bf16 autocast and is not bit-reproducible.
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ..checkpoint import Checkpoint
from ..errors import TernError
from . import arch as archmod
from .data import batch, encode_files, load_tokenizer, val_windows
from .distill import DistillWeights, distill_loss, student_arch, teacher_tokenizer
from .export import export_checkpoint, load_model
from .model import Decoder
from .options import TrainOptions, check_options
from .progress import Progress
from .rundir import LOG, MODEL, LossLog, RunDir
from .schedule import Schedule, default_warmup

_clock = time.perf_counter  # the run's clock (one name, so tests can drive --minutes without timing)
PLAN_STEPS = 8  # --minutes: steps run before the plan (the first is not timed)
PLAN_MARGIN = 0.95
CLIP_NORM = 1.0
PLANNING_WARMUP = 375  # --minutes: the warm-up the plan steps run under when --warmup is not given


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TernError("--device cuda: no CUDA device is available", "use --device cpu or auto")
        return torch.device("cuda")
    return torch.device("cpu")


def make_optimizer(model: Decoder, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (β 0.9/0.95); weight decay on matrices only (the schedule sets it), fused when possible."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": 0.0, "decay": True},
              {"params": rest, "weight_decay": 0.0, "decay": False}]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


@torch.no_grad()
def evaluate(model: Decoder, windows: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Mean cross-entropy (nats per token) of ``model`` over the fixed validation windows."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, windows.shape[0], batch_size):
        w = windows[i: i + batch_size].to(device)
        with _autocast(device):
            logits = model(w[:, :-1])
        total += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                       reduction="sum"))
        count += w[:, 1:].numel()
    model.train(was)
    return total / count


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


class _StopFlag:
    """Ctrl-C during training finishes the step, saves, then stops (a second Ctrl-C stops at once)."""

    def __init__(self):
        self.hit = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                if self.hit:
                    raise KeyboardInterrupt
                self.hit = True
            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def train(o: TrainOptions) -> dict:
    """Run (or resume) the training ``o`` describes; returns a report (also the final log line)."""
    check_options(o)
    if o.threads:
        torch.set_num_threads(o.threads)
    device = pick_device(o.device)
    progress = Progress(o.progress, o.print_every)

    # -- tokenizer, teacher, data ----------------------------------------------------------------
    tckpt = Checkpoint.open(o.teacher) if o.teacher else None
    tok = teacher_tokenizer(tckpt, o.tokenizer) if tckpt else load_tokenizer(o.tokenizer)
    train_tokens = encode_files(tok, o.data)
    val_tokens = encode_files(tok, [o.val], "validation file") if o.val else None
    if train_tokens.numel() < o.ctx + 1:
        raise TernError(f"the training data holds {train_tokens.numel()} tokens, fewer than --ctx {o.ctx} + 1",
                        "add data or use a smaller --ctx")
    if val_tokens is not None and val_tokens.numel() < 2:
        raise TernError(f"validation file '{o.val}' holds fewer than 2 tokens", "pass a longer --val file")

    # -- model config ------------------------------------------------------------------------------
    if tckpt is not None and o.from_teacher:
        cfg = tckpt.config
    else:
        a = student_arch(tckpt.config, o.arch) if tckpt else archmod.resolve(o.arch, tok.vocab_size, o.ctx)
        eot = tckpt.config.eos_id if tckpt else tok.eot_id
        cfg = archmod.model_config(a, eot)
    if tok.vocab_size > cfg.vocab:
        raise TernError(f"the tokenizer has {tok.vocab_size} tokens, more than the model's vocabulary {cfg.vocab}",
                        "drop --vocab (it defaults to the tokenizer's size)")
    if o.ctx > cfg.max_position:
        raise TernError(f"--ctx {o.ctx} exceeds the model's max_position {cfg.max_position}",
                        f"use --ctx {cfg.max_position} or less, or a larger --max-position")
    if o.hidden_weight > 0 and tckpt is not None and tckpt.config.hidden != cfg.hidden:
        raise TernError(f"--hidden-weight needs equal hidden sizes (student {cfg.hidden}, teacher "
                        f"{tckpt.config.hidden})", "drop --hidden-weight or match --hidden")

    # -- output folder -----------------------------------------------------------------------------
    key = dict(o.run_key(), tokenizer_sha256=tok.sha256, train_tokens=int(train_tokens.numel()),
               val_tokens=None if val_tokens is None else int(val_tokens.numel()))
    rd = RunDir(o.out)
    state = rd.open(key, o.resume)

    # -- models and optimizer ----------------------------------------------------------------------
    model = Decoder(cfg, quant=o.quant, scale=o.scale)
    if tckpt is not None and o.from_teacher:
        model.load_state_dict(load_model(tckpt).state_dict())
    else:
        model.reset_parameters(o.seed)
    teacher = None
    if tckpt is not None:
        teacher = load_model(tckpt, quant=False).to(device).eval()
        teacher.fused_attention = "always"  # its logits need speed, not FloatModel's exact rounding
        teacher.requires_grad_(False)
    model.to(device).train()
    opt = make_optimizer(model, o.lr, device)
    dw = DistillWeights(o.kl_weight, o.temperature, o.hidden_weight)
    params = sum(p.numel() for p in model.parameters())

    per_step = o.batch * o.ctx
    total = o.steps if o.steps is not None else math.ceil(o.tokens / per_step) if o.tokens is not None else None
    step, seconds, last_val = 0, 0.0, None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, total, seconds, last_val = state["step"], state["total"], state["seconds"], state["val_loss"]
        torch.set_rng_state(state["rng"]["cpu"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"])
        progress.message(f"resuming {o.out} at step {step}")

    def schedule() -> Schedule:
        if total is None:
            return Schedule(o.lr, o.warmup or PLANNING_WARMUP, 1 << 62)
        w = o.warmup if o.warmup is not None else default_warmup(total)
        if w >= total:
            raise TernError(f"--warmup {w} is not below the run's {total} steps", "use a shorter warm-up")
        return Schedule(o.lr, w, total)

    sched = schedule()
    if state is None:  # the last check passed: the folder becomes this run's
        rd.write_run({"key": key, "config": cfg.to_dict(), "parameters": params, "arch": cfg.architecture})
    windows = None if val_tokens is None else val_windows(val_tokens, o.ctx, o.val_windows)
    log = LossLog(rd.file(LOG), step)
    budget_s = None if o.minutes is None else o.minutes * 60.0
    session_steps, session_s, recent = 0, 0.0, []
    timed_s, timed_steps = 0.0, 0

    def save() -> None:
        rd.save_state({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "total": total,
                       "seconds": seconds, "val_loss": last_val, "data_step": step,
                       "rng": {"cpu": torch.get_rng_state(),
                               "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}})
        export_checkpoint(model, rd.file(MODEL), tok.json_text)

    def out_of_time() -> bool:
        return budget_s is not None and seconds >= budget_s

    stopped = None
    with _StopFlag() as flag:
        while (total is None or step < total) and not out_of_time():
            t0 = _clock()
            lr, wd = sched.lr(step), sched.wd(step)
            for g in opt.param_groups:
                g["lr"] = lr
                g["weight_decay"] = wd if g["decay"] else 0.0
            x, y = batch(train_tokens, step, o.seed, o.batch, o.ctx)
            x, y = x.to(device), y.to(device)
            with _autocast(device):
                if teacher is None:
                    logits = model(x)
                    ce = F.cross_entropy(logits.float().reshape(-1, cfg.vocab), y.reshape(-1))
                    loss, kl = ce, None
                else:
                    want_h = dw.hidden > 0
                    with torch.no_grad():
                        t_out = teacher(x, return_hidden=want_h)
                    s_out = model(x, return_hidden=want_h)
                    s_logits, s_h = s_out if want_h else (s_out, None)
                    t_logits, t_h = t_out if want_h else (t_out, None)
                    loss, ce, kl = distill_loss(s_logits, t_logits, y, dw, s_h, t_h)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
            opt.step()
            ce_v = float(ce.detach())
            if not math.isfinite(ce_v):
                raise TernError(f"the loss became {ce_v} at step {step + 1}", "lower --lr")
            step += 1
            session_steps += 1
            recent = (recent + [ce_v])[-20:]
            dt = _clock() - t0
            if session_steps > 1:
                timed_s, timed_steps = timed_s + dt, timed_steps + 1

            val = None
            last = step == total or (budget_s is not None and total is not None and seconds + dt >= budget_s)
            if windows is not None and (step % o.eval_every == 0 or last):
                te = _clock()
                val = last_val = evaluate(model, windows, o.batch, device)
                dt += _clock() - te
            if total is None and session_steps >= PLAN_STEPS:
                eval_s = 0.0
                if windows is not None:
                    te = _clock()
                    val = last_val = evaluate(model, windows, o.batch, device)
                    eval_s = _clock() - te
                    dt += eval_s
                sps = timed_s / max(timed_steps, 1)
                left = budget_s * PLAN_MARGIN - (seconds + dt)
                per = sps + (eval_s / o.eval_every if windows is not None else 0.0)
                total = max(step + 1, step + int(left / per))
                sched = schedule()
                progress.message(f"planned {total} steps ({sps:.2f} s a step) for {o.minutes:g} minutes")
            seconds += dt
            session_s += dt
            rec = {"step": step, "tokens": step * per_step, "loss": ce_v, "val_loss": val, "lr": lr,
                   "seconds": round(seconds, 3)}
            if kl is not None:
                rec["kl"] = float(kl.detach())
            log.write(rec)
            tok_s = session_steps * per_step / max(session_s, 1e-9)
            eta = None if total is None else (total - step) * session_s / session_steps
            progress.update(step, total, ce_v, last_val, tok_s, eta, force=last)

            if step % o.save_every == 0 and not last:
                save()
            if flag.hit:
                stopped = "interrupted"
                break
            if o.stop_after is not None and session_steps >= o.stop_after:
                stopped = "stop-after"
                break

    log.close()
    save()
    progress.close()
    report = {"out": str(rd.path), "model_dir": str(rd.file(MODEL)), "arch": cfg.architecture,
              "parameters": params, "quant": o.quant, "steps": step, "total_steps": total,
              "tokens": step * per_step, "loss": sum(recent) / len(recent) if recent else None,
              "val_loss": last_val, "seconds": round(seconds, 3),
              "tokens_per_s": session_steps * per_step / session_s if session_s else None,
              "device": device.type, "complete": stopped is None}  # the steps or the minutes are used up
    if stopped == "interrupted":
        print(f"interrupted at step {step} of {total}; saved in '{rd.path}': continue with the same command and "
              f"--resume", file=sys.stderr)
        raise KeyboardInterrupt
    return report
