"""``ternfpga generate``: stream text from a model image on a backend."""
from __future__ import annotations

import json
import sys

from ternfpga.quant.errors import TernError

from .backend_args import add_accel_arg, open_from_args


def register(sub, name: str):
    p = sub.add_parser(name, help="generate text from a model image",
                       description="Prefill a prompt and decode tokens on a backend; prints text as it "
                                   "comes, then the prefill time and decode tokens/s.")
    p.add_argument("--model", required=True, metavar="MODEL.tern", help="model image from `ternfpga quantize`")
    p.add_argument("--backend", default="ref", help="ref (golden model), sim (virtual KV260), kv260 (board)")
    add_accel_arg(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text (tokenized raw, no template)")
    src.add_argument("--prompt-ids", metavar="IDS", help="comma-separated token ids, e.g. 1,2,3")
    p.add_argument("--chat", action="store_true", help="wrap --prompt in the model's chat template")
    p.add_argument("-n", type=int, default=32, help="tokens to generate (default 32)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k best candidates")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--ignore-eos", action="store_true", help="keep going past the end-of-text token")
    p.add_argument("--json", action="store_true", help="print the ids and timings as one JSON object")
    p.add_argument("--stats", action="store_true",
                   help="device figures: cycles and time of prefill and decode at the modelled clock, DDR bytes "
                        "and GB/s, share of cycles per op class (with --json: the \"stats\" key)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ternfpga.quant.image import ModelImage

    from ..generate import TextStream, chat_stop_ids, encode_prompt, generate, parse_prompt_ids
    from ..sampling import Sampler, SamplingOptions

    if args.chat and args.prompt is None:
        raise TernError("--chat needs --prompt", "give the prompt as text, or drop --chat")
    if args.n < 0:
        raise TernError(f"-n {args.n} is negative", "ask for 0 or more tokens")
    opts = SamplingOptions(args.temperature, args.top_k, args.top_p, args.seed)
    image = ModelImage.open(args.model)
    opts.validate(int(image.header["quant"]["head_k"]))
    tokenizer = image.tokenizer()
    cfg = image.config
    if args.prompt is not None:
        prompt_ids = encode_prompt(tokenizer, args.prompt, args.chat)
    else:
        prompt_ids = parse_prompt_ids(args.prompt_ids, cfg.vocab)
    max_ctx = int(image.header["quant"]["max_ctx"])
    if len(prompt_ids) > max_ctx:
        raise TernError(f"the prompt has {len(prompt_ids)} tokens, more than the max context {max_ctx}",
                        "shorten the prompt or re-quantize with a larger --max-ctx")
    backend = open_from_args(args, image)
    sampler = Sampler(opts, backend.head_k)
    stop = () if args.ignore_eos else tuple(cfg.eos_ids) + (chat_stop_ids(tokenizer) if args.chat else ())
    stream = TextStream(tokenizer)

    def show(token: int) -> None:
        if not args.json:
            sys.stdout.write(stream.push(token))
            sys.stdout.flush()

    gen = generate(backend, prompt_ids, args.n, sampler, stop, show)
    text = tokenizer.decode(gen.ids, skip_special_tokens=False)
    device = backend.counters().get("device")
    if args.json:
        out = dict(gen.to_dict(), text=text, backend=backend.name, model=str(args.model))
        if args.stats:
            out["stats"] = device
        print(json.dumps(out))
    else:
        sys.stdout.write(stream.flush() + "\n")
        print(f"[{backend.name}] prefill {len(prompt_ids)} tokens in {gen.prefill_s * 1e3:.1f} ms; "
              f"decode {gen.decode_tokens} tokens at {gen.decode_tok_s:.1f} tok/s; stop: {gen.stop}",
              file=sys.stderr)
        if args.stats:
            for line in stats_lines(backend.name, device):
                print(line, file=sys.stderr)
    return 0


def _bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def stats_lines(backend: str, device: dict | None) -> list[str]:
    """``--stats``: per phase the device cycles, their time at the modelled clock, DDR traffic and GB/s, and
    the share of cycles per op class (memory stalls overlap the classes, so they are shown apart)."""
    if not device:
        return [f"[{backend}] no device counters: this backend runs the golden model on the host"]
    clock = device["clock_hz"]
    lines = []
    for phase in ("prefill", "decode"):
        d = device[phase]
        if not d["calls"]:
            lines.append(f"[{backend}] {phase}: no calls")
            continue
        rate = f"; {d['tokens'] / d['seconds']:.1f} tok/s" if phase == "decode" and d["seconds"] > 0 else ""
        lines.append(f"[{backend}] {phase}: {d['tokens']} tokens in {d['calls']} calls, {d['cycles']:,} cycles = "
                     f"{d['seconds'] * 1e3:.3f} ms at {clock / 1e6:.0f} MHz{rate}; "
                     f"DDR read {_bytes(d['ddr_read_bytes'])}, written {_bytes(d['ddr_write_bytes'])}, "
                     f"{d['ddr_gb_s']:.2f} GB/s")
        by = d["cycles_by_class"]
        total = max(d["cycles"], 1)
        other = d["cycles"] - sum(by[k] for k in ("matmul", "attention", "vector", "head"))
        shares = ", ".join(f"{k} {100 * by[k] / total:.1f}%" for k in ("matmul", "attention", "vector", "head"))
        lines.append(f"[{backend}] {phase} cycles: {shares}, other {100 * other / total:.1f}%; waiting on DDR "
                     f"{100 * by['memstall'] / total:.1f}%")
    return lines
