"""What each stage's artifact adds to the catalogue: one function per stage, each inserting
Parquet rows BY NAME (so a column added to a table or an artifact never shifts the others) plus
constant provenance columns. Publish computes nothing: decoder matches and explanation embeddings
arrive as artifacts (`match/<key>/matches.parquet`, `explain/<key>/explanation_embeddings.parquet`).
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

# Table and column names below are this module's constants; every value is a bound parameter.
_PREDICTIONS_SQL = ("INSERT INTO predictions BY NAME SELECT score_id, explanation_id, latent, scorer, "
                    "unnest(predictions, recursive := true) FROM read_parquet($path)")
_EMBEDDINGS_SQL = ("INSERT OR IGNORE INTO explanation_embeddings BY NAME SELECT explanation_id, "
                   "model, embedding::FLOAT[384] AS embedding FROM read_parquet($path)")
_CLEAR_SCORERS_SQL = "DELETE FROM scorers"


def artifact_dir(home: Path, stage: str, key: str) -> Path:
    return Path(home) / "artifacts" / stage / key


def _manifest(home: Path, stage: str, key: str) -> dict[str, Any]:
    return json.loads((artifact_dir(home, stage, key) / "manifest.json").read_text())


def insert_row(con, table: str, row: dict[str, Any], *, replace: bool = False) -> None:
    """INSERT [OR REPLACE] INTO table BY NAME one row of bound values."""
    cols = ", ".join(f"$c{i} AS {name}" for i, name in enumerate(row))
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    con.execute(f"{verb} INTO {table} BY NAME SELECT {cols}",
                {f"c{i}": v for i, v in enumerate(row.values())})


def _insert_parquet(con, table: str, path: Path, consts: dict[str, Any], select: str = "*") -> None:
    """INSERT INTO table BY NAME the Parquet file's rows plus constant provenance columns."""
    names = list(consts)
    cols = ", ".join(f"$c{i} AS {n}" for i, n in enumerate(names))
    params = {f"c{i}": consts[n] for i, n in enumerate(names)} | {"path": str(path)}
    con.execute(f"INSERT INTO {table} BY NAME SELECT {cols}{', ' if cols else ''}{select} "
                f"FROM read_parquet($path)", params)


def _collect(con, home, key):
    _insert_parquet(con, "sequences", artifact_dir(home, "collect", key) / "sequences.parquet",
                    {"collect_key": key})


def _train(con, home, key):
    man = _manifest(home, "train", key)
    cfg = json.loads((artifact_dir(home, "train", key) / "cfg.json").read_text())
    m = man.get("metrics", {})
    insert_row(con, "saes", {
        "sae_key": key, "collect_key": man.get("collect"), "model": json.dumps(man.get("model")),
        "hookpoint": man.get("hookpoint"), "architecture": cfg.get("architecture", "topk"),
        "d_in": cfg.get("d_in"), "num_latents": cfg.get("num_latents"), "k": cfg.get("k"),
        "tokens_seen": m.get("tokens_seen"), "fvu": m.get("fvu"), "l0": m.get("l0"),
        "dead_frac": m.get("dead_frac"), "ce_loss_recovered": m.get("ce_loss_recovered"),
        "kl_div": m.get("kl_div"), "metrics": json.dumps(m), "created_at": man.get("created_at")})
    heads = artifact_dir(home, "train", key) / "head_shares.parquet"
    if heads.is_file():  # an SAE of attention head outputs (hook_z)
        _insert_parquet(con, "head_shares", heads, {}, select="sae_key, latent, head, share")


def _dark_matter(con, home, key):
    """The SAE's error analysis and per-token error norms (interp.analysis.dark_matter)."""
    d = artifact_dir(home, "dark_matter", key)
    _insert_parquet(con, "sae_error_stats", d / "sae_error_stats.parquet", {"dark_matter_key": key})
    _insert_parquet(con, "token_errors", d / "token_errors.parquet", {})


def _match(con, home, key):
    """Decoder matches (both directions) written by the match stage (interp.analysis.matching)."""
    _insert_parquet(con, "latent_matches", artifact_dir(home, "match", key) / "matches.parquet", {},
                    select="sae_a, latent_a, sae_b, latent_b, cosine")


def _logits(con, home, key):
    """Top promoted / suppressed tokens of each latent, written by the logits stage."""
    _insert_parquet(con, "latent_logits", artifact_dir(home, "logits", key) / "latent_logits.parquet",
                    {}, select="sae_key, latent, direction, rank, token_id, token, value")


def _mine(con, home, key):
    man = _manifest(home, "mine", key)
    d = artifact_dir(home, "mine", key)
    prov = {"sae_key": man["sae"], "mine_key": key}
    _insert_parquet(con, "latents", d / "latents.parquet", prov)
    _insert_parquet(con, "example_rows", d / "examples.parquet", prov | {"collect_key": man["collect"]})


def _calls(con, home, stage, key, sae_key):
    _insert_parquet(con, "llm_calls", artifact_dir(home, stage, key) / "llm_calls.parquet",
                    {"artifact_stage": stage, "artifact_key": key, "sae_key": sae_key})


def _explain(con, home, key):
    man = _manifest(home, "explain", key)
    d = artifact_dir(home, "explain", key)
    _insert_parquet(con, "explanations", d / "explanations.parquet",
                    {"explain_key": key, "mine_key": man["mine"], "sae_key": man["sae"]})
    if (d / "explanation_embeddings.parquet").is_file():
        # OR IGNORE: an explanation id re-published by another explain artifact keeps its vector.
        con.execute(_EMBEDDINGS_SQL, {"path": str(d / "explanation_embeddings.parquet")})
    _calls(con, home, "explain", key, man["sae"])


def _score(con, home, key):
    man = _manifest(home, "score", key)
    path = artifact_dir(home, "score", key) / "scores.parquet"
    prov = {"score_key": key, "explain_key": man["explain"], "sae_key": man["sae"]}
    _insert_parquet(con, "scores", path, prov, select="* EXCLUDE (predictions)")
    con.execute(_PREDICTIONS_SQL, {"path": str(path)})
    controls = artifact_dir(home, "score", key) / "controls.parquet"
    if controls.is_file():  # the lift of the explanations over stand-ins (issue: controls)
        _insert_parquet(con, "controls", controls, {"score_key": key, "sae_key": man["sae"]})
    _calls(con, home, "score", key, man["sae"])


PUBLISHERS = {"collect": _collect, "train": _train, "match": _match, "logits": _logits,
              "dark_matter": _dark_matter, "mine": _mine,
              "explain": _explain, "score": _score}


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
        doc = (inspect.getmodule(scorer).__doc__ or "").strip().splitlines()
        insert_row(con, "scorers", {"scorer": name, "headline_metric": scorer.headline,
                                    "description": doc[0] if doc else None})
