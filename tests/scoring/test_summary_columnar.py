"""The score summary (summary.json, controls / judge_checks / verdicts tables) computed columnar
equals the row-wise computation it replaced (tests/scoring/summary_reference.py) on synthetic
score tables with every status, both controls, probes and latent frequencies, and it never
turns the real rows' predictions into Python objects."""
from __future__ import annotations

import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interp.config import build_config
from interp.scoring.aggregate import summarize
from interp.scoring.summary import (
    CONTROLS_SCHEMA,
    JUDGE_CHECKS_SCHEMA,
    VERDICTS_SCHEMA,
    write_summary,
)
from tests.scoring import summary_reference as reference
from tests.scoring.score_tables import synthetic_scores, write_latents


def _cfg(n_boot: int = 1000):
    # fuzzing is configured but has no rows: its verdict is 'untested'.
    return build_config({"score": {"scorers": ["detection", "intruder", "fuzzing"],
                                   "n_bootstrap": n_boot, "seed": 3}})


@pytest.mark.parametrize("n_latents,controlled,frequencies", [
    (80, 40, True),     # > 12 controlled latents: the lift test draws random sign patterns
    (30, 9, True),      # <= 12: exact enumeration
    (50, 40, False),    # no latents.parquet: no frequency-weighted means
    (3, 2, True),       # too few latents for any verdict
])
def test_columnar_summary_equals_the_row_wise_one(tmp_path, n_latents, controlled, frequencies):
    cfg = _cfg()
    scores = synthetic_scores(n_latents, scorers=("detection", "intruder"), controlled=controlled)
    mine = write_latents(tmp_path / "mine", n_latents) if frequencies else tmp_path / "none"
    freq = {}
    if frequencies:
        lat = pq.read_table(mine / "latents.parquet")
        freq = dict(zip(lat["latent"].to_pylist(), lat["frequency"].to_pylist()))
    want = reference.summary(cfg, scores, freq)
    got = write_summary(cfg, scores, tmp_path, mine)
    assert json.dumps(got) == json.dumps(want)          # bit for bit, keys in the same order
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(want))
    for name, schema in (("controls", CONTROLS_SCHEMA), ("judge_checks", JUDGE_CHECKS_SCHEMA),
                         ("verdicts", VERDICTS_SCHEMA)):
        written = pq.read_table(tmp_path / f"{name}.parquet")
        assert written.equals(pa.Table.from_pylist(want[name], schema=schema))
    # The cases this test is for: statuses, controls and probes all present, weights used.
    if n_latents >= 30:
        assert set(want["scorers"]["detection"]["status_counts"]) == \
            {"ok", "insufficient", "failed", "unscorable"}
    assert {c["control"] for c in want["controls"]} == {"shuffled", "top_tokens"}
    assert len(want["judge_checks"]) == 2 * 5
    assert (want["scorers"]["detection"]["frequency_weighted"] is not None) == frequencies


def test_dict_rows_and_a_table_give_the_same_summary():
    scores = synthetic_scores(40, scorers=("detection",))
    rows = [r for r in scores.to_pylist() if r["control"] != "probe"]
    freq = {3 * i: 0.001 * i for i in range(40)}
    assert summarize(rows, freq, seed=1) == reference.summarize(rows, freq, seed=1)


def test_summary_keeps_the_real_rows_predictions_in_arrow(tmp_path):
    """Python-heap peak (tracemalloc sees Python objects and numpy arrays, not Arrow's buffers)
    of write_summary on 2 x 3,000 rows of 30 predictions each: the row-wise summary peaked at
    ~85 MB (a dict per prediction), the columnar one at ~11 MB (the bootstrap's blocks)."""
    scores = synthetic_scores(3000, scorers=("detection", "intruder"), per_row=30)
    mine = write_latents(tmp_path / "mine", 3000)
    tracemalloc.start()
    try:
        write_summary(_cfg(n_boot=100), scores, tmp_path, mine)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 25e6, f"write_summary peaked at {peak / 1e6:.0f} MB of Python objects"
