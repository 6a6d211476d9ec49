"""Per-latent resumable work: latents in fixed chunks, one atomic part file per finished chunk.

A crash (even SIGKILL) loses at most the chunk in flight; a re-run reads the finished parts, skips
their chunks and continues. Chunks are a pure function of the latent list, so a chunk is written
at most once and the merged result has exactly one row set per latent.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from interp.artifacts import read_parts, write_parquet_atomic
from interp.llm.base import LEDGER_SCHEMA_FIELDS, Ledger

log = logging.getLogger(__name__)

Work = Callable[[int], Awaitable[list[dict[str, Any]]]]

LEDGER_SCHEMA = pa.schema([
    ("call_id", pa.string()), ("stage", pa.string()), ("latent", pa.int64()), ("model", pa.string()),
    ("attempt", pa.int32()), ("status", pa.string()), ("error", pa.string()),
    ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("latency_s", pa.float64()),
    ("created_at", pa.float64())])
assert tuple(LEDGER_SCHEMA.names) == LEDGER_SCHEMA_FIELDS


def chunks(latents: list[int], size: int) -> list[list[int]]:
    return [latents[i:i + size] for i in range(0, len(latents), size)]


def done_chunks(partial: Path) -> set[int]:
    return {int(p.stem.split("-")[1]) for p in partial.glob("part-*.parquet")}


def pending(latents: list[int], chunk_size: int, partial: Path) -> bool:
    """Whether any chunk still has to run (so an LLM server is needed at all)."""
    return len(done_chunks(partial)) < len(chunks(latents, chunk_size))


async def _run_chunks(todo: list[tuple[int, list[int]]], work: Work, schema: pa.Schema,
                      ledger: Ledger, partial: Path, bar: tqdm, close) -> None:
    try:
        await _chunks_loop(todo, work, schema, ledger, partial, bar)
    finally:
        if close is not None:
            await close()


async def _chunks_loop(todo, work, schema, ledger, partial, bar) -> None:
    for idx, chunk in todo:
        results = await asyncio.gather(*(work(l) for l in chunk))
        rows = [r for rs in results for r in rs]
        # Ledger first: a crash between the two files re-runs the chunk but never loses its calls.
        write_parquet_atomic(pa.Table.from_pylist(ledger.drain(), schema=LEDGER_SCHEMA),
                             partial / f"calls-{idx:05d}.parquet")
        write_parquet_atomic(pa.Table.from_pylist(rows, schema=schema), partial / f"part-{idx:05d}.parquet")
        bar.update(len(chunk))


def run_resumable(latents: list[int], chunk_size: int, partial: Path, work: Work,
                  schema: pa.Schema, ledger: Ledger, *, desc: str,
                  progress: bool = False, close: Callable[[], Awaitable[None]] | None = None,
                  shard: tuple[int, int] | None = None) -> dict[str, int]:
    """Run `work` for every latent not yet in a part file of `partial`; returns counts.

    `close` (e.g. the LLM client's aclose) runs inside the event loop when the work is done.
    `shard=(i, n)` runs only chunks whose index is i mod n: n workers sharing `partial` (a shared
    filesystem) then write disjoint part files, and a final unsharded call merges them.
    """
    all_chunks = chunks(latents, chunk_size)
    finished = done_chunks(partial)
    if shard is not None:
        finished |= {i for i in range(len(all_chunks)) if i % shard[1] != shard[0]}
    todo = [(i, c) for i, c in enumerate(all_chunks) if i not in finished]
    skipped = sum(len(c) for i, c in enumerate(all_chunks) if i in finished)
    if skipped:
        log.info("%s: resuming, %d latents already done", desc, skipped)
    if todo:
        bar = tqdm(total=len(latents), initial=skipped, desc=desc, unit="latent", disable=not progress)
        asyncio.run(_run_chunks(todo, work, schema, ledger, partial, bar, close))
        bar.close()
    return {"latents": len(latents), "resumed": skipped, "computed": len(latents) - skipped}


def merge_parts(partial: Path, schema: pa.Schema, out_name: str, key_cols: tuple[str, ...]) -> pa.Table:
    """Merge part files into one table, checking that no key repeats; write it and calls.parquet."""
    table = read_parts(partial, "part-*.parquet") or schema.empty_table()
    keys = list(zip(*(table.column(c).to_pylist() for c in key_cols)))
    if len(keys) != len(set(keys)):
        raise RuntimeError(f"duplicate rows for {key_cols} in {partial}: refusing to publish")
    write_parquet_atomic(table, partial / out_name)
    calls = read_parts(partial, "calls-*.parquet") or LEDGER_SCHEMA.empty_table()
    write_parquet_atomic(calls, partial / "llm_calls.parquet")
    return table
