"""bench/summary_scale.py runs end to end at a tiny size, so it cannot rot: both children
report (a child that fails raises), one line per size."""
from __future__ import annotations

import pytest

from bench.summary_scale import main

pytestmark = pytest.mark.slow  # two child processes that import torch (~6 s)


def test_the_bench_measures_the_summary_beside_the_read(capsys):
    [row] = main(["--sizes", "30"])
    assert row["latents"] == 30 and row["rows"] == 2 * (30 + 2 * 30 + 4)
    assert row["summary_s"] > 0 and row["read_s"] > 0 and row["rss_ratio"] >= 0.9
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "latents" and lines[1].split()[:2] == ["30", "188"]

