"""What each stage's artifact adds to the catalogue, derived from what the stage declares
(interp/contract.py `Table`s and `rows`): Parquet rows inserted BY NAME (so a column added to a
table or an artifact never shifts the others) plus constant provenance columns from the
artifact's lineage. Publish computes nothing: decoder matches and explanation embeddings arrive
as artifacts (`match/<key>/matches.parquet`, `explain/<key>/explanation_embeddings.parquet`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interp.artifacts import ArtifactStore

# Table and column names below are this module's constants; every value is a bound parameter.
_CLEAR_SCORERS_SQL = "DELETE FROM scorers"


def insert_row(con, table: str, row: dict[str, Any], *, replace: bool = False) -> None:
    """INSERT [OR REPLACE] INTO table BY NAME one row of bound values."""
    cols = ", ".join(f"$c{i} AS {name}" for i, name in enumerate(row))
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    con.execute(f"{verb} INTO {table} BY NAME SELECT {cols}",
                {f"c{i}": v for i, v in enumerate(row.values())})


def _insert_parquet(con, table: str, path: Path, consts: dict[str, Any], select: str = "*",
                    or_ignore: bool = False) -> None:
    """INSERT INTO table BY NAME the Parquet file's rows plus constant provenance columns."""
    names = list(consts)
    cols = ", ".join(f"$c{i} AS {n}" for i, n in enumerate(names))
    params = {f"c{i}": consts[n] for i, n in enumerate(names)} | {"path": str(path)}
    verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
    # Table and column names come from the publishers (constants); the values are bound.
    con.execute(f"{verb} INTO {table} BY NAME SELECT {cols}{', ' if cols else ''}{select} "  # noqa: S608
                f"FROM read_parquet($path)", params)


def lineage(stage: str, key: str, man: dict[str, Any]) -> dict[str, str]:
    """stage -> key of the artifact and of everything upstream of it, as its manifest records
    them (artifacts from before the runner recorded lineage name them as inputs or fields)."""
    found = dict(man.get("lineage") or {})
    if not found:
        found.update(man.get("inputs") or {})
        found.update({s: man[s] for s in ("collect", "mine", "explain")
                      if isinstance(man.get(s), str)})
        if isinstance(man.get("sae"), str):
            found["train"] = man["sae"]
    return {**found, stage: key}


def publish_artifact(con, home: Path, stage_name: str, key: str) -> None:
    """Insert one artifact's rows: the tables its stage declares (interp/contract.Table), the rows
    its stage builds, and for an LLM stage its calls ledger."""
    from interp.stages import STAGES

    stage = STAGES[stage_name]
    ref = ArtifactStore(home).require(stage_name, key)
    man = ref.manifest()
    up = lineage(stage_name, key, man)
    for t in stage.tables:
        path = ref.path / t.file
        if t.optional and not path.is_file():
            continue
        _insert_parquet(con, t.table, path, {col: up.get(src) for col, src in t.provenance},
                        t.select, t.or_ignore)
    for table, rows in (stage.rows(ref.path, man) if stage.rows else {}).items():
        for row in rows:
            insert_row(con, table, row)
    if stage.uses_llm:
        _insert_parquet(con, "llm_calls", ref.path / "llm_calls.parquet",
                        {"artifact_stage": stage_name, "artifact_key": key,
                         "sae_key": up.get("train")})


def published_stages() -> tuple[str, ...]:
    """The stages whose artifacts publish inserts, in run order."""
    from interp.stages import STAGES

    return tuple(STAGES)


def insert_run(con, run: dict[str, Any]) -> None:
    a = run["artifacts"]
    insert_row(con, "runs", {
        "run_id": run["run_id"], "started_at": run["started_at"], "finished_at": run["finished_at"],
        "config_yaml": run.get("config_yaml"), "collect_key": a.get("collect"),
        "sae_key": a.get("train"), "mine_key": a.get("mine"), "explain_key": a.get("explain"),
        "score_key": a.get("score"), "seconds": json.dumps(run.get("seconds", {})),
        "cached": json.dumps(run.get("cached", {}))}, replace=True)


def insert_scorers(con) -> None:
    """The scorer registry's headline metrics, rewritten on every publish (the registry is the
    one definition; the table lets SQL, the browser and the report read it)."""
    from interp.scoring.registry import SCORERS

    con.execute(_CLEAR_SCORERS_SQL)
    for name, scorer in SCORERS.items():
        insert_row(con, "scorers", {"scorer": name, "headline_metric": scorer.headline,
                                    "description": scorer.description(),
                                    "uses_llm": scorer.uses_llm})
