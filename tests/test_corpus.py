"""Corpus sources: local text/jsonl/parquet files and directories, errors naming the file."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interp.collect.config import CorpusConfig
from interp.collect.corpus import corpus_identity, documents, token_stream


class CharTokenizer:
    """One token per character (ids = code points); BOS 1, EOS 2."""

    bos_token_id, eos_token_id = 1, 2

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_local_sources(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\n\nsecond doc\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "third"}) + "\n\n" + json.dumps({"body": "fourth"}) + "\n")
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
