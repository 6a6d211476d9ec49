"""Text sources -> fixed-length token sequences (BOS + seq_len-1 tokens of running text).

Sources: the embedded Wikipedia sample shipped in the gensim wheel, local .txt / .jsonl / .parquet
files (or a directory of them), and Hugging Face datasets (`hf:<name>[:<split>]`, when online).
Documents are shuffled with a seed, each cut to its first corpus.max_doc_tokens tokens, joined with
EOS and cut into sequences, so the result is reproducible; where each document starts in that
stream is kept, so that mining can split train and test windows by document
(interp/mine/doc_split.py), which needs many documents in the tokens collected.

A document's prefix ends at a token count, not at a sentence or paragraph end: the budget is exact
(n_tokens holds at least n_tokens / (max_doc_tokens + 1) documents, whatever the seed), it works
for any tokenizer, language or code, and it changes no kept token's activation (the model is
causal; a later cut would only move the EOS). The cost, an EOS after a broken-off sentence, is
what every sequence boundary already does to running text every seq_len - 1 tokens.
"""
from __future__ import annotations

import bz2
import codecs
import importlib.util
import json
import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import file_hash
from interp.collect.config import CorpusConfig
from interp.config_base import EMBEDDED

log = logging.getLogger(__name__)

WIKI_SAMPLE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet")
CHARS_PER_TOKEN = 8        # characters first tokenized per kept token (English: ~4 a token)
PREFIX_MARGIN = 16         # tokens past the cut a text prefix must give (document_ids)
SNIFF_BYTES = 1 << 16      # checked up front (check_source); the rest as documents are read
MAX_CONTROL_SHARE = 0.01   # real text has almost no control characters; binary data has many
_WORD_END = re.compile(r"(?<=\S)\s")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")  # C0 controls but \t \n \f \r, and DEL
_FIX = ("corpus files must be UTF-8 text (.txt, .jsonl) or Parquet with a string column; "
        "convert it or move it out of corpus.source")


