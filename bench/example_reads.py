"""Reading a block of latents' examples at scale: the stages' ExampleReader (a token index built
once, examples.parquet alone per block) next to the SQL join with sequences.parquet it replaced
(with a DuckDB connection per block, as the old loader had), on the same synthetic artifacts,
side by side in one run.

    python bench/example_reads.py [--tokens 10000000] [--latents 65536] [--block 256]

Synthetic: sequences of 256 tokens drawn from 49,152 token strings; 36 examples of 32 tokens per
latent in one row group per 8,192 latents (a budgeted mine's layout). Prints the token index's
one-time build, seconds per block for both (median of blocks spread over the latent range),
their ratio, that both give the same examples, and the reader's peak RSS.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.mine.examples import ExampleReader  # noqa: E402
from interp.mine.stage import EXAMPLES_SCHEMA  # noqa: E402
from interp.resumable import BLOCK  # noqa: E402
from tests.test_examples_reader import examples_by_join  # noqa: E402  (the old SQL join)

SEQ_LEN, VOCAB, PER_LATENT, WINDOW, GROUP_LATENTS = 256, 49_152, 36, 32, 8_192


def make(tmp: Path, n_tokens: int, n_latents: int) -> None:
    rng = np.random.default_rng(0)
    n_seq = n_tokens // SEQ_LEN
    words = np.array([f"w{i}" for i in range(VOCAB)], dtype=object)
    ids = rng.integers(0, VOCAB, n_seq * SEQ_LEN).astype(np.int32)
    offsets = pa.array(np.arange(0, n_seq * SEQ_LEN + 1, SEQ_LEN, dtype=np.int32))
    pq.write_table(pa.table({
        "seq_id": pa.array(np.arange(n_seq, dtype=np.int32)),
        "tokens": pa.ListArray.from_arrays(offsets, pa.array(ids)),
        "token_str": pa.ListArray.from_arrays(offsets, pa.array(words[ids], pa.string()))}),
        tmp / "sequences.parquet")
    with pq.ParquetWriter(tmp / "examples.parquet", EXAMPLES_SCHEMA) as w:
        for lo in range(0, n_latents, GROUP_LATENTS):
            m = min(GROUP_LATENTS, n_latents - lo)
            n = m * PER_LATENT
            acts = pa.ListArray.from_arrays(pa.array(np.arange(0, n * WINDOW + 1, WINDOW, dtype=np.int32)),
                                            pa.array(rng.random(n * WINDOW, dtype=np.float32)))
            w.write_table(pa.table({
                "latent": pa.array(np.repeat(np.arange(lo, lo + m, dtype=np.int32), PER_LATENT)),
                "kind": pa.array(np.array(["top", "quantile", "random", "hard"])[rng.integers(0, 4, n)]),
                "split": pa.array(np.array(["train", "test"])[rng.integers(0, 2, n)]),
                "rank": pa.array(np.tile(np.arange(PER_LATENT, dtype=np.int32), m)),
                "quantile": pa.array(rng.integers(0, 5, n).astype(np.int16)),
                "seq_id": pa.array(rng.integers(0, n_seq, n).astype(np.int32)),
                "start": pa.array(rng.integers(0, SEQ_LEN - WINDOW, n).astype(np.int16)),
                "max_act": pa.array(rng.random(n, dtype=np.float32)), "acts": acts},
                schema=EXAMPLES_SCHEMA))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=10_000_000)
    ap.add_argument("--latents", type=int, default=65_536)
    ap.add_argument("--block", type=int, default=BLOCK, help="latents a block (the stages' size)")
    ap.add_argument("--blocks", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        make(tmp, args.tokens, args.latents)
        print(f"synthetic: {args.tokens:,} tokens, {args.latents:,} latents x {PER_LATENT} examples "
              f"({time.perf_counter() - t0:.0f}s to write)", flush=True)
        reader = ExampleReader(tmp, sequences=tmp / "sequences.parquet")  # no collect artifact
        t0 = time.perf_counter()
        reader.tokens()
        build = time.perf_counter() - t0
        starts = np.linspace(0, args.latents - args.block, args.blocks).astype(int).tolist()
        new, old, same = [], [], True
        for s in starts:  # alternated, so the machine's load falls on both alike
            latents = list(range(s, s + args.block))
            t0 = time.perf_counter()
            a = reader(latents)
            new.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = examples_by_join(tmp / "examples.parquet", tmp / "sequences.parquet", latents)
            old.append(time.perf_counter() - t0)
            same &= a == b
        reader.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n, o = statistics.median(new), statistics.median(old)
    print(f"token index: built once in {build:.2f}s")
    print(f"per block of {args.block} latents: reader {1000 * n:.0f} ms (min {1000 * min(new):.0f}, "
          f"max {1000 * max(new):.0f}); join {1000 * o:.0f} ms (min {1000 * min(old):.0f}, "
          f"max {1000 * max(old):.0f}); same examples: {same}; peak RSS {rss:.0f} MB")
    print(f"example_reads join_over_reader={o / n:.1f} reader_ms={1000 * n:.0f} join_ms={1000 * o:.0f} "
          f"index_s={build:.2f} same={same}")


if __name__ == "__main__":
    main()
