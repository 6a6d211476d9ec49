"""Read-only access to the catalogue for the CLI: SQL queries and a latent's summary."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import duckdb

from interp.examples import mark_tokens

READ_ONLY_TYPES = {"SELECT", "EXPLAIN"}


class ReadOnlyViolation(ValueError):
    """The statement would write (or change settings); `interp query` refuses it."""


def check_read_only(sql: str) -> None:
    con = duckdb.connect(":memory:")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as err:
        raise ReadOnlyViolation(f"cannot parse the statement: {err}") from None
    finally:
        con.close()
    if not statements:
        raise ReadOnlyViolation("no SQL statement given")
    for st in statements:
        kind = str(st.type).rsplit(".", 1)[-1]
        if kind not in READ_ONLY_TYPES:
            raise ReadOnlyViolation(f"`interp query` only runs SELECT statements; refusing {kind}")


def run_query(home: Path, sql: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple]]:
    """Columns and rows of a read-only query against the catalogue."""
    from storage.catalog import connect_readonly

    check_read_only(sql)
    con = connect_readonly(home)
    try:
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    finally:
        con.close()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    text = str(v).replace("\n", "\\n")
    return text if len(text) <= 80 else text[:77] + "..."


def render(cols: list[str], rows: list[tuple], fmt: str = "table", limit: int = 200) -> str:
    if fmt == "json":
        return json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rows)
        return buf.getvalue().rstrip("\n")
    shown = [[_cell(v) for v in r] for r in rows[:limit]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(cols)]
    line = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [line(cols), "-+-".join("-" * w for w in widths), *[line(r) for r in shown]]
    out.append(f"({len(rows)} rows{', first ' + str(limit) + ' shown' if len(rows) > limit else ''})")
    return "\n".join(out)


def resolve_sae(con, prefix: str) -> str:
    keys = [r[0] for r in con.execute("SELECT sae_key FROM saes WHERE starts_with(sae_key, ?)",
                                      [prefix]).fetchall()]
    if len(keys) != 1:
        known = [r[0] for r in con.execute("SELECT sae_key FROM saes").fetchall()]
        raise ValueError(f"SAE {prefix!r} matches {len(keys)} SAEs; known: {', '.join(known) or 'none'}")
    return keys[0]


def show_latent(home: Path, sae: str, latent: int, n: int = 5) -> str:
    """Explanations, scores, statistics and examples (activating tokens marked) of one latent."""
    from storage.catalog import connect_readonly

    con = connect_readonly(home)
    try:
        key = resolve_sae(con, sae)
        sae_row = con.execute("SELECT hookpoint, architecture, num_latents, k, fvu, l0, dead_frac, "
                              "ce_loss_recovered FROM saes WHERE sae_key = ?", [key]).fetchone()
        stats = con.execute("SELECT frequency, max_act, mean_act, n_active_windows FROM latents "
                            "WHERE sae_key = ? AND latent = ? ORDER BY mine_key LIMIT 1", [key, latent]).fetchone()
        if stats is None:
            raise ValueError(f"latent {latent} is not in SAE {key} (it has {sae_row[2]} latents)")
        out = [f"SAE {key}  {sae_row[0]}  {sae_row[1]} m={sae_row[2]} k={sae_row[3]}  "
               f"FVU={_cell(sae_row[4])} L0={_cell(sae_row[5])} dead={_cell(sae_row[6])} "
               f"CE recovered={_cell(sae_row[7])}",
               f"latent {latent}: frequency {stats[0]:.4%}, max act {stats[1]:.3g}, "
               f"mean act {stats[2]:.3g}, active windows {stats[3]}", "", "explanations:"]
        exps = con.execute("SELECT explanation_id, status, text, explainer_model, prompt_hash, error "
                           "FROM explanations WHERE sae_key = ? AND latent = ? ORDER BY created_at DESC",
                           [key, latent]).fetchall()
        for eid, status, text, model, ph, err in exps:
            out.append(f"  [{status}] {text or err}   ({model}, prompt {ph})")
            for sc in con.execute("SELECT scorer, balanced_accuracy, precision, recall, f1, auc, n_failed, "
                                  "n_examples FROM scores WHERE explanation_id = ? ORDER BY scorer", [eid]).fetchall():
                out.append(f"      {sc[0]:10s} bal.acc={_cell(sc[1])} P={_cell(sc[2])} R={_cell(sc[3])} "
                           f"F1={_cell(sc[4])} AUC={_cell(sc[5])} failed={sc[6]}/{sc[7]}")
        if not exps:
            out.append("  (none)")
        for kind in ("top", "quantile", "random", "hard"):
            rows = con.execute("SELECT tokens, acts, max_act FROM examples WHERE sae_key = ? AND latent = ? "
                               "AND kind = ? ORDER BY quantile, rank LIMIT ?", [key, latent, kind, n]).fetchall()
            out.append(f"\n{kind} examples:")
            for tokens, acts, mx in rows:
                out.append(f"  ({mx:.3g}) {mark_tokens(tuple(tokens), [a > 0 for a in acts])}")
        return "\n".join(out)
    finally:
        con.close()
