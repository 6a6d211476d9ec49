-- Migration 3: MiniLM embeddings of ok explanations for the browser's semantic search, inserted
-- by publish from an explain artifact's explanation_embeddings.parquet (publish loads no model).
CREATE TABLE IF NOT EXISTS explanation_embeddings (
    explanation_id VARCHAR PRIMARY KEY, model VARCHAR, embedding FLOAT[384]);
