"""``ternfpga generate``: stream text from a model image on a backend."""
from __future__ import annotations

import json
import sys

from ternfpga.quant.errors import TernError


def register(sub, name: str):
    p = sub.add_parser(name, help="generate text from a model image",
                       description="Prefill a prompt and decode tokens on a backend; prints text as it "
                                   "comes, then the prefill time and decode tokens/s.")
    p.add_argument("--model", required=True, metavar="MODEL.tern", help="model image from `ternfpga quantize`")
    p.add_argument("--backend", default="ref", help="ref (golden model), sim (virtual KV260), kv260 (board)")
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
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ternfpga.quant.image import ModelImage

    from ..backend import open_backend
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
    backend = open_backend(args.backend, image)
    sampler = Sampler(opts, backend.head_k)
    stop = () if args.ignore_eos else tuple(cfg.eos_ids) + (chat_stop_ids(tokenizer) if args.chat else ())
    stream = TextStream(tokenizer)

    def show(token: int) -> None:
        if not args.json:
            sys.stdout.write(stream.push(token))
            sys.stdout.flush()

    gen = generate(backend, prompt_ids, args.n, sampler, stop, show)
    text = tokenizer.decode(gen.ids, skip_special_tokens=False)
    if args.json:
        print(json.dumps(dict(gen.to_dict(), text=text, backend=backend.name, model=str(args.model))))
    else:
        sys.stdout.write(stream.flush() + "\n")
        print(f"[{backend.name}] prefill {len(prompt_ids)} tokens in {gen.prefill_s * 1e3:.1f} ms; "
              f"decode {gen.decode_tokens} tokens at {gen.decode_tok_s:.1f} tok/s; stop: {gen.stop}",
              file=sys.stderr)
    return 0
