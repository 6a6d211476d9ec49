"""Binary, undecodable and malformed corpus files are refused with the file (and line) named, both
by the up-front check (check_source) and when the documents are read."""
from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interp.collect.config import CorpusConfig
from interp.collect.corpus import CorpusFileError, check_source, documents

BINARY = bytes(range(256)) * 64 + os.urandom(4096)


def _cfg(path) -> CorpusConfig:
    return CorpusConfig(source=str(path))


def _both(path, match):
    """Both the fast check and the full read refuse `path` with a message matching `match`."""
    with pytest.raises(ValueError, match=match) as fast:
        check_source(_cfg(path))
    with pytest.raises(ValueError, match=match) as full:
        list(documents(_cfg(path)))
    for err in (fast.value, full.value):
        assert str(path) in str(err) and "\n" not in str(err)


@pytest.mark.parametrize("name,data,match", [
    ("bin.txt", BINARY, "NUL bytes|not UTF-8"),
    ("latin1.txt", "café crème ".encode("latin-1") * 50, "not UTF-8 \\(byte 3"),
    ("ctrl.txt", ("ab\x01\x02\x03\x1b" * 300).encode(), "control characters"),
    ("bin.jsonl", BINARY, "NUL bytes|not UTF-8"),
    ("bin.parquet", BINARY, "not a readable Parquet file"),
])
def test_binary_or_undecodable_files_are_refused(tmp_path, name, data, match):
    (tmp_path / name).write_bytes(data)
    _both(tmp_path / name, match)


def test_undecodable_bytes_late_in_a_jsonl_name_the_line(tmp_path):
    path = tmp_path / "late.jsonl"
    good = (json.dumps({"text": "fine " * 20}) + "\n").encode()
    path.write_bytes(good * 2000 + b'{"text": "\xff\xfe"}\n')  # past what check_source sniffs
    check_source(_cfg(path))
    with pytest.raises(CorpusFileError, match=r"late.jsonl is not UTF-8 \(line 2001\)"):
        list(documents(_cfg(path)))


@pytest.mark.parametrize("line,match", [
    ("{not json", r"bad.jsonl:2 is not valid JSON"),
    ('["a", "list"]', r"bad.jsonl:2 is not a JSON object with key 'text'"),
    ('"text"', r"bad.jsonl:2 is not a JSON object"),
])
def test_malformed_jsonl_lines_name_file_and_line(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=match):
        list(documents(_cfg(path)))


def test_parquet_text_column_must_be_strings(tmp_path):
    pq.write_table(pa.table({"text": [b"\x00\x01", b"\x02"]}), tmp_path / "b.parquet")
    _both(tmp_path / "b.parquet", "column 'text' of type binary, not string")


def test_a_directory_is_checked_file_by_file(tmp_path):
    (tmp_path / "good.txt").write_text("plain words\n\nmore words\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "evil.txt").write_bytes(BINARY)
    with pytest.raises(CorpusFileError, match="evil.txt"):
        check_source(_cfg(tmp_path))


def test_ordinary_text_passes(tmp_path):
    (tmp_path / "a.txt").write_text("Tabs\tand form feeds\f are fine.\r\n\r\nÜnïcödé too — ✓\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "snowman ☃"}) + "\n")
    pq.write_table(pa.table({"text": ["parquet text"]}), tmp_path / "c.parquet")
    check_source(_cfg(tmp_path))
    assert len(list(documents(_cfg(tmp_path)))) == 4