class CorpusFileError(ValueError):
    """A corpus file that is not (readable) text; the message names the file and what to do."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"corpus file {path} {problem}; {_FIX}")


def _text_problem(text: str) -> str | None:
    """Why `text` does not look like text, or None."""
    if "\x00" in text:
        return "holds NUL bytes (binary data?)"
    n_control = sum(1 for _ in _CONTROL.finditer(text))
    if text and n_control / len(text) > MAX_CONTROL_SHARE:
        return f"is {n_control / len(text):.0%} control characters (binary data?)"
    return None


def _sniff(path: Path) -> None:
    """Raise CorpusFileError if the start of a text file is binary or not UTF-8."""
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    try:  # incremental: a multi-byte character cut at SNIFF_BYTES is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as err:
        raise CorpusFileError(
            path, f"is not UTF-8 (byte {err.start}: {head[err.start:err.start + 4]!r})") from None
    if problem := _text_problem(text):
        raise CorpusFileError(path, problem)


def _parquet_schema(path: Path, text_field: str) -> None:
    """Raise if `path` is not Parquet or lacks a string column `text_field` (reads the footer only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise CorpusFileError(path, f"is not a readable Parquet file ({err})") from None
    if text_field not in schema.names:
        raise ValueError(f"{path} has no column {text_field!r} (columns: "
                         f"{', '.join(schema.names)}); set corpus.text_field")
    kind = schema.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise CorpusFileError(path, f"has column {text_field!r} of type {kind}, not string")


def check_source(cfg: CorpusConfig) -> None:
    """Fail fast, before any model loads: local corpus files exist and look like text."""
    if cfg.source == EMBEDDED or cfg.source.startswith("hf:"):
        return
    for path in _local_files(Path(cfg.source)):
        _check_file(path, cfg.text_field)


def _check_file(path: Path, text_field: str) -> None:
    """Cheap checks of one corpus file: its kind, and that it starts like text / is Parquet."""
    if path.suffix == ".parquet":
        _parquet_schema(path, text_field)
    elif path.suffix in (".txt", ".jsonl"):
        _sniff(path)
    else:
        raise ValueError(f"corpus.source file {path} must end in {', '.join(TEXT_SUFFIXES)}")


def embedded_corpus_path() -> Path:
    spec = importlib.util.find_spec("gensim")
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded corpus needs the 'gensim' package (pip install gensim)")
    path = Path(spec.origin).parent / "test" / "test_data" / WIKI_SAMPLE
    if not path.is_file():
        raise RuntimeError(f"gensim's Wikipedia sample {path} is missing; reinstall gensim")
    return path


def _wiki_documents() -> list[str]:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    docs = []
    with bz2.open(embedded_corpus_path(), "rb") as f:
        for title, text, _pageid in extract_pages(f):
            if not text or text.lstrip().lower().startswith("#redirect"):
                continue
            clean = filter_wiki(text).replace("'''", "").replace("''", "")
            clean = re.sub(r"\n{3,}", "\n\n", clean).strip()
            if len(clean) > 200:
                docs.append(f"{title}\n\n{clean}")
    return docs


def _file_documents(path: Path, text_field: str) -> Iterator[str]:
    if path.suffix == ".txt":
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise CorpusFileError(path, f"is not UTF-8 (byte {err.start})") from None
        # Blank lines separate documents.
        for block in re.split(r"\n\s*\n", text):
            if block.strip():
                yield block.strip()
    elif path.suffix == ".jsonl":
        for lineno, line in _utf8_lines(path):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno} is not valid JSON ({err})") from None
            if not isinstance(row, dict) or text_field not in row:
                raise ValueError(f"{path}:{lineno} is not a JSON object with key "
                                 f"{text_field!r} (set corpus.text_field)")
            yield str(row[text_field])
    else:  # .parquet (_check_file has checked the kind and the column)
        import pyarrow.parquet as pq

        yield from (str(t) for t in pq.read_table(path, columns=[text_field])
                    .column(text_field).to_pylist() if t)


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 file; an undecodable line is reported by its number
    (decoding line by line: text mode decodes 8 KB blocks and cannot say which line failed)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CorpusFileError(path, f"is not UTF-8 (line {lineno})") from None


def _checked_documents(path: Path, text_field: str) -> list[str]:
    """All documents of one file, refused as a whole if they do not look like text."""
    _check_file(path, text_field)  # binary data is named as such, not as the error it causes
    docs = list(_file_documents(path, text_field))
    if problem := _text_problem("".join(docs)):
        raise CorpusFileError(path, problem)
    return docs


def _hf_documents(spec: str, text_field: str) -> Iterator[str]:
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError(f"corpus.source {spec!r} needs the 'datasets' package and network "
                           "access to the hub (pip install datasets)") from None
    parts = spec.split(":")
    name, split = parts[1], parts[2] if len(parts) > 2 else "train"
    for row in datasets.load_dataset(name, split=split, streaming=True):
        yield str(row[text_field])


def _local_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES)
        if not files:
            raise ValueError(f"corpus.source directory {path} holds no {'/'.join(TEXT_SUFFIXES)} files")
        return files
    if not path.exists():
        raise ValueError(f"corpus.source {str(path)!r} does not exist (use 'embedded', a file, "
                         f"a directory or 'hf:<dataset>')")
    return [path]


def documents(cfg: CorpusConfig) -> Iterator[str]:
    """Documents of the configured source, shuffled with cfg.seed where the source is finite."""
    if cfg.source.startswith("hf:"):
        yield from _hf_documents(cfg.source, cfg.text_field)
        return
    if cfg.source == EMBEDDED:
        docs = _wiki_documents()
    else:
        docs = [d for f in _local_files(Path(cfg.source)) for d in _checked_documents(f, cfg.text_field)]
    random.Random(cfg.seed).shuffle(docs)
    yield from docs


