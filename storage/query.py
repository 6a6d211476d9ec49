"""User SQL against the catalogue (`interp query`) and a latent's summary (`interp show`).

User SQL runs on a `connect_readonly` connection (external access off, settings locked; opened
through `reading`, which names a damaged file and the rebuild command), and only if it is
exactly one SELECT, or an EXPLAIN [ANALYZE] of one: EXPLAIN ANALYZE executes its statement, so
`EXPLAIN ANALYZE COPY ... TO` would otherwise write a file.
"""
from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import duckdb

from interp.mine.examples import mark_tokens
from storage.read import reading, resolve_sae

# EXPLAIN, optionally ANALYZE and a parenthesised option list, before the explained statement.
_EXPLAIN = re.compile(r"^\s*explain\s+(analy[sz]e\s+)?(\([^)]*\)\s*)?", re.IGNORECASE)


class ReadOnlyViolation(ValueError):
    """The statement would write, reach outside the catalogue or is not exactly one SELECT."""


def _statements(sql: str) -> list:
    con = duckdb.connect(":memory:")
    try:
        return con.extract_statements(sql)
    except duckdb.Error as err:
        raise ReadOnlyViolation(f"cannot parse the statement: {err}") from None
    finally:
        con.close()


def _kind(statement) -> str:
    return str(statement.type).rsplit(".", 1)[-1]


def check_read_only(sql: str) -> None:
    """Refuse anything but exactly one SELECT (or EXPLAIN [ANALYZE] of one SELECT)."""
    statements = _statements(sql)
    if len(statements) != 1:
        raise ReadOnlyViolation(f"`interp query` runs exactly one statement per call; got {len(statements)}")
    kind = _kind(statements[0])
    if kind == "EXPLAIN":
        match = _EXPLAIN.match(statements[0].query)
        inner = _statements(statements[0].query[match.end():]) if match else []
        if len(inner) != 1 or _kind(inner[0]) != "SELECT":
            raise ReadOnlyViolation("`interp query` only explains SELECT statements")
    elif kind != "SELECT":
        raise ReadOnlyViolation(f"`interp query` only runs SELECT statements; refusing {kind}")


def run_query(home: Path, sql: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple]]:
    """Columns and rows of a read-only query against the catalogue."""
    check_read_only(sql)
    with reading(home) as con:
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()


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


_SHOW_SAE_SQL = ("SELECT hookpoint, architecture, num_latents, k, fvu, l0, dead_frac, "
                 "ce_loss_recovered FROM saes WHERE sae_key = ?")
_SHOW_STATS_SQL = ("SELECT frequency, max_act, mean_act, n_active_windows FROM latents "
                   "WHERE sae_key = ? AND latent = ? ORDER BY mine_key LIMIT 1")
_SHOW_EXPLANATIONS_SQL = ("SELECT explanation_id, status, text, explainer_model, prompt_hash, error "
                          "FROM explanations WHERE sae_key = ? AND latent = ? ORDER BY created_at DESC")
# An explanation's scores grouped by score run, newest run (rows written last) first.
_SHOW_SCORES_SQL = ("SELECT score_key, max(created_at) OVER (PARTITION BY score_key) AS scored_at, "
                    "scorer, headline_metric, headline, chance, balanced_accuracy, precision, "
                    "recall, f1, auc, n_failed, n_examples FROM score_headlines "
                    "WHERE explanation_id = ? ORDER BY scored_at DESC, score_key DESC, scorer")
_SHOW_EXAMPLES_SQL = ("SELECT tokens, acts, max_act FROM examples WHERE sae_key = ? AND latent = ? "
                      "AND kind = ? ORDER BY quantile, rank LIMIT ?")

_SHOW_LOGITS_SQL = ("SELECT direction, list(token ORDER BY rank), list(value ORDER BY rank) "
                    "FROM latent_logits WHERE sae_key = ? AND latent = ? GROUP BY direction "
                    "ORDER BY direction")
_HAS_LOGITS_SQL = "SELECT 1 FROM duckdb_tables() WHERE table_name = 'latent_logits'"


