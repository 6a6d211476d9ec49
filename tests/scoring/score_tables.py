"""Synthetic scores.parquet tables in the score stage's real SCHEMA, built with numpy so that
10^6 latents take seconds: every status, both controls on a seeded sample of latents, and the
known-answer probes (pseudo-latents < 0, control 'probe') with their predictions. Used by the
summary's equivalence tests and bench/summary_scale.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from interp.scoring.controls import PROBE
from interp.scoring.rows import SCHEMA

HEADLINE = {"detection": "balanced_accuracy", "fuzzing": "balanced_accuracy",
            "intruder": "accuracy", "embedding": "auc"}
STATUSES = np.array(["ok", "insufficient", "failed", "unscorable"])
RULES = ('the word "the"', "digits: numbers, years and dates",
         "words that start with a capital letter", 'the name "Paris"')
_PREDICTION = SCHEMA.field("predictions").type.value_type


def _predictions(rng: np.random.Generator, n_rows: int, per_row: int) -> pa.Array:
    """n_rows lists of per_row - 2 .. per_row + 2 judged windows (half activating)."""
    sizes = rng.integers(max(per_row - 2, 0), per_row + 3, n_rows)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    total = int(offsets[-1])
    label = (np.arange(total) % 2).astype(np.int8)
    prob = rng.random(total)
    fields = [pa.array(rng.integers(0, 10**6, total, dtype=np.int32)),
              pa.array(rng.integers(0, 64, total, dtype=np.int32)),
              pa.array(np.where(label == 1, np.arange(total) % 5, -1).astype(np.int32)),
              pa.array(label), pa.array((prob < 0.35 + 0.4 * label).astype(np.int8)),
              pa.array(prob)]
    structs = pa.StructArray.from_arrays(fields, fields=list(_PREDICTION))
    return pa.ListArray.from_arrays(pa.array(offsets), structs)


def _strings(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(str).tolist(), pa.string()) if len(values) else \
        pa.array([], pa.string())


def _block(rng: np.random.Generator, latents: np.ndarray, scorer: str, control: str | None,
           per_row: int, bonus: float) -> pa.Table:
    """One scorer's rows on `latents` with one control (None: the real explanations)."""
    n = len(latents)
    status = STATUSES[np.searchsorted([0.8, 0.88, 0.94], rng.random(n), side="right")]
    ok = status == "ok"
    # Balanced accuracy of 5 + 5 windows: tenths, skewed towards 1 for good explanations.
    value = np.clip(np.round((rng.beta(4, 2, n) + bonus) * 10) / 10, 0, 1)
    value_null = ~ok | (rng.random(n) < 0.02)     # a few 'ok' rows without a value, too
    n_examples = np.full(n, 10, np.int32)
    n_failed = np.where(status == "failed", 10, rng.integers(0, 3, n)).astype(np.int32)
    no_items = status == "unscorable"
    cols = {
        "score_id": _strings(np.char.add(f"{scorer}-{control}-", latents.astype(str))),
        "explanation_id": _strings(np.char.add("x", latents.astype(str))),
        "latent": pa.array(latents.astype(np.int32)),
        "scorer": pa.array([scorer] * n, pa.string()), "status": pa.array(status.tolist()),
        "control": pa.array([control] * n, pa.string()),
        "control_text": pa.array([None if control is None else f"{control} text"] * n, pa.string()),
        "n_examples": pa.array(n_examples, mask=no_items),
        "n_failed": pa.array(n_failed, mask=no_items),
        "n_valid": pa.array(n_examples - n_failed, mask=no_items),
        "f1": pa.array(np.clip(value - 0.05, 0, 1), mask=value_null),
        "metric": pa.array([HEADLINE[scorer]] * n, pa.string()),
        "value": pa.array(value, mask=value_null),
        "ci_low": pa.array(np.clip(value - 0.3, 0, 1), mask=value_null),
        "ci_high": pa.array(np.clip(value + 0.2, 0, 1), mask=value_null),
        "chance": pa.array(np.full(n, 0.5)),
        "predictions": _predictions(rng, n, per_row),
        "created_at": pa.array(np.full(n, 1.7e9))}
    return pa.table({f.name: cols.get(f.name, pa.nulls(n, f.type)) for f in SCHEMA}, schema=SCHEMA)


def _probes(rng: np.random.Generator, scorer: str, per_row: int) -> pa.Table:
    """The four probes of one scorer; the last one failed (no value)."""
    t = _block(rng, -np.arange(1, len(RULES) + 1), scorer, PROBE, per_row, 0.2)
    ok = np.array([True] * (len(RULES) - 1) + [False])
    t = t.set_column(t.schema.get_field_index("status"), "status",
                     pa.array(np.where(ok, "ok", "failed").tolist()))
    t = t.set_column(t.schema.get_field_index("control_text"), "control_text", pa.array(RULES))
    value = pa.array(np.round(rng.uniform(0.6, 1, len(ok)), 1), mask=~ok)
    return t.set_column(t.schema.get_field_index("value"), "value", value)


def synthetic_scores(n_latents: int, *, scorers: tuple[str, ...] = ("detection", "fuzzing"),
                     controlled: int = 40, per_row: int = 10, seed: int = 0) -> pa.Table:
    """A merged scores table as the score stage writes it (sorted by latent, scorer, control):
    each scorer on n_latents latents, 'shuffled' and 'top_tokens' on `controlled` of them,
    four probes per scorer."""
    rng = np.random.default_rng(seed)
    latents = np.arange(n_latents) * 3            # sparse ids, as a sampled run's are
    sample = np.sort(rng.choice(latents, min(controlled, n_latents), replace=False))
    parts = []
    for scorer in scorers:
        parts += [_block(rng, latents, scorer, None, per_row, 0.0),
                  _block(rng, sample, scorer, "shuffled", per_row, -0.15),
                  _block(rng, sample, scorer, "top_tokens", per_row, -0.05),
                  _probes(rng, scorer, per_row)]
    table = pa.concat_tables(parts)
    return table.sort_by([(c, "ascending") for c in ("latent", "scorer", "control")])


def write_latents(mine_dir: Path, n_latents: int, seed: int = 0) -> Path:
    """latents.parquet of a mine artifact: a firing frequency per latent, some 0 (dead) and
    a few latents missing."""
    rng = np.random.default_rng(seed + 1)
    latents = np.arange(n_latents) * 3
    keep = rng.random(n_latents) > 0.05
    freq = np.where(rng.random(n_latents) < 0.05, 0.0, rng.lognormal(-7, 1.5, n_latents))
    mine_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"latent": pa.array(latents[keep].astype(np.int32)),
                             "frequency": pa.array(freq[keep])}), mine_dir / "latents.parquet")
    return mine_dir
