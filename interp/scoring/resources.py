"""The heavy objects scorers share within one score-stage run: the MiniLM embedder, the subject
model, the SAE and the collected token ids. Loaded lazily, once per stage run (never per latent),
and guarded by a lock because the torch work runs in worker threads."""
from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from interp.config import RunConfig
from interp.mine.examples import Example


class StageResources:
    """Lazily loaded, shared heavy objects of one score-stage run (the `Resources` protocol of
    interp/scoring/base.py): `sae_dir` is the train artifact, `sequences` collect's token ids."""

    def __init__(self, cfg: RunConfig, sae_dir: Path | None = None, sequences: Path | None = None):
        self.cfg = cfg
        self.sae_dir = Path(sae_dir) if sae_dir is not None else None
        self.sequences = Path(sequences) if sequences is not None else None
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
