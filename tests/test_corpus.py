"""Corpus sources: local text/jsonl/parquet files and directories, errors naming the file."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from interp.collect.config import CorpusConfig
from interp.collect.corpus import corpus_identity, document_ids, documents, token_stream


class CharTokenizer:
    """One token per character (ids = code points); BOS 1, EOS 2."""

    bos_token_id, eos_token_id = 1, 2

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_local_sources(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\n\nsecond doc\n")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"body": "third"}) + "\n\n" + json.dumps({"body": "fourth"}) + "\n")
    pq.write_table(pa.table({"body": ["fifth"]}), tmp_path / "c.parquet")
    docs = set(documents(CorpusConfig(source=str(tmp_path / "a.txt"))))
    assert docs == {"first doc", "second doc"}
    docs = set(documents(CorpusConfig(source=str(tmp_path / "b.jsonl"), text_field="body")))
    assert docs == {"third", "fourth"}
    (tmp_path / "a.txt").unlink()
    docs = set(documents(CorpusConfig(source=str(tmp_path), text_field="body")))
    assert docs == {"third", "fourth", "fifth"}


def test_sequences_are_bos_plus_running_text(tmp_path):
    (tmp_path / "t.txt").write_text("abcdefgh\n\nijklmnop")
    cfg = CorpusConfig(source=str(tmp_path / "t.txt"), n_tokens=14, seq_len=8, seed=0)
    seqs, starts = token_stream(cfg, CharTokenizer())
    assert seqs.shape == (2, 8) and (seqs[:, 0] == 1).all()
    assert (seqs[:, 1:] == 2).sum() == 1  # one EOS between the two documents
    body = seqs[:, 1:].reshape(-1)
    assert starts.tolist() == [0, 9] and body[8] == 2   # the second starts after the first's EOS


def test_errors_name_the_file_or_field(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        list(documents(CorpusConfig(source=str(tmp_path / "missing.txt"))))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2 is not valid JSON"):
        list(documents(CorpusConfig(source=str(bad))))
    nokey = tmp_path / "nokey.jsonl"
    nokey.write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match="corpus.text_field"):
        list(documents(CorpusConfig(source=str(nokey))))
    small = tmp_path / "small.txt"
    small.write_text("tiny")
    with pytest.raises(ValueError, match="corpus.n_tokens"):
        token_stream(CorpusConfig(source=str(small), n_tokens=100, seq_len=9), CharTokenizer())


def test_identity_tracks_file_contents(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("one")
    a = corpus_identity(CorpusConfig(source=str(f)))
    f.write_text("two")
    assert corpus_identity(CorpusConfig(source=str(f))) != a


def test_embedded_corpus_is_the_wikipedia_sample():
    docs = list(documents(CorpusConfig()))
    assert len(docs) > 50 and sum(len(d) for d in docs) > 2_000_000
    assert not any(d.lower().startswith("#redirect") for d in docs)


DOCS = ["abcdefgh", "ij", "klmnop", "qrstuvwx", "yz"]


@pytest.mark.parametrize("kind", ["txt", "jsonl", "parquet"])
def test_every_local_source_keeps_the_first_max_doc_tokens_of_each_document(tmp_path, kind):
    path = tmp_path / f"docs.{kind}"
    if kind == "txt":
        path.write_text("\n\n".join(DOCS) + "\n")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    else:
        pq.write_table(pa.table({"text": DOCS}), path)
    # 4 characters of each (2 of the short ones) plus an EOS: 5 + 3 + 5 + 5 + 3 = 21 tokens.
    cfg = CorpusConfig(source=str(path), n_tokens=21, seq_len=8, seed=1, max_doc_tokens=4)
    seqs, starts = token_stream(cfg, CharTokenizer())
    order = list(documents(cfg))
    expected = [t for d in order for t in [ord(c) for c in d[:4]] + [2]]
    assert seqs[:, 1:].reshape(-1).tolist() == expected
    lengths = torch.tensor([min(len(d), 4) + 1 for d in order])
    assert starts.tolist() == (torch.cumsum(lengths, 0) - lengths).tolist()
    # null: whole documents, as before the setting existed.
    whole = cfg.model_copy(update={"max_doc_tokens": None, "n_tokens": 28})
    seqs, starts = token_stream(whole, CharTokenizer())
    assert seqs[:, 1:].reshape(-1).tolist() == [t for d in order for t in [ord(c) for c in d] + [2]][:28]
    assert starts.tolist()[:2] == [0, len(order[0]) + 1]


def test_a_corpus_too_small_for_its_prefixes_names_max_doc_tokens(tmp_path):
    (tmp_path / "t.txt").write_text("\n\n".join(DOCS))
    cfg = CorpusConfig(source=str(tmp_path / "t.txt"), n_tokens=28, seq_len=8, max_doc_tokens=4)
    with pytest.raises(ValueError, match=r"only 21 tokens in the first corpus.max_doc_tokens \(4\) "
                       r"of each document.*raise corpus.max_doc_tokens \(null = whole documents\)"):
        token_stream(cfg, CharTokenizer())


class LineTokenizer(CharTokenizer):
    """One token per line (a coarse tokenizer: a prefix of the text needs to grow)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [len(line) for line in text.split("\n")]}


class Recording:
    """A tokenizer that remembers how many characters it was given."""

    def __init__(self, inner):
        self.inner, self.chars = inner, 0
        self.bos_token_id, self.eos_token_id = inner.bos_token_id, inner.eos_token_id

    def __call__(self, text, add_special_tokens=False):
        self.chars += len(text)
        return self.inner(text, add_special_tokens)


def test_a_prefix_is_the_whole_documents_first_tokens_from_a_prefix_of_its_text():
    from tests.builders import WordTokenizer

    docs = list(documents(CorpusConfig()))[:12]
    docs.append("x" * 5000 + " tail")                         # one long word: the whole text
    docs.append("\n".join(f"line {i}" for i in range(300)))    # 300 tokens of a LineTokenizer
    for tok in (CharTokenizer(), WordTokenizer(), LineTokenizer()):
        for cap in (1, 7, 512):
            for doc in docs:
                full = tok(doc)["input_ids"]
                assert document_ids(doc, tok, cap) == full[:cap], (type(tok).__name__, cap)
        assert document_ids(docs[0], tok, None) == tok(docs[0])["input_ids"]
    # Only the start of a Wikipedia article is tokenized for its first 512 tokens.
    rec = Recording(WordTokenizer())
    for doc in docs[:12]:
        document_ids(doc, rec, 512)
    assert rec.chars < 0.2 * sum(len(d) for d in docs[:12])


def test_identity_names_max_doc_tokens_only_when_documents_are_cut():
    whole = corpus_identity(CorpusConfig(max_doc_tokens=None))
    assert "max_doc_tokens" not in whole   # the key of whole documents is the one it always was
    assert set(whole) == {"source", "text_field", "n_tokens", "seq_len", "seed", "file"}
    cut = corpus_identity(CorpusConfig())
    assert cut["max_doc_tokens"] == 512 and {k: v for k, v in cut.items() if k != "max_doc_tokens"} == whole
    assert corpus_identity(CorpusConfig(max_doc_tokens=256)) != cut
