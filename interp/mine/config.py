"""The mine stage's config: which example windows are kept per latent, and the miner's budget."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp.config_base import _Strict


class MineConfig(_Strict):
    """Example mining over the activation shards."""

    window: int = Field(32, ge=4, description="Tokens per example window (seq_len-1 must be a multiple).")
    n_top: int = Field(20, gt=0, description="Top-activating windows kept per latent (from train "
        "documents: the explainer's examples).")
    n_quantiles: int = Field(5, gt=0, description="Activation quantile bins for stratified samples.")
    per_quantile: int = Field(4, gt=0, description="Held-out windows sampled per quantile bin "
        "(bins over the latent's windows in test documents).")
    n_random: int = Field(20, ge=0, description="Random non-activating windows per latent "
        "(ceil half from train documents, the rest from test documents).")
    n_top_test: int = Field(0, ge=0, description="Held-out strong windows (kind 'top', split "
        "test): the strongest windows of test documents that no quantile row took (SAEBench "
        "scores 2 top windows; the saebench scorer shows them). 0 = none.")
    n_iw: int = Field(0, ge=0, description="Importance-weighted windows per latent (kind 'iw'): "
        "drawn without replacement with probability proportional to the squared window maximum "
        "among windows no other kind took (SAEBench's sampling; interp/mine/iw.py). 0 = none.")
    n_iw_test: int = Field(0, ge=0, description="How many of the n_iw windows are held out "
        "(split test, from test documents, for the saebench scorer); the rest come from train "
        "documents and go to the explainer (train_set top_iw).")
    train_per_quantile: int = Field(0, ge=0, description="Windows per quantile bin put in the "
        "train split (for explain.train_set quantile/mixed), drawn from train documents with bins "
        "over the latent's train windows; the test set does not depend on this value.")
    negatives: Literal["random", "similar", "neighbours"] = Field("random", description="Hard "
        "negatives mined besides the random ones (kind 'hard', split by their document like "
        "random ones): 'similar' = non-activating windows nearest to the latent's top windows by "
        "MiniLM embedding, 'neighbours' = strongest mined windows of the latents with the most "
        "similar decoder directions that do not activate this one; 'random' = none.")
    n_hard: int = Field(20, gt=0, description="Hard negatives per latent (when negatives != random).")
    n_neighbours: int = Field(8, gt=0, description="Decoder-cosine neighbours whose top windows "
                              "are candidates (negatives = neighbours).")
    embed_pool: int = Field(20_000, gt=0, description="At most this many windows (a seeded "
        "sample) are embedded as candidates for 'similar' negatives; embedded once per mine run.")
    test_fraction: float = Field(0.5, gt=0, lt=1, description="Share of the corpus tokens whose "
        "documents are held out: whole documents (seeded by mine.seed) go to train or test, so "
        "no held-out window shares a document with a window the explainer sees. 0.5 leaves the "
        "explainer's top windows and the held-out quantile samples equally many documents.")
    hist_bins: int = Field(32, ge=4, description="Bins of the per-latent activation histogram.")
    batch_size: int = Field(64, gt=0, description="Sequences encoded at once (fewer when the "
        "encoder's dense [tokens, latents] pre-activations would not fit the memory budget).")
    seed: int = Field(0, description="Seed for quantile and negative sampling.")
    threads: int | None = Field(1, gt=0, description="torch intra-op threads while mining "
        "(restored after); None = leave torch's setting. 1 is fastest on a shared 2-core CPU: the "
        "sorts and scatters of the selection ran 3-8x slower with 2 threads under contention.")
    memory_budget_mb: int | None = Field(None, gt=0, description="Peak resident memory of the "
        "process while mining, in MiB: the encoder's chunks and the latent ranges are sized to what "
        "is left of it when mining starts and again after the encode pass, and freed heap is "
        "handed back near it (output identical at any budget). A bound when it leaves about 180 "
        "MiB above what the process holds when mining starts; tighter, a target (262,144 tokens, "
        "2,304 latents, ~300 MiB held: budget 600 -> peak 558, 500 -> 484, 450 -> 465). None = a "
        "512 MiB working set on top of what is in use.")
