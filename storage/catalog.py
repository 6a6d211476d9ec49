"""The DuckDB catalogue's write side: migrations, and publishing artifacts into it.

Publishing is copy-on-write: the current `catalog.duckdb` is copied to a temp file, checked, brought
to the newest schema (numbered migrations in storage/migrations/, recorded in `schema_version`),
the run's artifacts are inserted (each at most once, tracked in `published`; see storage/ingest.py),
and the temp file is renamed over the catalogue. Readers therefore open a complete file, old or
new, never a half-published one, and never contend with the writer's lock. One publisher at a
time: a `catalog.lock` file lock, whose holder is named when another publisher gives up waiting.
The Parquet artifacts stay the durable truth; `rebuild` recreates the file from them.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from interp.artifacts import ArtifactStore, disk_full, disk_full_errno
from storage.ingest import insert_row, insert_run, insert_scorers, publish_artifact, published_stages
from storage.read import (
    CATALOG,
    DUCKDB_CONFIG,
    LATEST_VERSION,
    CatalogError,
    catalog_path,
    check_blocks,
    check_intact,
    damage_named,
    damaged,
    migrations,
    schema_version,
)
from storage.views import create_views

log = logging.getLogger(__name__)
SQL_DIR = Path(__file__).parent
_VERSION_TABLE_SQL = ("CREATE TABLE IF NOT EXISTS schema_version "
                      "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at DOUBLE)")
_SEEN_SQL = "SELECT 1 FROM published WHERE stage = ? AND key = ?"


class PublishLockTimeout(RuntimeError):
    """Another publisher holds the catalogue lock for too long."""


@contextlib.contextmanager
def publish_lock(home: Path, timeout_s: float = 600.0) -> Iterator[None]:
    """Exclusive publish lock; waits up to timeout_s, then names the holder in the error."""
    lock = Path(home) / "catalog.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    fh.seek(0)
                    raise PublishLockTimeout(
                        f"the catalogue {catalog_path(home)} is being published by "
                        f"{fh.read().strip() or 'another process'}; waited {timeout_s:.0f}s") from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}")
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_stale_temp_files(home: Path) -> list[Path]:
    """Temp copies (and their WALs) left by publishes that were killed; call under the lock,
    when no publisher can be writing one."""
    stale = sorted(Path(home).glob(f".{CATALOG}.*.tmp")) + sorted(Path(home).glob(f".{CATALOG}.*.tmp.wal"))
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d temp files of killed publishes in %s", len(stale), home)
    return stale


def migrate(con) -> list[int]:
    """Apply, in order, every migration newer than the catalogue's schema_version; returns them."""
    con.execute(_VERSION_TABLE_SQL)
    current = schema_version(con)
    if current > LATEST_VERSION:
        raise CatalogError(f"the catalogue has schema version {current}; this interp knows up to "
                           f"{LATEST_VERSION}: publish with the newer interp that wrote it")
    applied = []
    for version, name, path in migrations():
        if version > current:
            con.execute(path.read_text())
            insert_row(con, "schema_version", {"version": version, "name": name,
                                               "applied_at": time.time()})
            applied.append(version)
    return applied


def _apply(con, home: Path, artifacts: list[tuple[str, str]], runs: list[dict[str, Any]]) -> list[str]:
    done = []
    for stage, key in artifacts:
        if stage not in published_stages() or con.execute(_SEEN_SQL, [stage, key]).fetchone():
            continue
        publish_artifact(con, home, stage, key)
        insert_row(con, "published", {"stage": stage, "key": key, "published_at": time.time()})
        done.append(f"{stage}/{key}")
    for run in runs:
        insert_run(con, run)
    return done


def _update(con, home: Path, artifacts: dict[str, str] | list[tuple[str, str]],
            runs: list[dict[str, Any]]) -> list[str]:
    """Migrate, insert the artifacts and runs, refresh scorers and views, in one transaction."""
    con.execute("BEGIN")
    migrate(con)
    items = list(artifacts.items()) if isinstance(artifacts, dict) else list(artifacts)
    done = _apply(con, home, items, list(runs))
    insert_scorers(con)
    create_views(con, SQL_DIR)
    con.execute("COMMIT")
    con.execute("CHECKPOINT")
    return done


def _open_copy(target: Path, tmp: Path, fresh: bool) -> duckdb.DuckDBPyConnection:
    """A writable connection to a temp copy of the catalogue (empty when fresh), checked intact:
    not truncated, and every table's blocks readable."""
    if target.exists() and not fresh:
        shutil.copyfile(target, tmp)
    try:
        con = duckdb.connect(str(tmp), config=DUCKDB_CONFIG)
    except duckdb.Error as err:  # IOException; a damaged metadata block is a plain Error
        raise damaged(target, err) from None
    try:
        check_intact(con, tmp, os.path.getsize(tmp))
    except CatalogError:
        con.close()
        raise damaged(target, "truncated: shorter than its header promises") from None
    try:
        check_blocks(con, target)  # a damaged block would be copied on into the new file
    except CatalogError:
        con.close()
        raise
    return con


def publish(home: Path, artifacts: dict[str, str] | list[tuple[str, str]],
            runs: list[dict[str, Any]] = (), *, lock_timeout_s: float = 600.0,
            fresh: bool = False) -> list[str]:
    """Insert stage artifacts ({stage: key} or [(stage, key)]) and run rows, atomically.

    Returns the artifacts newly published; ones already in the catalogue are skipped, so
    publishing the same run twice adds nothing. A damaged catalogue raises CatalogError
    (suggesting `interp publish --rebuild`, which passes fresh=True).
    """
    home = Path(home)
    target = catalog_path(home)
    with publish_lock(home, lock_timeout_s):
        remove_stale_temp_files(home)
        tmp = target.with_name(f".{CATALOG}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            con = _open_copy(target, tmp, fresh)
            try:
                with damage_named(target):  # index blocks are read only when an insert needs one
                    done = _update(con, home, artifacts, runs)
            finally:
                con.close()
            os.replace(tmp, target)
        except Exception as err:
            if (code := disk_full_errno(err)) is None:
                raise
            raise disk_full(code, "publish", tmp, f"the catalogue {target} is unchanged: free "
                            f"space under {home} and run `interp publish` again") from err
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}.wal").unlink(missing_ok=True)
    return done


def rebuild(home: Path) -> int:
    """Recreate the catalogue from every finished artifact and run record under `home`."""
    home = Path(home)
    store = ArtifactStore(home)
    artifacts = [(stage, key) for stage in published_stages() for key in store.keys(stage)]
    runs = [load_run(r.parent) for r in sorted((home / "runs").glob("*/run.json"))]
    publish(home, artifacts, runs, fresh=True)
    return len(artifacts)


def load_run(run_dir: Path) -> dict[str, Any]:
    """A run record (run.json) with its resolved config text, as `publish` takes it."""
    run_dir = Path(run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    cfg_file = run_dir / "config.yaml"
    run["config_yaml"] = cfg_file.read_text() if cfg_file.is_file() else None
    return run


def publish_run(home: Path, run_id: str) -> list[str]:
    """Publish one saved run (its record under <home>/runs/<run_id>/)."""
    run = load_run(Path(home) / "runs" / run_id)
    return publish(home, run["artifacts"], [run])