def _show_logits(con, key: str, latent: int, n: int) -> list[str]:
    """One line per direction: the top tokens the decoder direction promotes / suppresses."""
    if con.execute(_HAS_LOGITS_SQL).fetchone() is None:
        return []
    out = []
    for direction, tokens, values in con.execute(_SHOW_LOGITS_SQL, [key, latent]).fetchall():
        cells = [f"{json.dumps(t)} {v:+.3g}" for t, v in list(zip(tokens, values))[:max(n, 1) * 2]]
        out.append(f"  {direction:10s} {'  '.join(cells)}")
    return ["", "output side (logit lens):", *out] if out else []


_SHOW_HEADS_SQL = ("SELECT head, share FROM head_shares WHERE sae_key = ? AND latent = ? "
                   "ORDER BY share DESC, head LIMIT 3")
_HAS_HEADS_SQL = "SELECT 1 FROM duckdb_tables() WHERE table_name = 'head_shares'"


def _show_heads(con, key: str, latent: int) -> list[str]:
    """'attention heads: head 7: 64%, head 3: 21%, ...' for SAEs on hook_z (else nothing)."""
    if con.execute(_HAS_HEADS_SQL).fetchone() is None:
        return []
    rows = con.execute(_SHOW_HEADS_SQL, [key, latent]).fetchall()
    return [f"attention heads (share of decoder norm): "
            f"{', '.join(f'head {h}: {s:.0%}' for h, s in rows)}"] if rows else []


def _show_explanations(con, key: str, latent: int) -> list[str]:
    """Each explanation with its scores, one block per score run (newest first, each its own
    numbers: a re-score never replaces or is merged with an earlier run)."""
    out = []
    for eid, status, text, model, ph, err in con.execute(_SHOW_EXPLANATIONS_SQL, [key, latent]).fetchall():
        out.append(f"  [{status}] {text or err}   ({model}, prompt {ph})")
        run = None
        for sc in con.execute(_SHOW_SCORES_SQL, [eid]).fetchall():
            if sc[0] != run:
                when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(sc[1]))
                out.append(f"    score run {sc[0]} ({'newest, ' if run is None else ''}scored {when})")
                run = sc[0]
            out.append(f"      {sc[2]:10s} {sc[3]}={_cell(sc[4])} (chance {_cell(sc[5])})  "
                       f"bal.acc={_cell(sc[6])} P={_cell(sc[7])} R={_cell(sc[8])} F1={_cell(sc[9])} "
                       f"AUC={_cell(sc[10])} failed={sc[11]}/{sc[12]}")
    return out or ["  (none)"]


def show_latent(home: Path, sae: str, latent: int, n: int = 5) -> str:
    """Explanations, scores, statistics and examples (activating tokens marked) of one latent."""
    with reading(home) as con:
        key = resolve_sae(con, sae)
        sae_row = con.execute(_SHOW_SAE_SQL, [key]).fetchone()
        stats = con.execute(_SHOW_STATS_SQL, [key, latent]).fetchone()
        if stats is None:
            raise ValueError(f"latent {latent} is not in SAE {key} (it has {sae_row[2]} latents)")
        out = [f"SAE {key}  {sae_row[0]}  {sae_row[1]} m={sae_row[2]} k={sae_row[3]}  "
               f"FVU={_cell(sae_row[4])} L0={_cell(sae_row[5])} dead={_cell(sae_row[6])} "
               f"CE recovered={_cell(sae_row[7])}",
               f"latent {latent}: frequency {stats[0]:.4%}, max act {stats[1]:.3g}, "
               f"mean act {stats[2]:.3g}, active windows {stats[3]}",
               *_show_heads(con, key, latent), "", "explanations:",
               *_show_explanations(con, key, latent), *_show_logits(con, key, latent, n)]
        for kind in ("top", "quantile", "random", "hard"):
            out.append(f"\n{kind} examples:")
            for tokens, acts, mx in con.execute(_SHOW_EXAMPLES_SQL, [key, latent, kind, n]).fetchall():
                out.append(f"  ({mx:.3g}) {mark_tokens(tuple(tokens), [a > 0 for a in acts])}")
        return "\n".join(out)
