"""Collect stage: residual-stream activations at one hookpoint, written as safetensors shards.

The forward pass stops after the hooked layer (`stop_at_layer`), so deeper layers cost nothing.
Shard format: see interp/collect/shards.py.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pyarrow as pa
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from interp.artifacts import write_parquet_atomic
from interp.collect.corpus import corpus_identity, token_stream
from interp.collect.documents import write_documents
from interp.collect.shards import gradient_tensor_name
from interp.config import RunConfig
from interp.contract import Stage, StageContext, Table
from interp.finite import require_finite
from interp.models import SubjectModel, load_model, model_identity

log = logging.getLogger(__name__)

VERSION = "1"


def extra_hookpoints(cfg: RunConfig) -> list[str]:
    """Hookpoints collected beside model.hookpoint: a transcoder's target."""
    target = cfg.sae.transcode_target
    return [target] if target and cfg.sae.path is None else []


def collects_gradient(cfg: RunConfig) -> bool:
    """True when the configured SAE trains on loss gradients (g-SAE): collect records dL/dx."""
    return cfg.sae.arch.needs_gradient and cfg.sae.path is None


def settings(cfg: RunConfig) -> dict:
    """What of the config can change the activations collected."""
    config = {"model": model_identity(cfg.model), "hookpoint": cfg.model.hookpoint,
              "corpus": corpus_identity(cfg.corpus), "shard_sequences": cfg.collect.shard_sequences,
              "dtype": cfg.collect.dtype}
    if cfg.collect.store != "dense":
        config["store"] = cfg.collect.store  # absent for dense, so existing keys are unchanged
    if extra := extra_hookpoints(cfg):
        config["extra_hookpoints"] = extra  # absent when empty, so plain-SAE keys are unchanged
    if collects_gradient(cfg):
        config["gradient"] = "sum next-token CE"  # likewise absent unless a g-SAE needs it
    return config


def _write_sequences(tokens: torch.Tensor, tokenizer, out: Path) -> None:
    """sequences.parquet: token ids and per-token strings, so examples can be shown as text."""
    flat = tokens.flatten().tolist()
    vocab = {t: tokenizer.decode([t]) for t in set(flat)}
    table = pa.table({
        "seq_id": pa.array(range(len(tokens)), pa.int32()),
        "tokens": pa.array(tokens.tolist(), pa.list_(pa.int32())),
        "token_str": pa.array([[vocab[t] for t in row] for row in tokens.tolist()],
                              pa.list_(pa.string())),
    })
    write_parquet_atomic(table, out / "sequences.parquet")


