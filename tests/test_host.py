"""Host side, in-process: the generate command, sampling, the ref backend and streamed text."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from ternfpga.host.backend import open_backend
from ternfpga.host.cli import main
from ternfpga.host.generate import TextStream, encode_prompt, generate, parse_prompt_ids
from ternfpga.host.sampling import Sampler, SamplingOptions
from ternfpga.quant.errors import TernError
from ternfpga.quant.image import ModelImage
from ternfpga.quant.quantize import QuantizeOptions, quantize_checkpoint
from ternfpga.quant.synth import tiny_qwen2, write_checkpoint
from ternfpga.sim.golden import Candidates, GoldenModel

HEAD_K = 16
MAX_CTX = 64
PROMPT = "Hello world"
SUMMARY = re.compile(r"^\[ref\] prefill (\d+) tokens in [0-9.]+ ms; decode (\d+) tokens at [0-9.]+ tok/s; "
                     r"stop: (length|eos|context)$")


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("host")
    ckpt = write_checkpoint(base / "ckpt", tiny_qwen2())
    out = base / "model.tern"
    quantize_checkpoint(ckpt, out, QuantizeOptions(head_k=HEAD_K, max_ctx=MAX_CTX, progress=False))
    return out


@pytest.fixture(scope="module")
def image(image_path) -> ModelImage:
    return ModelImage.open(image_path)


@pytest.fixture(scope="module")
def tokenizer(image):
    return image.tokenizer()


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def gen_json(capsys, image_path, *args) -> dict:
    rc, out, err = run_cli(capsys, "generate", "--model", image_path, "--json", *args)
    assert rc == 0, err
    assert err == ""
    assert out.count("\n") == 1, out  # one JSON object on one line
    return json.loads(out)


def golden_greedy(image, prompt_ids: list[int], n: int) -> list[int]:
    """Greedy decoding with the golden model driven directly (no backend, no sampler)."""
    g = GoldenModel(image)
    cache = g.new_cache()
    cand = g.forward(prompt_ids, cache).candidates
    ids = []
    for i in range(n):
        ids.append(int(cand.ids[0]))
        if i < n - 1:
            cand = g.forward([ids[-1]], cache).candidates
    return ids


def cands(ids, logits) -> Candidates:
    fx = np.round(np.asarray(logits, dtype=np.float64) * 65536).astype(np.int64)
    return Candidates(np.asarray(ids, dtype=np.int64), fx)


# -- the generate command ----------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", [["--prompt", PROMPT], ["--prompt-ids", "10,20,30"]], ids=["text", "ids"])
def test_generate_prints_text_and_summary(capsys, image_path, prompt):
    n = 8
    rc, out, err = run_cli(capsys, "generate", "--model", image_path, *prompt, "-n", n, "--ignore-eos")
    assert rc == 0, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    m = SUMMARY.match(lines[0])
    assert m, lines[0]
    assert int(m.group(2)) == n - 1 and m.group(3) == "length"  # the first token comes from the prefill
    # the streamed text is the decode of the generated ids (same greedy run as --json)
    js = gen_json(capsys, image_path, *prompt, "-n", n, "--ignore-eos")
    assert int(m.group(1)) == len(js["prompt_ids"])
    assert out == js["text"] + "\n"
    assert js["text"].strip()


def test_generate_json(capsys, image_path, tokenizer):
    js = gen_json(capsys, image_path, "--prompt", PROMPT, "-n", 5, "--ignore-eos")
    for key in ("ids", "prompt_ids", "prefill_s", "decode_s", "decode_tok_s", "decode_tokens", "stop", "text",
                "backend"):
        assert key in js, key
    assert js["prompt_ids"] == tokenizer.encode(PROMPT, add_special_tokens=False).ids
    assert len(js["ids"]) == 5 and all(isinstance(i, int) for i in js["ids"])
    assert js["decode_tokens"] == 4 and js["stop"] == "length" and js["backend"] == "ref"
    assert js["prefill_s"] > 0 and js["decode_tok_s"] > 0
    assert js["text"] == tokenizer.decode(js["ids"], skip_special_tokens=False)


def test_greedy_is_deterministic_and_matches_golden(capsys, image_path, image, tokenizer):
    n = 10
    a = gen_json(capsys, image_path, "--prompt", PROMPT, "-n", n, "--temperature", "0", "--ignore-eos")
    b = gen_json(capsys, image_path, "--prompt", PROMPT, "-n", n, "--temperature", "0", "--ignore-eos")
    assert a["ids"] == b["ids"]
    prompt_ids = tokenizer.encode(PROMPT, add_special_tokens=False).ids
    assert a["ids"] == golden_greedy(image, prompt_ids, n)


def test_seeded_sampling_reproducible_and_seed_dependent(capsys, image_path):
    def sample(seed: int) -> list[int]:
        return gen_json(capsys, image_path, "--prompt-ids", "1,2,3", "-n", 8, "--ignore-eos",
                        "--temperature", "1.5", "--seed", seed)["ids"]

    assert sample(7) == sample(7)
    assert len({tuple(sample(s)) for s in range(6)}) > 1


@pytest.mark.parametrize("extra", [["--top-k", "1"], ["--top-p", "1e-9"]], ids=["top-k-1", "top-p-tiny"])
def test_degenerate_sampling_equals_greedy(capsys, image_path, extra):
    greedy = gen_json(capsys, image_path, "--prompt", PROMPT, "-n", 8, "--ignore-eos")["ids"]
    for seed in (0, 1):
        got = gen_json(capsys, image_path, "--prompt", PROMPT, "-n", 8, "--ignore-eos", "--temperature", "2",
                       "--seed", seed, *extra)["ids"]
        assert got == greedy


def test_generate_stops_at_context(capsys, image_path):
    ids = ",".join(["3"] * (MAX_CTX - 2))
    js = gen_json(capsys, image_path, "--prompt-ids", ids, "-n", 10, "--ignore-eos")
    assert js["stop"] == "context"
    assert len(js["prompt_ids"]) + js["decode_tokens"] == MAX_CTX
    assert len(js["ids"]) == 3  # one from the prefill, two decodes fill the context, the last is sampled


def test_generate_zero_tokens(capsys, image_path):
    js = gen_json(capsys, image_path, "--prompt-ids", "1,2", "-n", 0)
    assert js["ids"] == [] and js["decode_tokens"] == 0


def test_chat_without_chat_tokens(capsys, image_path):
    rc, out, err = run_cli(capsys, "generate", "--model", image_path, "--prompt", "hi", "--chat")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: --chat") and "chat tokens" in err


def test_chat_template_when_tokens_exist(tokenizer):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    ids = encode_prompt(tok, "hi", chat=True)
    start = tok.token_to_id("<|im_start|>")
    assert ids[0] == start and ids.count(start) == 2
    assert tok.decode(ids, skip_special_tokens=False).endswith("<|im_start|>assistant\n")
    assert encode_prompt(tok, "hi", chat=False) == tok.encode("hi", add_special_tokens=False).ids


def test_parse_prompt_ids():
    assert parse_prompt_ids("1,2,3", 10) == [1, 2, 3]
    assert parse_prompt_ids(" 4 , 5 ", 10) == [4, 5]
    for bad in ("", "1,,2", "1,x", "10", "-1", "1_0", "٣"):
        with pytest.raises(TernError):
            parse_prompt_ids(bad, 10)


# -- the sampler -------------------------------------------------------------------------------------
def test_sampler_returns_only_candidates():
    c = cands([100, 7, 300, 42, 5], [2.0, 1.5, 1.0, 0.0, -1.0])
    for opts, allowed in [
        (SamplingOptions(temperature=3.0, seed=0), {100, 7, 300, 42, 5}),
        (SamplingOptions(temperature=3.0, top_k=2, seed=1), {100, 7}),
        (SamplingOptions(temperature=1.0, top_p=0.7, seed=2), {100, 7}),  # p ~ [.46, .28, .17, ...]: the nucleus is 2
    ]:
        s = Sampler(opts, head_k=5)
        got = {s.choose(c) for _ in range(400)}
        assert got == allowed, (opts, got)


def test_sampler_seed_reproducible():
    c = cands(range(10), np.linspace(1, 0, 10))

    def draw(seed: int) -> list[int]:
        s = Sampler(SamplingOptions(temperature=1.0, seed=seed), head_k=10)
        return [s.choose(c) for _ in range(30)]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_sampler_extreme_temperatures():
    c = cands([9, 8, 7], [1.0, 0.5, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warnings either
        tiny = Sampler(SamplingOptions(temperature=1e-310, seed=0), 3)
        assert {tiny.choose(c) for _ in range(50)} == {9}
        huge = Sampler(SamplingOptions(temperature=1e300, seed=0), 3)
        assert {huge.choose(c) for _ in range(200)} == {9, 8, 7}


def test_sampler_rejects_bad_options():
    for opts in (SamplingOptions(temperature=-0.5), SamplingOptions(top_k=0), SamplingOptions(top_k=6),
                 SamplingOptions(top_p=0.0), SamplingOptions(top_p=float("nan")), SamplingOptions(seed=-2)):
        with pytest.raises(TernError):
            Sampler(opts, head_k=5)


# -- the ref backend ---------------------------------------------------------------------------------
def test_ref_backend_counters(image):
    be = open_backend("ref", image)
    assert (be.name, be.position, be.max_ctx, be.head_k) == ("ref", 0, MAX_CTX, HEAD_K)
    cand = be.prefill([1, 2, 3])
    assert len(cand) == HEAD_K
    be.decode(int(cand.ids[0]))
    be.decode(4)
    c = be.counters()
    assert (c["prefill_calls"], c["prefill_tokens"], c["decode_calls"], c["position"]) == (1, 3, 2, 5)
    assert c["prefill_s"] > 0 and c["decode_s"] > 0
    be.prefill([5, 6])
    c = be.counters()
    assert (c["prefill_calls"], c["prefill_tokens"], c["position"]) == (2, 5, 7)
    be.reset()
    assert be.position == 0 and be.counters()["prefill_calls"] == 2


def test_prefill_then_decode_equals_one_prefill(image):
    ids = [11, 200, 3, 47, 99, 5, 260, 18]
    one = open_backend("ref", image)
    whole = one.prefill(ids)
    step = open_backend("ref", image)
    got = [step.prefill(ids[:3])]
    got += [step.decode(t) for t in ids[3:]]
    last = got[-1]
    assert np.array_equal(last.ids, whole.ids) and np.array_equal(last.logits_fx, whole.logits_fx)
    # every step, against the golden model's per-position heads of one prefill
    g = GoldenModel(image)
    per = g.forward(ids, g.new_cache(), all_positions=True).per_token
    for c, ref in zip(got, per[2:]):
        assert np.array_equal(c.ids, ref.ids) and np.array_equal(c.logits_fx, ref.logits_fx)


def test_backend_limits(image):
    be = open_backend("ref", image)
    with pytest.raises(TernError, match="nothing to prefill"):
        be.prefill([])
    with pytest.raises(TernError, match="max context"):
        be.prefill([1] * (MAX_CTX + 1))
    be.prefill([1] * MAX_CTX)
    with pytest.raises(TernError, match="context is full"):
        be.decode(1)


def test_generate_function_uses_backend(image):
    be = open_backend("ref", image)
    gen = generate(be, [1, 2, 3], 4, Sampler(SamplingOptions(), be.head_k))
    assert len(gen.ids) == 4 and gen.decode_tokens == 3 and gen.stop == "length"
    assert be.counters()["decode_calls"] == 3 and be.position == 6


# -- streamed text -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["café", "price: 5 € only", "naïve — 😀 ok", "é€"])
def test_text_stream_multibyte(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert len(ids) > len(text.split())  # the multi-byte characters really are split over tokens
    stream = TextStream(tokenizer)
    pieces = [stream.push(i) for i in ids]
    assert all("\ufffd" not in p for p in pieces), pieces
    assert "".join(pieces) + stream.flush() == tokenizer.decode(ids) == text


def test_text_stream_holds_back_then_flushes(tokenizer):
    ids = tokenizer.encode("a€", add_special_tokens=False).ids  # '€' is 3 bytes
    stream = TextStream(tokenizer)
    assert stream.push(ids[0]) == "a"
    assert [stream.push(i) for i in ids[1:-1]] == [""] * (len(ids) - 2)  # incomplete: nothing yet
    assert stream.flush().startswith("\ufffd")  # the end of a stream shows what is left
    assert stream.flush() == ""


def test_stop_token_ends_generation_and_is_not_returned(image, tokenizer):
    prompt = tokenizer.encode("The field", add_special_tokens=False).ids
    greedy = golden_greedy(image, prompt, 4)
    backend = open_backend("ref", image)
    shown = []
    stop = greedy[-1]
    gen = generate(backend, prompt, 4, Sampler(SamplingOptions(), backend.head_k), stop_ids=(stop,),
                   on_token=shown.append)
    assert gen.stop == "eos" and gen.ids == greedy[:greedy.index(stop)] == shown
    backend.reset()
    gen = generate(backend, prompt, 4, Sampler(SamplingOptions(), backend.head_k), stop_ids=())
    assert gen.ids == greedy and gen.stop == "length"
