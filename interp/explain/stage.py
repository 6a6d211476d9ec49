"""Explain stage: one LLM explanation per latent from its training-split examples.

What the explainer sees is set by explain.train_set (top / quantile / mixed activating windows),
the prompt file (which may also show non-activating train windows as $negatives, or ask for
reasoning before the answer) and explain.top_tokens ($summary). Held-out windows are never shown.

The answer must carry an explicit `[EXPLANATION]:` marker; anything else is stored with status
`parse_error` (or `llm_error` when the request failed for good) and is never scored.
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.parquet as pq

from interp.artifacts import ArtifactRef, stable_hash, write_parquet_atomic
from interp.config import RunConfig
from interp.contract import Stage, StageContext, Table
from interp.explain.format import (
    format_for_explainer,
    format_negatives,
    top_tokens,
    training_examples,
    training_negatives,
)
from interp.explain.parse import answer_schema, parse_explanation, parse_structured
from interp.latent_stage import drive, merge_parts
from interp.llm import LLMError
from interp.llm.structured import max_tokens_for
from interp.mine.examples import Example
from interp.prompts import Prompt, load_prompt

log = logging.getLogger(__name__)

VERSION = "2"  # 2: $summary / $negatives placeholders, train_set
SCHEMA = pa.schema([
    ("explanation_id", pa.string()), ("latent", pa.int32()), ("text", pa.string()),
    ("status", pa.string()), ("error", pa.string()), ("raw", pa.string()),
    ("explainer_model", pa.string()), ("prompt_name", pa.string()), ("prompt_hash", pa.string()),
    ("settings_hash", pa.string()), ("n_examples", pa.int32()), ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()), ("latency_s", pa.float64()), ("attempts", pa.int32()),
    ("created_at", pa.float64())])


def _settings(cfg: RunConfig, prompt: Prompt) -> dict:
    """Explain settings that can change an answer: what the template does not use stays out."""
    from string import Template

    used = {name for _, text in prompt.turns for name in Template(text).get_identifiers()}
    drop = ({"n_negatives"} if "negatives" not in used else set()) | \
        ({"top_tokens"} if "top_tokens" not in used else set()) | \
        ({"output_tokens"} if "output_tokens" not in used else set())
    return cfg.explain.model_dump(mode="json", exclude=drop)


def settings(cfg: RunConfig) -> dict[str, Any]:
    """What of the config can change an explanation: the used explain settings and the LLM."""
    prompt = load_prompt(cfg.explain.prompt)
    used = _settings(cfg, prompt)
    if cfg.explain.output_tokens and "output_tokens" not in used:
        # Silently ignoring the flag made an A/B run compare a prompt with itself.
        raise ValueError(f"explain.output_tokens is true but explain.prompt "
                         f"{cfg.explain.prompt!r} has no $output_tokens line: set "
                         "explain.prompt: explain_output (or add the line to your prompt)")
    # The answer's JSON schema is code (interp.explain.parse.answer_schema): in the key as sent,
    # so a change to it re-explains, where the server constrains answers to it.
    schema = answer_schema(prompt, cfg.explain.max_chars) if cfg.llm.constrains() is not False \
        else None
    return {"explain": used, "llm": cfg.llm.identity(), "answer_schema": schema}


def output_tokens(logits: ArtifactRef | None, n: int = 10) -> dict[int, str]:
    """latent -> its promoted tokens as prompt text ('" cat" (+4.2), ...'); {} without logits."""
    import json

    if logits is None:
        return {}
    t = pq.read_table(logits.path / "latent_logits.parquet",
                      filters=[("direction", "=", "promoted"), ("rank", "<=", n)])
    out: dict[int, list[str]] = {}
    for lat, tok, val in zip(*(t.column(c).to_pylist() for c in ("latent", "token", "value"))):
        out.setdefault(lat, []).append(f"{json.dumps(tok)} ({val:+.2g})")
    return {lat: ", ".join(v) for lat, v in out.items()}


# Latents with enough activating train windows (>= 1 always) and held-out quantile windows.
_ELIGIBLE_SQL = """
SELECT latent FROM read_parquet($examples) WHERE max_act > 0 GROUP BY latent
HAVING count(*) FILTER (WHERE split = 'train') >= greatest($min_examples, 1)
   AND count(*) FILTER (WHERE split <> 'train' AND kind = 'quantile') >= $min_heldout
