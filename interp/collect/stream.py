"""Streamed activations: a tokens-only collect artifact (collect.store 'tokens') read as if it held
dense shards, each shard's activations recomputed by the subject model when it is read.

The forward pass replays collect exactly (batches of the artifact's collect.batch_size within each
shard, cast to its collect.dtype: interp.collect.stage.shard_activations), so every reader (mining,
an imported SAE's metrics, dark_matter) gets the values a dense artifact would have stored, while
disk holds 4 bytes per token instead of 2 x d_model, and memory one shard at a time.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from interp.collect.shards import ActivationShards
from interp.collect.stage import shard_activations
from interp.config import ModelConfig, RunConfig
from interp.finite import require_finite
from interp.models import SubjectModel, load_model, model_identity

log = logging.getLogger(__name__)


class StreamedShards(ActivationShards):
    """A tokens-only collect artifact whose `load_shard` runs the subject model (loaded on first
    use) up to the artifact's hookpoint; readers see the ActivationShards interface unchanged."""

    def __init__(self, path: Path, model_cfg: ModelConfig, home: Path,
                 model: SubjectModel | None = None):
        super().__init__(path)
        if self.store != "tokens":
            raise ValueError(f"collect artifact {self.path} stores its activations "
                             f"(store {self.store!r}); read it with ActivationShards")
        if self.meta.get("extra_hookpoints"):
            raise ValueError(f"collect artifact {self.path}: streamed activations cover "
                             f"model.hookpoint only, not {self.meta['extra_hookpoints']}")
        want = {"model": model_identity(model_cfg), "hookpoint": model_cfg.hookpoint}
        have = {"model": self.meta.get("model"), "hookpoint": self.hookpoint}
        if want != have:
            raise ValueError(f"collect artifact {self.path} (collect.store 'tokens') was "
                             f"collected for {have}, but model.* says {want}: the stream must "
                             f"run the same model at the same hookpoint; collect again")
        self._cfg, self._home, self._model = model_cfg, Path(home), model
        self.threads = torch.get_num_threads()  # collect's setting, restored around each forward
        self.forward_seconds = 0.0
        self.forward_tokens = 0

    def model(self) -> SubjectModel:
        if self._model is None:
            self._model = load_model(self._cfg, self._home)
            self._model.check_hookpoint(self.hookpoint)
        return self._model

    def load_shard(self, i: int, dtype: torch.dtype | None = torch.float32
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(acts [n_seq, seq_len, d], tokens [n_seq, seq_len] int64) of shard i, the activations
        computed now, rounded to the artifact's collect.dtype, returned in `dtype` (None: that)."""
        tokens = self.load_tokens(i)
        model, t0 = self.model(), time.perf_counter()
        threads = torch.get_num_threads()  # the miner runs its own steps on mine.threads
        try:
            torch.set_num_threads(self.threads)
            acts = shard_activations(model, tokens, [self.hookpoint], int(self.meta["batch_size"]),
                                     getattr(torch, self.meta["dtype"]))[self.hookpoint]
        finally:
            torch.set_num_threads(threads)
        self.forward_seconds += time.perf_counter() - t0
        self.forward_tokens += tokens.numel()
        require_finite(acts, f"streamed activations of {self.path / self.shards[i].file}",
                       f"the subject model produced them in {self._cfg.dtype}; try model.dtype "
                       f"float32 or check the model")
        return (acts if dtype is None else acts.to(dtype)), tokens


def open_activations(cfg: RunConfig, path: Path, model: SubjectModel | None = None
                     ) -> ActivationShards:
    """The activations of a collect artifact: read from disk (collect.store 'dense'), or
    recomputed shard by shard by cfg.model's forward pass (collect.store 'tokens')."""
    shards = ActivationShards(path)
    if shards.store == "dense":
        return shards
    log.info("collect artifact %s holds token ids only: activations come from the model", path)
    return StreamedShards(path, cfg.model, cfg.home, model)
