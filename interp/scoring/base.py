"""The scorer seam: what a scorer returns, and the heavy resources scorers share within one stage run.

A scorer turns (explanation, a latent's mined examples) into per-example predictions and per-latent
metrics. LLM scorers use the stage's client; embedding, surprisal and intervention also need the
MiniLM embedder, the subject model or the SAE, which `Resources` loads lazily, once per stage run
(never per latent), and guards with a lock because the torch work runs in worker threads.
"""
from __future__ import annotations

import asyncio
import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq

from interp.config import RunConfig
from interp.mine.examples import Example


@dataclass(frozen=True)
class Prediction:
    """One judged example. `prob` is the scorer's continuous score: P(1) for LLM judges, cosine
    similarity (embedding), loss reduction in nats/token (surprisal), max simulated activation / 10
    (simulation); None when the scorer has none or the answer failed."""

    seq_id: int
    start: int
    quantile: int
    label: int
    prediction: int | None
    prob: float | None

    def row(self) -> dict[str, Any]:
        return {"seq_id": self.seq_id, "start": self.start, "quantile": self.quantile,
                "label": self.label, "prediction": self.prediction, "prob": self.prob}


@dataclass
class Outcome:
    """A scorer's result for one latent: metrics (classification_metrics keys, maybe corr)."""

    predictions: list[Prediction]
    metrics: dict[str, Any]
    model: str
    prompt_hash: str | None = None
    errors: list[str] = field(default_factory=list)   # reasons of failed examples (deduplicated)


class Scorer(Protocol):
    """One scoring method. `prompts` names its templates (hashed into the stage key); `needs`
    says which held-out windows it cannot score without ('positives', 'negatives')."""

    uses_subject_model: bool
    headline: str  # the `scores` column that sums this scorer up (browser, report, views)
    needs: tuple[str, ...]

    def prompts(self, cfg: RunConfig) -> tuple[str, ...]: ...

    async def run(self, ctx: ScoreContext, latent: int, explanation: str,
                  examples: list[Example]) -> Outcome: ...


def unscorable_reason(needs: tuple[str, ...], examples: list[Example]) -> str | None:
    """Why a latent cannot be scored by a scorer that `needs` these held-out windows, or None.

    Positives are held-out quantile windows, negatives held-out non-activating ones (the
    windows the item builders draw from). Scoring without them would give, e.g., a balanced
    accuracy of None from negatives only, which dropped such latents out of the means silently.
    """
    test = [e for e in examples if e.split == "test"]
    if "positives" in needs and not any(e.kind == "quantile" for e in test):
        return ("no held-out activating windows (the latent's active windows all went to the "
                "explainer: see mine.n_top / mine.per_quantile)")
    if "negatives" in needs and not any(not e.active for e in test):
        return "no held-out non-activating windows"
    return None


class Resources:
    """Lazily loaded, shared heavy objects of one score-stage run."""

    def __init__(self, cfg: RunConfig, sae_dir: Path | None = None, sequences: Path | None = None):
        self.cfg = cfg
        self.sae_dir = Path(sae_dir) if sae_dir is not None else None      # the train artifact
        self.sequences = Path(sequences) if sequences is not None else None  # collect's token ids
        self.lock = threading.RLock()   # one torch job at a time (steering hooks are model state)
        self._cache: dict[str, Any] = {}

    def _get(self, name: str, load) -> Any:
        with self.lock:
            if name not in self._cache:
                self._cache[name] = load()
            return self._cache[name]

    def embedder(self):
        """texts -> unit-normalised MiniLM embeddings [n, 384] on the configured device."""
        from interp.embed import embed_texts

        device = self.cfg.score.embedding.device or self.cfg.model.device
        return functools.partial(embed_texts, device=device)

    def subject_model(self):
        from interp.models import load_model

        return self._get("model", lambda: load_model(self.cfg.model, self.cfg.home))

    def _require(self, path: Path | None, what: str) -> Path:
        if path is None:
            raise RuntimeError(f"this scorer needs {what} (surprisal, intervention)")
        return path

    def sae(self):
        """The SAE whose latents were mined (from its train artifact)."""
        from interp.sae import load_sae

        def load():
            return load_sae(self._require(self.sae_dir, "the SAE"), device=self.cfg.model.device)
        return self._get("sae", load)

    def token_ids(self) -> dict[int, list[int]]:
        """seq_id -> token ids of the collected sequences (windows are re-run through the model)."""
        def load():
            path = self._require(self.sequences, "the collected token ids")
            t = pq.read_table(path, columns=["seq_id", "tokens"])
            return dict(zip(t.column("seq_id").to_pylist(), t.column("tokens").to_pylist()))
        return self._get("token_ids", load)

    def window_ids(self, e: Example) -> list[int]:
        return self.token_ids()[e.seq_id][e.start:e.start + len(e.tokens)]


@dataclass
class ScoreContext:
    """What a scorer may use: the config, the LLM client (None if not needed) and the resources."""

    cfg: RunConfig
    llm: Any
    resources: Resources

    async def compute(self, fn, *args):
        """Run blocking torch work in a thread, one job at a time, so LLM requests keep flowing."""
        def locked():
            with self.resources.lock:
                return fn(*args)
        return await asyncio.to_thread(locked)
