"""The DuckDB catalogue: published artifacts as tables, plus views for SQL.

Publishing is copy-on-write: the current `catalog.duckdb` is copied to a temp file, the run's
artifacts are inserted (each artifact at most once, tracked in `published`), and the temp file is
renamed over the catalogue. Readers therefore open a complete file, old or new, never a
half-published one, and never contend with the writer's lock. One publisher at a time: a
`catalog.lock` file lock, whose holder is named when another publisher gives up waiting.
The Parquet artifacts stay the durable truth; `rebuild` recreates the file from them.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

SQL_DIR = Path(__file__).parent
CATALOG = "catalog.duckdb"
DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class PublishLockTimeout(RuntimeError):
    """Another publisher holds the catalogue lock for too long."""


def catalog_path(home: Path) -> Path:
    return Path(home) / CATALOG


def connect_readonly(home: Path) -> duckdb.DuckDBPyConnection:
    path = catalog_path(home)
    if not path.is_file():
        raise FileNotFoundError(f"no catalogue at {path}: run `interp run` first (or `interp publish`)")
    return duckdb.connect(str(path), read_only=True, config=DUCKDB_CONFIG)


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


def _artifact(home: Path, stage: str, key: str) -> Path:
    return Path(home) / "artifacts" / stage / key


def _manifest(home: Path, stage: str, key: str) -> dict[str, Any]:
    return json.loads((_artifact(home, stage, key) / "manifest.json").read_text())


def _insert_parquet(con, table: str, path: Path, consts: dict[str, Any], select: str = "*") -> None:
    """INSERT INTO table BY NAME the Parquet file's rows plus constant provenance columns."""
    names = list(consts)
    cols = ", ".join(f"$c{i} AS {n}" for i, n in enumerate(names))
    params = {f"c{i}": consts[n] for i, n in enumerate(names)} | {"path": str(path)}
    con.execute(f"INSERT INTO {table} BY NAME SELECT {cols}{', ' if cols else ''}{select} "
                f"FROM read_parquet($path)", params)


def _publish_collect(con, home, key):
    _insert_parquet(con, "sequences", _artifact(home, "collect", key) / "sequences.parquet",
                    {"collect_key": key})


def _publish_train(con, home, key):
    man = _manifest(home, "train", key)
    cfg = json.loads((_artifact(home, "train", key) / "cfg.json").read_text())
    m = man.get("metrics", {})
    con.execute("INSERT INTO saes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        key, man.get("collect"), json.dumps(man.get("model")), man.get("hookpoint"),
        cfg.get("architecture", "topk"), cfg.get("d_in"), cfg.get("num_latents"), cfg.get("k"),
        m.get("tokens_seen"), m.get("fvu"), m.get("l0"), m.get("dead_frac"),
        m.get("ce_loss_recovered"), m.get("kl_div"), json.dumps(m), man.get("created_at")])
    _publish_matches(con, home, key, man)


def _publish_matches(con, home, key, man):
    """Best decoder-cosine match of every latent against each SAE already published for the same
    model and hookpoint (both directions), so explanations of two SAEs can be compared."""
    from interp.rescore import decoder_matches

    others = con.execute("SELECT sae_key FROM saes WHERE sae_key <> ? AND hookpoint = ? AND "
                         "model = ? AND d_in = (SELECT d_in FROM saes WHERE sae_key = ?)",
                         [key, man.get("hookpoint"), json.dumps(man.get("model")), key]).fetchall()
    for (other,) in others:
        if not (_artifact(home, "train", other) / "manifest.json").is_file():
            continue  # published from an artifact since deleted: nothing to compare against
        table = decoder_matches(_artifact(home, "train", key), _artifact(home, "train", other),
                                key, other)
        con.register("_matches", table)
        con.execute("INSERT INTO latent_matches BY NAME SELECT * FROM _matches")
        con.unregister("_matches")


def _publish_mine(con, home, key):
    man = _manifest(home, "mine", key)
    d = _artifact(home, "mine", key)
    prov = {"sae_key": man["sae"], "mine_key": key}
    _insert_parquet(con, "latents", d / "latents.parquet", prov)
    _insert_parquet(con, "example_rows", d / "examples.parquet", prov | {"collect_key": man["collect"]})


