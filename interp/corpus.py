"""Text sources -> fixed-length token sequences (BOS + seq_len-1 tokens of running text).

Sources: the embedded Wikipedia sample shipped in the gensim wheel, local .txt / .jsonl / .parquet
files (or a directory of them), and Hugging Face datasets (`hf:<name>[:<split>]`, when online).
Documents are shuffled with a seed, joined with EOS and cut into sequences, so every token of the
corpus is used and the result is reproducible.
"""
from __future__ import annotations

import bz2
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
from interp.config import EMBEDDED, CorpusConfig

log = logging.getLogger(__name__)

WIKI_SAMPLE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet")


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
        # Blank lines separate documents.
        for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            if block.strip():
                yield block.strip()
    elif path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno} is not valid JSON ({err})") from None
                if text_field not in row:
                    raise ValueError(f"{path}:{lineno} has no key {text_field!r} "
                                     f"(set corpus.text_field)")
                yield str(row[text_field])
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if text_field not in table.column_names:
            raise ValueError(f"{path} has no column {text_field!r} (columns: "
                             f"{', '.join(table.column_names)}); set corpus.text_field")
        yield from (str(t) for t in table.column(text_field).to_pylist() if t)
    else:
        raise ValueError(f"corpus.source file {path} must end in {', '.join(TEXT_SUFFIXES)}")


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
        docs = [d for f in _local_files(Path(cfg.source)) for d in _file_documents(f, cfg.text_field)]
    random.Random(cfg.seed).shuffle(docs)
    yield from docs


def corpus_identity(cfg: CorpusConfig) -> dict[str, Any]:
    """What determines the token sequences, for cache keys: config plus local file contents."""
    ident: dict[str, Any] = cfg.model_dump(mode="json")
    if cfg.source == EMBEDDED:
        ident["file"] = WIKI_SAMPLE
    elif not cfg.source.startswith("hf:"):
        ident["files"] = {str(p): file_hash(p) for p in _local_files(Path(cfg.source))}
    return ident


def token_sequences(cfg: CorpusConfig, tokenizer: Any) -> torch.Tensor:
    """[n_seq, seq_len] int64: BOS followed by seq_len-1 tokens of running text.

    n_seq = ceil(n_tokens / (seq_len-1)); raises if the corpus is too small.
    """
    body = cfg.seq_len - 1
    n_seq = -(-cfg.n_tokens // body)
    need = n_seq * body
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for doc in documents(cfg):
        stream.extend(tokenizer(doc, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(eos)
        if len(stream) >= need:
            break
    if len(stream) < need:
        raise ValueError(f"corpus.source {cfg.source!r} has only {len(stream)} tokens; "
                         f"corpus.n_tokens asks for {cfg.n_tokens}: lower it or add text")
    body_tokens = torch.tensor(stream[:need], dtype=torch.long).view(n_seq, body)
    return torch.cat([torch.full((n_seq, 1), bos, dtype=torch.long), body_tokens], dim=1)
