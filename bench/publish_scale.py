"""Publish time against catalogue size: the same run published into a catalogue of 1x and of 10x
the rows (filler rows copied from the first run into every big table), side by side.

    python bench/publish_scale.py [--latents 2048] [--factor 10]

Publish inserts a run's artifact rows into a copy of the catalogue and renames it into place
(readers never see a half-written file), so besides the inserts it copies the file once.
Prints seconds and catalogue bytes at each size and `publish_ratio` (seconds at 10x / at 1x).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.artifacts import ArtifactRef  # noqa: E402
from interp.config import build_config  # noqa: E402
from interp.stages import run  # noqa: E402
from storage.catalog import CATALOG, load_run, publish  # noqa: E402
from tests.builders import make_shards  # noqa: E402

BIG = ("sequences", "latents", "example_rows", "explanations", "scores", "predictions", "llm_calls")
KEYS = {"explanations": "explanation_id", "scores": "score_id"}  # primary keys made unique


def runs(home: Path, url: str, latents: int) -> tuple[dict, dict]:
    """Two labelling runs of equal size on one home (the second with another score seed)."""
    data = {"home": str(home), "corpus": {"seq_len": 33},
            "sae": {"expansion_factor": latents // 64, "k": 8, "batch_size": 512, "epochs": 1,
                    "eval_sequences": 0},
            "mine": {"window": 8, "n_top": 12, "n_quantiles": 3, "per_quantile": 4, "n_random": 12},
            "llm": {"backend": "openai", "base_url": url, "concurrency": 32, "shared_limit": 0},
            "explain": {"n_latents": 256, "embed": False}}
    ref = ArtifactRef("collect", "bench", make_shards(home / "artifacts" / "collect" / "bench",
                                                      n_seq=2048, seq_len=33, d=64, per_shard=512))
    first = run(build_config(data), reuse={"collect": ref})
    second = run(build_config({**data, "score": {"seed": 1}}), reuse={"collect": ref})
    return load_run(home / "runs" / first.run_id), load_run(home / "runs" / second.run_id)


def pad(home: Path, factor: int) -> None:
    """Grow every big table to `factor` x its rows with copies of its own rows."""
    con = duckdb.connect(str(home / CATALOG))
    for table in BIG:
        n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
        key = KEYS.get(table)
        for i in range(1, factor):
            cols = "*" if key is None else f"* REPLACE ({key} || '-pad{i}' AS {key})"
            con.execute(f"INSERT INTO {table} SELECT {cols} FROM {table} LIMIT {n}")  # noqa: S608
    con.execute("CHECKPOINT")
    con.close()


def timed_publish(home: Path, second: dict, trials: int = 3) -> float:
    """Median seconds of publishing `second` into fresh copies of `home`'s catalogue."""
    secs = []
    for i in range(trials):
        trial = home.with_name(f"{home.name}-trial{i}")
        shutil.copytree(home, trial)
        t0 = time.perf_counter()
        publish(trial, second["artifacts"], [second])
        secs.append(time.perf_counter() - t0)
        shutil.rmtree(trial)
    return sorted(secs)[len(secs) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", type=int, default=2048)
    ap.add_argument("--factor", type=int, default=10)
    args = ap.parse_args()
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_server.py"))],
                              stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().split()[1]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "base"
            first, second = runs(base, url, args.latents)
            publish(base, first["artifacts"], [first])
            big = Path(tmp) / "big"
            shutil.copytree(base, big)
            pad(big, args.factor)
            secs = {}
            for name, home in (("1x", base), (f"{args.factor}x", big)):
                size = os.path.getsize(home / CATALOG)
                secs[name] = timed_publish(home, second)
                print(f"publish into the {name} catalogue ({size / 1e6:.1f} MB): {secs[name]:.2f}s")
    finally:
        server.kill()
    ratio = secs[f"{args.factor}x"] / secs["1x"]
    print(f"publish_ratio={ratio:.2f} (seconds at {args.factor}x / at 1x)")


if __name__ == "__main__":
    main()