def _to_storage(acts: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
    """acts on the CPU in the storage dtype; refuses a cast that overflows past BOS (float16 tops
    out at 65504), since an inf would poison training and mining silently."""
    out = acts.to(dtype).cpu()
    if dtype == torch.float16 and not torch.isfinite(out[:, 1:]).all() and \
            torch.isfinite(acts[:, 1:]).all():
        raise ValueError(f"activations at {name} overflow float16: set collect.dtype to "
                         "bfloat16 or float32")
    return out


def shard_activations(model: SubjectModel, chunk: torch.Tensor, hookpoints: list[str],
                      batch_size: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Activations [n_seq, seq_len, d] of one shard's sequences at each hookpoint, in the storage
    dtype: forward passes of `batch_size` sequences, cast batch by batch. The one definition of
    what collect stores, shared with the streamed source (interp/collect/stream.py), which must
    reproduce the stored values bit for bit."""
    runs = []
    for b in range(0, len(chunk), batch_size):
        acts = model.run_to_hooks(chunk[b:b + batch_size], hookpoints)
        runs.append({h: _to_storage(acts[h], dtype, h) for h in hookpoints})
    return {h: torch.cat([r[h] for r in runs]).contiguous() for h in hookpoints}


def _gradient_runs(cfg: RunConfig, model: SubjectModel, chunk: torch.Tensor, hook: str
                   ) -> list[dict[str, torch.Tensor]]:
    """A g-SAE's batches: activations at `hook` and "grad" (dL/dx there), in smaller batches
    (collect.grad_batch_size): the backward pass holds every later layer."""
    step = cfg.collect.grad_batch_size
    pairs = [model.run_with_gradient(chunk[b:b + step], hook) for b in range(0, len(chunk), step)]
    return [{hook: acts, "grad": grad} for acts, grad in pairs]


def _gradient_storage(runs: list[dict[str, torch.Tensor]], dtype: torch.dtype) -> torch.Tensor:
    """dL/dx for the shard, finite-checked; float16 storage becomes bfloat16 (gradients are tiny
    numbers that float16 would flush to 0; the selection needs their size, not many digits)."""
    grad = torch.cat([r["grad"] for r in runs])
    require_finite(grad, "collect: loss gradients", "use model.dtype float32")
    return grad.to(torch.bfloat16 if dtype == torch.float16 else dtype).cpu().contiguous()


def _collect_into(cfg: RunConfig, model: SubjectModel, tokens: torch.Tensor, out: Path,
                  progress: bool) -> list[dict]:
    hook, extra = cfg.model.hookpoint, extra_hookpoints(cfg)
    shards = []
    per_shard = cfg.collect.shard_sequences
    # Cast on the way to disk only: the model computes in its own dtype, readers upcast to fp32.
    dtype = getattr(torch, cfg.collect.dtype)
    bar = tqdm(total=tokens.numel(), unit="tok", desc="collect", disable=not progress)
    try:
        for first in range(0, len(tokens), per_shard):
            chunk = tokens[first:first + per_shard]
            name = f"shard-{len(shards):05d}.safetensors"
            if cfg.collect.store == "tokens":  # the forward pass runs where activations are read
                save_file({"tokens": chunk.to(torch.int32).contiguous()}, str(out / name))
                shards.append({"file": name, "first_seq": first, "n_seq": len(chunk)})
                bar.update(chunk.numel())
                continue
            if collects_gradient(cfg):  # a g-SAE (never a transcoder): one forward + backward
                runs = _gradient_runs(cfg, model, chunk, hook)
                acts = {hook: torch.cat([_to_storage(r[hook], dtype, hook)
                                         for r in runs]).contiguous()}
            else:
                acts = shard_activations(model, chunk, [hook, *extra], cfg.collect.batch_size,
                                         dtype)
            tensors = {"acts": acts[hook], "tokens": chunk.to(torch.int32).contiguous()}
            for h in extra:  # transcoder targets, read by interp.sae.data as acts.<hookpoint>
                tensors[f"acts.{h}"] = acts[h]
            if collects_gradient(cfg):
                tensors[gradient_tensor_name(hook)] = _gradient_storage(runs, dtype)
            for h in [hook, *extra]:
                require_finite(tensors["acts" if h == hook else f"acts.{h}"],
                               f"collect: activations at {h} for {name} (sequences {first}.."
                               f"{first + len(chunk) - 1}, batches of {cfg.collect.batch_size})",
                               f"the subject model produced them in {cfg.model.dtype}; try "
                               f"model.dtype float32 or check the model")
            save_file(tensors, str(out / name))
            shards.append({"file": name, "first_seq": first, "n_seq": len(chunk)})
            bar.update(chunk.numel())
    finally:  # on an error too: the CLI's one error line then starts a line of its own
        bar.close()
    return shards


def fill(ctx: StageContext) -> dict:
    """Run the subject model over the corpus and store activations at cfg.model.hookpoint."""
    cfg, tmp = ctx.cfg, ctx.out
    started = time.time()
    subject = load_model(cfg.model, cfg.home)
    for h in [cfg.model.hookpoint, *extra_hookpoints(cfg)]:
        subject.check_hookpoint(h)
    tokens, doc_starts = token_stream(cfg.corpus, subject.tokenizer)
    log.info("collecting %d sequences x %d tokens at %s", len(tokens), tokens.shape[1],
             cfg.model.hookpoint)
    _write_sequences(tokens, subject.tokenizer, tmp)
    write_documents(doc_starts, tokens.shape[0] * (tokens.shape[1] - 1), tmp)
    t0 = time.time()
    shards = _collect_into(cfg, subject, tokens, tmp, ctx.progress)
    return {"model": model_identity(cfg.model), "hookpoint": cfg.model.hookpoint,
            "extra_hookpoints": extra_hookpoints(cfg), "dtype": cfg.collect.dtype,
            "gradient": collects_gradient(cfg),
            "d_model": subject.hook_width(cfg.model.hookpoint),  # hook_z: heads x d_head
            "n_heads": subject.n_heads,  # head attribution of hook_z SAEs
            "seq_len": int(tokens.shape[1]), "n_sequences": int(len(tokens)),
            "n_documents": len(doc_starts),
            "corpus": corpus_identity(cfg.corpus), "shards": shards,
            # tokens-only artifacts: the stream replays collect's batches (interp/collect/stream.py)
            "store": cfg.collect.store, "batch_size": cfg.collect.batch_size,
            "tokens_per_s": round(tokens.numel() / (time.time() - t0), 1),
            "seconds": round(time.time() - started, 2)}


STAGE = Stage("collect", VERSION, settings, fill,
              tables=(Table("sequences", "sequences.parquet", provenance=(("collect_key", "collect"),)),))
