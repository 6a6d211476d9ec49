"""How a per-latent stage (explain, score) runs on interp.resumable: `adrive` feeds its pending
latents to `run_latents` from the stage's context, `drive` is its sync form, and `merge_parts`
turns the part files into the artifact, with the LLM ledger as llm_calls.parquet."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from interp import duck
from interp.aio import refuse_running_loop, run_coroutine
from interp.artifacts import replaced_atomically, write_parquet_atomic
from interp.llm.base import LEDGER_SCHEMA_FIELDS
from interp.resumable import Work, pending, run_latents, shard_of

LEDGER_SCHEMA = pa.schema([
    ("call_id", pa.string()), ("stage", pa.string()), ("purpose", pa.string()),
    ("latent", pa.int64()), ("model", pa.string()),
    ("attempt", pa.int32()), ("status", pa.string()), ("error", pa.string()),
    ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("latency_s", pa.float64()),
    ("created_at", pa.float64())])
assert tuple(LEDGER_SCHEMA.names) == LEDGER_SCHEMA_FIELDS


async def adrive(ctx, latents: list[int], make_work: Callable[[Any], Work], schema: pa.Schema,
                 given: dict[int, Any] | None = None, *, todo: list[int] | None = None) -> dict[str, int]:
    """Run a per-latent stage's pending latents (of `ctx.shard`) into `ctx.out` on the running
    loop; returns counts. Examples are read a block at a time from the stage's mine input (token
    text from collect's sequences) or taken from `given` (pseudo-latents such as the score
    stage's probes). `ctx.llm`: a client, or a function that opens one (called only if there is
    work). `todo`: the pending latents when the caller already listed them. `drive` is the sync
    form, for a stage's fill."""
    from interp.mine.examples import ExampleReader

    cfg, shard = ctx.cfg, ctx.shard
    todo = pending(latents, ctx.out, shard) if todo is None else todo  # the part files, read once
    if not todo:
        n = len(shard_of(latents, shard))
        return {"latents": n, "resumed": n, "computed": 0}
    reader = ExampleReader(ctx.input("mine").path, ctx.input("collect").path / "sequences.parquet")
    given = given or {}

    def load(block: list[int]) -> dict[int, Any]:
        wanted = [l for l in block if l not in given]
        mined = reader(wanted) if wanted else {}
        return {l: given[l] if l in given else mined[l] for l in block}
    try:
        llm = _client(ctx)
        return await run_latents(
            latents, make_work(llm), load,
            partial=ctx.out, schema=schema, ledger=llm.ledger, inflight=2 * cfg.llm.concurrency,
            desc=ctx.stage if shard is None else f"{ctx.stage} {shard[0]}/{shard[1]}", shard=shard,
            progress=ctx.progress, close=llm.aclose, max_prompt_tokens=cfg.llm.max_prompt_tokens,
            todo=todo, slots=getattr(llm, "width", cfg.llm.concurrency))
    finally:
        reader.close()


def drive(ctx, latents: list[int], make_work: Callable[[Any], Work], schema: pa.Schema,
          given: dict[int, Any] | None = None) -> dict[str, int]:
    """`adrive` from sync code (a stage's fill): in a loop of its own, or on the caller's loop
    when interp.stages.arun/abuild started this thread; refused, naming adrive, on a thread whose
    loop is running. The LLM client opens here, in this thread (an embedded server's start or
    a probe never blocks a caller's loop)."""
    refuse_running_loop("interp.latent_stage.drive", "interp.latent_stage.adrive(...)")
    todo = pending(latents, ctx.out, ctx.shard)
    if todo:
        ctx = dataclasses.replace(ctx, llm=_client(ctx))
    return run_coroutine(lambda: adrive(ctx, latents, make_work, schema, given, todo=todo),
                         "interp.latent_stage.drive", "interp.latent_stage.adrive(...)")


def _client(ctx) -> Any:
    return ctx.llm if hasattr(ctx.llm, "generate") else ctx.llm()


def merge_parts(partial: Path, schema: pa.Schema, out_name: str, key_cols: tuple[str, ...]) -> pa.Table:
    """Merge part files into one table sorted by `key_cols` (no key may repeat); write it and
    llm_calls.parquet from the ledger files."""
    files = sorted(partial.glob("part-*.parquet"))
    table = (pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
             if files else schema.empty_table())
    if table.group_by(list(key_cols)).aggregate([]).num_rows != table.num_rows:
        raise RuntimeError(f"duplicate rows for {key_cols} in {partial}: refusing to publish")
    table = table.sort_by([(c, "ascending") for c in key_cols])
    write_parquet_atomic(table, partial / out_name)
    write_ledger(sorted(partial.glob("calls-*.jsonl")), partial / "llm_calls.parquet")
    return table


# Ledger lines as LEDGER_SCHEMA's columns: a line torn by a crash mid-write, or not a call's
# object, reads as nulls and is left out; a line written before purposes were has its stage.
_LEDGER_SQL = """
SELECT * REPLACE (coalesce(purpose, stage) AS purpose)
FROM read_json($files, format = 'newline_delimited', ignore_errors = true, columns = $columns)
WHERE call_id IS NOT NULL AND stage IS NOT NULL AND status IS NOT NULL AND created_at IS NOT NULL
ORDER BY created_at, call_id, attempt
"""
_DUCK_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
               pa.float64(): "DOUBLE"}


def write_ledger(paths: list[Path], out: Path) -> None:
    """llm_calls.parquet from a stage's ledger files, in order of the calls, read and sorted by
    DuckDB (out of core when it must): 3 calls a latent make 3M rows at 10^6 latents, which as
    Python dicts were ~1 KB and 25 us each."""
    if not paths:
        write_parquet_atomic(LEDGER_SCHEMA.empty_table(), out)
        return
    con = duck.connect(temp_directory=str(out.parent / ".duckdb-tmp"))
    try:
        with replaced_atomically(out) as tmp:
            con.sql(_LEDGER_SQL, params={
                "files": [str(p) for p in paths],
                "columns": {f.name: _DUCK_TYPES[f.type] for f in LEDGER_SCHEMA}}).write_parquet(str(tmp))
    finally:
        con.close()