ORDER BY latent
"""


def select_latents(mine_dir: Path, cfg: RunConfig) -> list[int]:
    """Latents with explain.min_examples activating train windows (what the explainer may be
    shown) and explain.min_heldout held-out activating quantile windows (what the scorers judge);
    a seeded sample of them. Counted from the mined examples, since train and test are whole
    documents: a latent of one document has windows in one split only. Counted by DuckDB as
    it streams examples.parquet: at 10^6 latents that is 36M rows, ~1 GB as Arrow columns and
    ~3M groups as Python dicts before."""
    import random

    from interp import duck

    con = duck.connect()
    try:
        eligible = con.sql(_ELIGIBLE_SQL, params={
            "examples": str(Path(mine_dir) / "examples.parquet"),
            "min_examples": cfg.explain.min_examples, "min_heldout": cfg.explain.min_heldout,
        }).to_arrow_table().column("latent").to_pylist()
    finally:
        con.close()
    if cfg.explain.n_latents is None or cfg.explain.n_latents >= len(eligible):
        return eligible
    return sorted(random.Random(cfg.mine.seed).sample(eligible, cfg.explain.n_latents))


def _row(eid: str, latent: int, cfg: RunConfig, prompt, settings_hash: str, n: int, **kw) -> dict:
    base = {"explanation_id": eid, "latent": latent, "text": None, "error": None, "raw": None,
            "explainer_model": cfg.llm.model, "prompt_name": prompt.name, "prompt_hash": prompt.sha,
            "settings_hash": settings_hash, "n_examples": n, "prompt_tokens": 0,
            "completion_tokens": 0, "latency_s": 0.0, "attempts": 0, "created_at": time.time()}
    return {**base, **kw}


_DROP = "\x00drop-line\x00"


def build_messages(prompt: Prompt, cfg: RunConfig, train: list[Example],
                   negatives: list[Example], output: str | None = None) -> list[dict[str, str]]:
    """Fill the template: $examples, $top_tokens, $negatives, $n_examples, $output_tokens.

    With explain.top_tokens off, every template line holding $top_tokens (the summary line) is
    dropped, with the blank line after it, so one template serves both settings; likewise the
    $output_tokens line without explain.output_tokens or without promoted tokens (`output`).
    """
    tokens = top_tokens(train) if cfg.explain.top_tokens else _DROP
    try:
        messages = prompt.messages(
            examples=format_for_explainer(train, max(e.max_act for e in train)), top_tokens=tokens,
            negatives=format_negatives(negatives), n_examples=len(train),
            output_tokens=output if (output and cfg.explain.output_tokens) else _DROP)
    except (KeyError, ValueError) as err:
        raise ValueError(f"prompt {prompt.name!r} (explain.prompt) uses an unknown placeholder "
                         f"{err}; explainer prompts may use $examples, $top_tokens, $negatives, "
                         "$n_examples and $output_tokens") from None
    for m in messages:
        if _DROP in m["content"]:
            m["content"] = re.sub(rf"[^\n]*{_DROP}[^\n]*\n?\n?", "", m["content"])
    return messages


def make_work(cfg: RunConfig, key: str, llm, outputs: dict[int, str] | None = None):
    """work(latent, examples) -> the latent's one explanation row. `outputs`: latent -> its
    promoted tokens as text (explain.output_tokens)."""
    prompt = load_prompt(cfg.explain.prompt)
    settings_hash = stable_hash(_settings(cfg, prompt))
    schema = answer_schema(prompt, cfg.explain.max_chars)
    outputs = outputs or {}

    async def work(latent: int, examples: list[Example]) -> list[dict]:
        eid = stable_hash({"explain": key, "latent": latent})
        train = training_examples(examples, cfg.explain.train_set, cfg.explain.n_examples)
        if len(train) < cfg.explain.min_examples:
            return [_row(eid, latent, cfg, prompt, settings_hash, len(train), status="skipped",
                         error=f"only {len(train)} activating examples")]
        negatives = training_negatives(examples, cfg.explain.n_negatives)
        messages = build_messages(prompt, cfg, train, negatives, outputs.get(latent))
        constrained = await structured(llm)
        try:
            r = await llm.generate(messages, temperature=cfg.explain.temperature, stage="explain",
                                   latent=latent, purpose="explain", schema=schema,
                                   max_tokens=max_tokens_for(schema) if constrained
                                   else cfg.explain.max_tokens)
        except LLMError as err:  # the server refused this request for good (e.g. too long)
            return [_row(eid, latent, cfg, prompt, settings_hash, len(train), status="llm_error",
                         error=err.reason, attempts=err.attempts)]
        if r.constrained:
            text, status = parse_structured(r.text, schema, truncated=r.truncated)
            error = {"parse_error": "not the answer's JSON (cut off at max_tokens?)",
                     "echo": "the explanation echoes the prompt's examples or instructions"}.get(status)
        else:
            text = parse_explanation(r.text)
            status, error = (None, None) if text else ("parse_error", "no usable [EXPLANATION]: "
                                                       "line (missing, repeated, or echoing the prompt)")
        return [_row(eid, latent, cfg, prompt, settings_hash, len(train), text=text, raw=r.text,
                     status=status or "ok", error=error, prompt_tokens=r.prompt_tokens,
                     completion_tokens=r.completion_tokens, latency_s=r.latency_s,
                     attempts=r.attempts)]
    return work


async def structured(llm) -> bool:
    """Whether the client constrains answers to a schema (clients without the method: no)."""
    ask = getattr(llm, "structured", None)
    return bool(await ask()) if ask is not None else False


def _embed(table: pa.Table, out: Path, device: str) -> None:
    """explanation_embeddings.parquet of the ok explanations (publish inserts it as it is)."""
    from interp.embed import explanation_embeddings

    ok = table.filter(pa.compute.equal(table.column("status"), "ok"))
    write_parquet_atomic(explanation_embeddings(ok.column("explanation_id").to_pylist(),
                                                ok.column("text").to_pylist(), device),
                         out / "explanation_embeddings.parquet")


def fill(ctx: StageContext) -> dict[str, Any]:
    """Explain stage, resumable per latent: every pending latent of `ctx.shard` (all without a
    shard) into the partial directory, then, unsharded, the merged explanations."""
    cfg, mine = ctx.cfg, ctx.input("mine")
    latents = select_latents(mine.path, cfg)
    outputs = output_tokens(ctx.optional("logits"))
    progress = drive(ctx, latents, lambda client: make_work(cfg, ctx.key, client, outputs), SCHEMA)
    if ctx.shard is not None:
        return {}
    table = merge_parts(ctx.out, SCHEMA, "explanations.parquet", ("latent",))
    if cfg.explain.embed:
        _embed(table, ctx.out, cfg.score.embedding.device or cfg.model.device)
    statuses = table.column("status").to_pylist()
    return {"mine": mine.key, "sae": ctx.lineage.get("train"),
            "config": cfg.explain.model_dump(mode="json"), "llm": cfg.llm.identity(),
            "prompt_hash": load_prompt(cfg.explain.prompt).sha, "latents": latents,
            "status_counts": {s: statuses.count(s) for s in sorted(set(statuses))},
            "progress": progress}


_PROVENANCE = (("explain_key", "explain"), ("mine_key", "mine"), ("sae_key", "train"))
STAGE = Stage(
    "explain", VERSION, settings, fill, inputs=("mine",), reads=("collect",),
    optional=lambda cfg: ("logits",) if cfg.explain.output_tokens else (),
    extra=lambda k: {"prompt": load_prompt(k.cfg.explain.prompt).sha},
    uses_llm=True, per_latent=True,
    tables=(Table("explanations", "explanations.parquet", provenance=_PROVENANCE),
            Table("explanation_embeddings", "explanation_embeddings.parquet",
                  "explanation_id, model, embedding::FLOAT[384] AS embedding",
                  optional=True, or_ignore=True)))
