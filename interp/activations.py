"""Collect stage: residual-stream activations at one hookpoint, written as safetensors shards.

The forward pass stops after the hooked layer (`stop_at_layer`), so deeper layers cost nothing.
Shard format: see interp/shards.py.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pyarrow as pa
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from interp.artifacts import ArtifactRef, ArtifactStore, artifact_key, write_parquet_atomic
from interp.config import RunConfig
from interp.corpus import corpus_identity, token_stream
from interp.doc_split import write_documents
from interp.finite import require_finite
from interp.models import SubjectModel, load_model, model_identity

log = logging.getLogger(__name__)

STAGE = "collect"
VERSION = "1"


def extra_hookpoints(cfg: RunConfig) -> list[str]:
    """Hookpoints collected beside model.hookpoint: a transcoder's target."""
    target = cfg.sae.transcode_target
    return [target] if target and cfg.sae.path is None else []


def collect_key(cfg: RunConfig) -> str:
    config = {"model": model_identity(cfg.model), "hookpoint": cfg.model.hookpoint,
              "corpus": corpus_identity(cfg.corpus), "shard_sequences": cfg.collect.shard_sequences,
              "dtype": cfg.collect.dtype}
    if extra := extra_hookpoints(cfg):
        config["extra_hookpoints"] = extra  # absent when empty, so plain-SAE keys are unchanged
    return artifact_key(STAGE, VERSION, config)


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


def _collect_into(cfg: RunConfig, model: SubjectModel, tokens: torch.Tensor, out: Path,
                  progress: bool) -> list[dict]:
    hook, extra = cfg.model.hookpoint, extra_hookpoints(cfg)
    shards = []
    per_shard = cfg.collect.shard_sequences
    # Cast on the way to disk only: the model computes in its own dtype, readers upcast to fp32.
    dtype = getattr(torch, cfg.collect.dtype)
    bar = tqdm(total=tokens.numel(), unit="tok", desc="collect", disable=not progress)
    for first in range(0, len(tokens), per_shard):
        chunk = tokens[first:first + per_shard]
        runs = [model.run_to_hooks(chunk[b:b + cfg.collect.batch_size], [hook, *extra])
                for b in range(0, len(chunk), cfg.collect.batch_size)]
        tensors = {"acts": torch.cat([_to_storage(r[hook], dtype, hook) for r in runs]).contiguous(),
                   "tokens": chunk.to(torch.int32).contiguous()}
        for h in extra:  # transcoder targets, read by interp.sae.data as acts.<hookpoint>
            tensors[f"acts.{h}"] = torch.cat([_to_storage(r[h], dtype, h) for r in runs]).contiguous()
        name = f"shard-{len(shards):05d}.safetensors"
        for h in [hook, *extra]:
            require_finite(tensors["acts" if h == hook else f"acts.{h}"],
                           f"collect: activations at {h} for {name} (sequences {first}.."
                           f"{first + len(chunk) - 1}, batches of {cfg.collect.batch_size})",
                           f"the subject model produced them in {cfg.model.dtype}; try "
                           f"model.dtype float32 or check the model")
        save_file(tensors, str(out / name))
        shards.append({"file": name, "first_seq": first, "n_seq": len(chunk)})
        bar.update(chunk.numel())
    bar.close()
    return shards


def collect(cfg: RunConfig, *, model: SubjectModel | None = None, progress: bool = False) -> ArtifactRef:
    """Run the subject model over the corpus and store activations at cfg.model.hookpoint."""
    def fill(tmp: Path) -> dict:
        started = time.time()
        subject = model or load_model(cfg.model, cfg.home)
        for h in [cfg.model.hookpoint, *extra_hookpoints(cfg)]:
            subject.check_hookpoint(h)
        tokens, doc_starts = token_stream(cfg.corpus, subject.tokenizer)
        log.info("collecting %d sequences x %d tokens at %s", len(tokens), tokens.shape[1],
                 cfg.model.hookpoint)
        _write_sequences(tokens, subject.tokenizer, tmp)
        write_documents(doc_starts, tokens.shape[0] * (tokens.shape[1] - 1), tmp)
        t0 = time.time()
        shards = _collect_into(cfg, subject, tokens, tmp, progress)
        return {"model": model_identity(cfg.model), "hookpoint": cfg.model.hookpoint,
                "extra_hookpoints": extra_hookpoints(cfg), "dtype": cfg.collect.dtype,
                "d_model": subject.hook_width(cfg.model.hookpoint),  # hook_z: heads x d_head
                "n_heads": subject.n_heads,  # head attribution of hook_z SAEs
                "seq_len": int(tokens.shape[1]), "n_sequences": int(len(tokens)),
                "n_documents": len(doc_starts),
                "corpus": corpus_identity(cfg.corpus), "shards": shards,
                "tokens_per_s": round(tokens.numel() / (time.time() - t0), 1),
                "seconds": round(time.time() - started, 2)}
    return ArtifactStore(cfg.home).build_once(STAGE, collect_key(cfg), fill)