def corpus_identity(cfg: CorpusConfig) -> dict[str, Any]:
    """What determines the token sequences, for cache keys: config plus local file contents."""
    # Whole documents (None) is what every key from before the setting existed meant: left out,
    # those keys and their artifacts stay valid; a cap changes the tokens, hence the key.
    ident: dict[str, Any] = cfg.model_dump(
        mode="json", exclude={"max_doc_tokens"} if cfg.max_doc_tokens is None else None)
    if cfg.source == EMBEDDED:
        ident["file"] = WIKI_SAMPLE
    elif not cfg.source.startswith("hf:"):
        ident["files"] = {str(p): file_hash(p) for p in _local_files(Path(cfg.source))}
    return ident


def document_ids(doc: str, tokenizer: Any, max_tokens: int | None) -> list[int]:
    """Token ids of `doc`, or its first `max_tokens` ones: tokenizer(doc)[:max_tokens].

    Only a prefix of a long document's text is tokenized (a Wikipedia article is 10^4 tokens, of
    which 512 are kept): CHARS_PER_TOKEN characters per token to begin with, ended at a word end
    and grown until it gives PREFIX_MARGIN tokens past the cut. Tokenizers split text into words
    before merging, so only the last word of the prefix (complete, but maybe tokenized apart
    from what follows it) can differ from the whole document's tokens, and it lies past the cut.
    """
    if max_tokens is None:
        return tokenizer(doc, add_special_tokens=False)["input_ids"]
    n_chars = max_tokens * CHARS_PER_TOKEN
    while True:
        text = _to_word_end(doc, n_chars)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= max_tokens + PREFIX_MARGIN or len(text) == len(doc):
            return ids[:max_tokens]
        n_chars *= 4


def _to_word_end(text: str, n_chars: int) -> str:
    """text[:n] for the first n >= n_chars where a word ends (all of text if none does)."""
    if len(text) <= n_chars:
        return text
    end = _WORD_END.search(text, n_chars)
    return text if end is None else text[:end.start()]


def token_sequences(cfg: CorpusConfig, tokenizer: Any) -> torch.Tensor:
    """[n_seq, seq_len] int64: BOS followed by seq_len-1 tokens of running text (token_stream's)."""
    return token_stream(cfg, tokenizer)[0]


def token_stream(cfg: CorpusConfig, tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequences [n_seq, seq_len] int64, doc_starts [n_docs] int64).

    A sequence is BOS followed by seq_len-1 tokens of running text; n_seq =
    ceil(n_tokens / (seq_len-1)); raises if the corpus is too small. Document i (with its EOS)
    covers body tokens [doc_starts[i], doc_starts[i+1]) of the stream with BOS dropped, i.e. token
    t = seq_id * (seq_len-1) + position - 1; each document is its first cfg.max_doc_tokens tokens,
    and the last one may be cut shorter at the end.
    """
    body = cfg.seq_len - 1
    n_seq = -(-cfg.n_tokens // body)
    need = n_seq * body
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    starts: list[int] = []
    for doc in documents(cfg):
        starts.append(len(stream))
        stream.extend(document_ids(doc, tokenizer, cfg.max_doc_tokens))
        if eos is not None:
            stream.append(eos)
        if len(stream) >= need:
            break
    if len(stream) < need:
        cut, fix = "", "lower it"
        if cfg.max_doc_tokens is not None:
            cut = f" in the first corpus.max_doc_tokens ({cfg.max_doc_tokens}) of each document"
            fix = "lower it, raise corpus.max_doc_tokens (null = whole documents)"
        raise ValueError(f"corpus.source {cfg.source!r} has only {len(stream)} tokens{cut}; "
                         f"corpus.n_tokens asks for {cfg.n_tokens}: {fix} or add text")
    body_tokens = torch.tensor(stream[:need], dtype=torch.long).view(n_seq, body)
    seqs = torch.cat([torch.full((n_seq, 1), bos, dtype=torch.long), body_tokens], dim=1)
    return seqs, torch.tensor(starts, dtype=torch.long)
