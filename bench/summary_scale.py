"""Cost of the score stage's summary (write_summary: summary.json, controls, judge_checks,
verdicts) against the size of the run, beside a reference measured in the same run: reading the
same scores.parquet (pq.read_table), which the stage's merge does anyway.

    python bench/summary_scale.py [--sizes 10000 100000 1000000] [--code DIR]

Tables are synthetic in the score stage's SCHEMA (tests/scoring/score_tables.py): 2 scorers,
8-12 predictions a row, every status, 'shuffled' and 'top_tokens' on 40 latents, 4 probes per
scorer. Each measurement runs in a child process of its own, so its peak RSS (ru_maxrss) is its
own: the reference child reads the table; the summary child reads it and runs write_summary.
One line per size: seconds and peak RSS of each, and the ratios summary / reference (time:
write_summary alone over the read; RSS: the summary child's peak over the reader's, both with
the ~370 MB of the imports, so 'extra MB' gives the difference too).
--code DIR runs the children on another checkout's `interp` (e.g. the row-wise summary:
`git archive <commit> interp | tar -x -C /tmp/old`, then --code /tmp/old).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child(kind: str, home: Path) -> dict:
    """One measurement in this (child) process: read the table, and for 'summary' summarise it."""
    import pyarrow.parquet as pq

    from interp.config import build_config
    from interp.scoring.summary import write_summary  # imported by both: the same baseline

    start = time.perf_counter()
    scores = pq.read_table(home / "scores.parquet")
    out = {"read_s": time.perf_counter() - start}
    if kind == "summary":
        cfg = build_config({"score": {"scorers": ["detection", "fuzzing"]}})
        start = time.perf_counter()
        write_summary(cfg, scores, home / "out", home / "mine")
        out["summary_s"] = time.perf_counter() - start
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux
    return out


def _measure(kind: str, home: Path, code: Path | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code or ROOT))
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(home)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{kind} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def one_size(n_latents: int, directory: Path, code: Path | None = None) -> dict:
    """Write a synthetic run of n_latents latents into `directory`, measure both children."""
    sys.path.insert(0, str(ROOT))
    import pyarrow.parquet as pq

    from tests.scoring.score_tables import synthetic_scores, write_latents

    table = synthetic_scores(n_latents)
    pq.write_table(table, directory / "scores.parquet")
    rows = table.num_rows
    del table
    write_latents(directory / "mine", n_latents)
    (directory / "out").mkdir(exist_ok=True)
    ref, summ = _measure("read", directory, code), _measure("summary", directory, code)
    return {"latents": n_latents, "rows": rows, "read_s": ref["read_s"],
            "summary_s": summ["summary_s"], "time_ratio": summ["summary_s"] / ref["read_s"],
            "read_rss_mb": ref["rss_mb"], "summary_rss_mb": summ["rss_mb"],
            "rss_ratio": summ["rss_mb"] / ref["rss_mb"]}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--code", type=Path, help="checkout whose interp the children run")
    args = parser.parse_args(argv)
    print(f"{'latents':>9} {'rows':>9} {'read s':>7} {'summary s':>9} {'ratio':>6} "
          f"{'read MB':>8} {'summary MB':>10} {'ratio':>6} {'extra MB':>8}", flush=True)
    results = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="summary_scale-") as tmp:
            r = one_size(n, Path(tmp), args.code)
        results.append(r)
        print(f"{r['latents']:9d} {r['rows']:9d} {r['read_s']:7.2f} {r['summary_s']:9.2f} "
              f"{r['time_ratio']:6.1f} {r['read_rss_mb']:8.0f} {r['summary_rss_mb']:10.0f} "
              f"{r['rss_ratio']:6.2f} {r['summary_rss_mb'] - r['read_rss_mb']:8.0f}", flush=True)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], Path(sys.argv[3]))))
    else:
        main()
