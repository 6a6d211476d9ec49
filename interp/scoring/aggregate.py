"""Run-level aggregates of a score run, per scorer (summarize): status counts, the headline's
mean with its interval, delphi's frequency-weighted means. Columnar (pyarrow and numpy), so a
run of 10^6 latents costs a few arrays, not millions of row dicts; rows given as dicts (the
report, tests) go through the same code as a table (as_table)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from interp.scoring.stats import N_BOOT, mean_interval

# Types of the scores columns the aggregates read, for rows given as dicts (rows.SCHEMA's,
# integers widened).
_TYPES = {"latent": pa.int64(), "scorer": pa.string(), "control": pa.string(),
          "status": pa.string(), "metric": pa.string(), "value": pa.float64(),
          "f1": pa.float64(), "n_valid": pa.int64(), "n_examples": pa.int64()}
SUMMARY_COLUMNS = tuple(_TYPES)
Frequencies = pa.Table | Mapping[int, float | None] | None


def as_table(rows: pa.Table | Iterable[dict[str, Any]], columns: Sequence[str]) -> pa.Table:
    """`columns` of a scores table (zero-copy), or of scores rows given as dicts (a key that a
    row lacks is null)."""
    if isinstance(rows, pa.Table):
        return rows.select(list(columns))
    schema = pa.schema([(c, _TYPES[c]) for c in columns])
    return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=schema)


def seq_sum(x: np.ndarray) -> float:
    """Sum added left to right, as the row-wise code's Python sum() did, so the summaries stay
    bit-identical to it; at 10^6 values in [0, 1] its rounding (< 1e-10 relative) is far
    below any interval's width."""
    return float(np.add.accumulate(x)[-1]) if len(x) else 0.0


def _weighted(values: np.ndarray, weights: np.ndarray) -> float | None:
    """sum(v w) / sum(w) over the rows with a weight (0 = none or a dead latent); None if the
    weights sum to 0."""
    keep = weights != 0        # NaN != 0: a NaN weight spoils the mean, as it did row-wise
    v, w = values[keep], weights[keep]
    total = seq_sum(w)
    return seq_sum(v * w) / total if total > 0 else None


def frequency_weighted(values: Sequence[float | None], weights: Sequence[float | None]) -> float | None:
    """delphi's frequency-weighted aggregate: per-latent metric weighted by how often the
    latent fires (its firing count or frequency; only the ratios matter). None if no weight."""
    v = np.array([np.nan if x is None else x for x in values], np.float64)
    w = np.array([0.0 if x is None else x for x in weights], np.float64)
    have = np.array([x is not None for x in values], bool)
    return _weighted(v[have], w[have])


def _weights(latents: pa.ChunkedArray, frequencies: Frequencies) -> pa.Array:
    """Each row's latent frequency (float64), 0 where none is known."""
    if isinstance(frequencies, Mapping):
        frequencies = pa.table({"latent": pa.array(list(frequencies), pa.int64()),
                                "frequency": pa.array(list(frequencies.values()), pa.float64())})
    if frequencies is None or not len(frequencies):
        return pa.array(np.zeros(len(latents)))
    known = frequencies["latent"].combine_chunks().cast(pa.int64())
    at = pc.index_in(latents.cast(pa.int64()), value_set=known)
    found = pc.take(frequencies["frequency"].cast(pa.float64()), at)
    return pc.fill_null(found, 0.0).combine_chunks()


def _scorer(mine: pa.Table, *, seed: Any, n_boot: int) -> dict[str, Any]:
    """The figures of one scorer's real rows (`mine`, in table order, with a `weight` column)."""
    ok = mine.filter(pc.and_(pc.equal(mine["status"], "ok"), pc.is_valid(mine["value"])))
    values, weights = ok["value"].to_numpy(), ok["weight"].to_numpy()
    has_f1 = pc.is_valid(ok["f1"]).to_numpy(zero_copy_only=False)
    f1 = pc.fill_null(ok["f1"], 0.0).to_numpy()
    mean, lo, hi = mean_interval(values, seed=seed, n_boot=n_boot)
    counts = pc.value_counts(mine["status"])
    statuses = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
    return {
        "metric": mine["metric"][0].as_py() if len(mine) else None, "n_latents": len(mine),
        "n_scored": len(ok), "status_counts": {s: statuses[s] for s in sorted(statuses)},
        "mean": mean, "ci_low": lo, "ci_high": hi,
        "frequency_weighted": _weighted(values, weights),
        "frequency_weighted_f1": _weighted(f1[has_f1], weights[has_f1]),
        "n_valid": pc.sum(mine["n_valid"]).as_py() or 0,
        "n_examples": pc.sum(mine["n_examples"]).as_py() or 0}


def summarize(rows: pa.Table | list[dict[str, Any]], frequencies: Frequencies = None, *,
              seed: int = 0, n_boot: int = N_BOOT) -> dict[str, dict[str, Any]]:
    """Run-level figures per scorer over the real explanations' rows (control None): status
    counts, the headline metric's mean over ok latents with its interval (mean_interval), and
    delphi's frequency-weighted aggregates (headline and F1) when latent frequencies are given
    (latent -> frequency, or a table with those columns, e.g. latents.parquet's)."""
    t = as_table(rows, SUMMARY_COLUMNS)
    t = t.append_column("weight", _weights(t["latent"], frequencies))
    real = pc.is_null(t["control"])
    return {scorer: _scorer(t.filter(pc.and_(pc.equal(t["scorer"], scorer), real)),
                            seed=(seed, scorer), n_boot=n_boot)
            for scorer in sorted(pc.unique(t["scorer"]).to_pylist())}