def _publish_calls(con, home, stage, key, sae_key):
    _insert_parquet(con, "llm_calls", _artifact(home, stage, key) / "llm_calls.parquet",
                    {"artifact_stage": stage, "artifact_key": key, "sae_key": sae_key})


def _publish_explain(con, home, key):
    man = _manifest(home, "explain", key)
    _insert_parquet(con, "explanations", _artifact(home, "explain", key) / "explanations.parquet",
                    {"explain_key": key, "mine_key": man["mine"], "sae_key": man["sae"]})
    _publish_calls(con, home, "explain", key, man["sae"])


def _publish_score(con, home, key):
    man = _manifest(home, "score", key)
    path = _artifact(home, "score", key) / "scores.parquet"
    prov = {"score_key": key, "explain_key": man["explain"], "sae_key": man["sae"]}
    _insert_parquet(con, "scores", path, prov, select="* EXCLUDE (predictions)")
    con.execute("INSERT INTO predictions BY NAME SELECT score_id, explanation_id, latent, scorer, "
                "unnest(predictions, recursive := true) FROM read_parquet($path)", {"path": str(path)})
    _publish_calls(con, home, "score", key, man["sae"])


PUBLISHERS = {"collect": _publish_collect, "train": _publish_train, "mine": _publish_mine,
              "explain": _publish_explain, "score": _publish_score}


def _apply(con, home: Path, artifacts: list[tuple[str, str]], runs: list[dict[str, Any]]) -> list[str]:
    done = []
    for stage, key in artifacts:
        if stage not in PUBLISHERS:
            continue
        seen = con.execute("SELECT 1 FROM published WHERE stage = ? AND key = ?", [stage, key]).fetchone()
        if seen:
            continue
        PUBLISHERS[stage](con, home, key)
        con.execute("INSERT INTO published VALUES (?, ?, ?)", [stage, key, time.time()])
        done.append(f"{stage}/{key}")
    for run in runs:
        a = run["artifacts"]
        con.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            run["run_id"], run["started_at"], run["finished_at"], run.get("config_yaml"),
            a.get("collect"), a.get("train"), a.get("mine"), a.get("explain"), a.get("score"),
            json.dumps(run.get("seconds", {})), json.dumps(run.get("cached", {}))])
    return done


def publish(home: Path, artifacts: dict[str, str] | list[tuple[str, str]],
            runs: list[dict[str, Any]] = (), *, lock_timeout_s: float = 600.0,
            fresh: bool = False) -> list[str]:
    """Insert stage artifacts ({stage: key} or [(stage, key)]) and run rows, atomically.

    Returns the artifacts newly published; ones already in the catalogue are skipped, so
    publishing the same run twice adds nothing.
    """
    home = Path(home)
    target = catalog_path(home)
    with publish_lock(home, lock_timeout_s):
        tmp = target.with_name(f".{CATALOG}.{uuid.uuid4().hex[:8]}.tmp")
        if target.exists() and not fresh:
            shutil.copyfile(target, tmp)
        try:
            con = duckdb.connect(str(tmp), config=DUCKDB_CONFIG)
            con.execute((SQL_DIR / "schema.sql").read_text())
            con.execute("BEGIN")
            items = list(artifacts.items()) if isinstance(artifacts, dict) else list(artifacts)
            done = _apply(con, home, items, list(runs))
            from interp.ui.embeddings import embed_new_explanations  # lazy: loads MiniLM if needed

            embed_new_explanations(con)  # semantic search in `interp ui`; backfills older catalogues
            con.execute((SQL_DIR / "views.sql").read_text())
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
            con.close()
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}.wal").unlink(missing_ok=True)
    return done


def rebuild(home: Path) -> int:
    """Recreate the catalogue from every finished artifact and run record under `home`."""
    home = Path(home)
    artifacts = [(stage, d.parent.name) for stage in PUBLISHERS
                 for d in sorted((home / "artifacts" / stage).glob("*/manifest.json"))]
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
