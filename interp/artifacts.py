"""Artifact store: content-hash keys, atomic directory writes, per-key build locks.

An artifact lives at `<root>/artifacts/<stage>/<key>/` and exists only once complete: it is built in
a sibling temp directory and renamed into place. A build holds an exclusive file lock on
`<stage>/<key>.lock`, so two processes building the same key never interleave; the second one
finds the finished artifact and returns it. Resumable stages (explain, score) keep their temp
directory (`<key>.partial`) across crashes so a re-run continues from the parts already written.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def stable_hash(obj: Any, n: int = 16) -> str:
    """Hash of a JSON-serialisable object, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def file_hash(path: Path, n: int = 16) -> str:
    """sha256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def artifact_key(stage: str, version: str, config: Any, inputs: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> str:
    """Key of a stage's output: its config, its input artifact keys, prompt hashes, stage version."""
    return stable_hash({"stage": stage, "version": version, "config": config,
                        "inputs": inputs or {}, "extra": extra or {}})


@dataclass(frozen=True)
class ArtifactRef:
    """A finished artifact: stage name, key and directory."""

    stage: str
    key: str
    path: Path

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / "manifest.json").read_text())


class ArtifactStore:
    """Directory layout and atomic builds under `<home>/artifacts`."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.root = self.home / "artifacts"

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def get(self, stage: str, key: str) -> ArtifactRef | None:
        p = self.path(stage, key)
        return ArtifactRef(stage, key, p) if (p / "manifest.json").is_file() else None

    def keys(self, stage: str) -> list[str]:
        """Keys of the finished artifacts of `stage`."""
        return sorted(p.parent.name for p in (self.root / stage).glob("*/manifest.json"))

    def require(self, stage: str, key: str) -> ArtifactRef:
        ref = self.get(stage, key)
        if ref is None:
            raise FileNotFoundError(f"{stage} artifact {key} does not exist under {self.root}; "
                                    f"run the {stage} stage first")
        return ref

    @contextlib.contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """Exclusive lock for building one artifact; waits for a concurrent builder."""
        lock_path = self.root / stage / f"{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def build_once(self, stage: str, key: str, fill: Callable[[Path], dict[str, Any]], *,
                   inputs: dict[str, str] | None = None, resumable: bool = False) -> ArtifactRef:
        """The artifact `stage/key`, built by `fill(tmp_dir) -> manifest` unless it exists.

        Owns the whole skeleton every stage shares: the per-key lock, the cache hit, the temp
        directory (a fixed `<key>.partial` for resumable stages, which survives a crash so a
        re-run continues from its part files; a fresh one otherwise, removed on failure), the
        manifest (stage, key, input keys, timing + what `fill` returns) and the rename. Stage code
        only fills a directory; an exception from `fill` leaves no artifact, so a failed stage is
        never a cache hit.
        """
        with self.lock(stage, key):
            if (ref := self.get(stage, key)) is not None:
                return ref
            final = self.path(stage, key)
            if resumable:
                tmp = final.with_name(f"{key}.partial")
            else:
                for stale in final.parent.glob(f"{key}.tmp-*"):  # left by a killed builder
                    shutil.rmtree(stale, ignore_errors=True)
                tmp = final.with_name(f"{key}.tmp-{uuid.uuid4().hex[:8]}")
            tmp.mkdir(parents=True, exist_ok=True)
            started = time.time()
            try:
                manifest = dict(fill(tmp))
            except BaseException:
                if not resumable:
                    shutil.rmtree(tmp, ignore_errors=True)
                raise
            body = {**manifest, "stage": stage, "key": key, "inputs": dict(inputs or {}),
                    "created_at": time.time(), "build_seconds": round(time.time() - started, 3)}
            write_text_atomic(tmp / "manifest.json", json.dumps(body, indent=2, default=str))
            os.replace(tmp, final)
        return ArtifactRef(stage, key, final)

    def partial_dir(self, stage: str, key: str) -> Path:
        """The resumable build directory of `stage/key` (shards of one stage write into it)."""
        d = self.path(stage, key).with_name(f"{key}.partial")
        d.mkdir(parents=True, exist_ok=True)
        return d


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a stray temp file behind
        raise


@contextlib.contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """A temp path beside `path` for the caller to write; on success it is fsynced and renamed
    into place, on failure removed: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temp name, fsync it, then rename it into place."""
    with replaced_atomically(path) as tmp:
        pq.write_table(table, tmp)


def read_parts(directory: Path, pattern: str = "part-*.parquet") -> pa.Table | None:
    """Concatenate the finished part files of a resumable build (temp files are ignored)."""
    files = sorted(directory.glob(pattern))
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


# A write that failed for lack of room: no space, a quota, or a file-size limit (RLIMIT_FSIZE).
_DISK_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
              errno.EFBIG: "file too large"}
# How the libraries that raise no OSError say so: safetensors (Rust's "os error 28") and DuckDB
# ("... No space left on device"). Only theirs: an LLM server's error text saying the same is
# about the server's disk, not ours.
_DISK_FULL_TEXT = {f"os error {code}": code for code in _DISK_FULL} | {
    os.strerror(code): code for code in _DISK_FULL}
_WORDS_ONLY = ("safetensors", "duckdb", "_duckdb")


class DiskFull(OSError):
    """A write failed for lack of room (errno ENOSPC, EDQUOT or EFBIG); the message names where
    and what to do. Still an OSError with that errno, for callers that test it."""

    def __str__(self) -> str:
        return str(self.strerror)


def disk_full_errno(err: BaseException) -> int | None:
    """The errno when `err`, or the error it was raised from, is a write that found no room."""
    for e in (err, err.__cause__):
        if isinstance(e, OSError) and e.errno is not None:
            if e.errno in _DISK_FULL:
                return e.errno
        elif e is not None and type(e).__module__.split(".")[0] in _WORDS_ONLY:
            text = str(e)
            for words, code in _DISK_FULL_TEXT.items():
                if words in text:
                    return code
    return None


def disk_full(code: int, what: str, path: Path | str, then: str) -> DiskFull:
    """The one-line error for a write under `path` that found no room: what failed, where, the
    room left on that filesystem, and `then` (what was kept, what to do)."""
    where = Path(path)
    while not where.exists() and where != where.parent:  # a temp directory already removed
        where = where.parent
    try:
        free = f" ({shutil.disk_usage(where).free / 2**20:.1f} MiB free there)"
    except OSError:
        free = ""
    return DiskFull(code, f"{what}: {_DISK_FULL[code]} writing {path}{free}; {then}")
