-- Migration 1: the catalogue's base tables, keyed by provenance so models, hookpoints, SAEs and
-- explainer versions live side by side. Rows come only from published artifacts (storage/catalog.py).
-- IF NOT EXISTS throughout: catalogues made before schema_version existed adopt it unchanged.

CREATE TABLE IF NOT EXISTS published (stage VARCHAR, key VARCHAR, published_at DOUBLE, PRIMARY KEY (stage, key));

CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, started_at DOUBLE, finished_at DOUBLE, config_yaml VARCHAR,
    collect_key VARCHAR, sae_key VARCHAR, mine_key VARCHAR, explain_key VARCHAR, score_key VARCHAR,
    seconds JSON, cached JSON);

CREATE TABLE IF NOT EXISTS saes (
    sae_key VARCHAR PRIMARY KEY, collect_key VARCHAR, model VARCHAR, hookpoint VARCHAR,
    architecture VARCHAR, d_in INTEGER, num_latents INTEGER, k INTEGER, tokens_seen BIGINT,
    fvu DOUBLE, l0 DOUBLE, dead_frac DOUBLE, ce_loss_recovered DOUBLE, kl_div DOUBLE,
    metrics JSON, created_at DOUBLE);

CREATE TABLE IF NOT EXISTS sequences (
    collect_key VARCHAR, seq_id INTEGER, tokens INTEGER[], token_str VARCHAR[]);

CREATE TABLE IF NOT EXISTS latents (
    sae_key VARCHAR, mine_key VARCHAR, latent INTEGER, n_active_tokens BIGINT, frequency DOUBLE,
    n_active_windows BIGINT, max_act FLOAT, mean_act FLOAT, dead BOOLEAN, hist BIGINT[]);

CREATE TABLE IF NOT EXISTS example_rows (
    sae_key VARCHAR, mine_key VARCHAR, collect_key VARCHAR, latent INTEGER, kind VARCHAR,
    split VARCHAR, rank INTEGER, quantile SMALLINT, seq_id INTEGER, start SMALLINT,
    max_act FLOAT, acts FLOAT[]);

CREATE TABLE IF NOT EXISTS explanations (
    explanation_id VARCHAR PRIMARY KEY, explain_key VARCHAR, mine_key VARCHAR, sae_key VARCHAR,
    latent INTEGER, text VARCHAR, status VARCHAR, error VARCHAR, raw VARCHAR,
    explainer_model VARCHAR, prompt_name VARCHAR, prompt_hash VARCHAR, settings_hash VARCHAR,
    n_examples INTEGER, prompt_tokens BIGINT, completion_tokens BIGINT, latency_s DOUBLE,
    attempts INTEGER, created_at DOUBLE);

CREATE TABLE IF NOT EXISTS scores (
    score_id VARCHAR PRIMARY KEY, score_key VARCHAR, explain_key VARCHAR, sae_key VARCHAR,
    explanation_id VARCHAR, latent INTEGER, scorer VARCHAR, scorer_model VARCHAR,
    prompt_hash VARCHAR, settings_hash VARCHAR, status VARCHAR, n_examples INTEGER,
    n_failed INTEGER, balanced_accuracy DOUBLE, precision DOUBLE, recall DOUBLE, f1 DOUBLE,
    auc DOUBLE, accuracy DOUBLE, corr DOUBLE, created_at DOUBLE);

CREATE TABLE IF NOT EXISTS predictions (
    score_id VARCHAR, explanation_id VARCHAR, latent INTEGER, scorer VARCHAR, seq_id INTEGER,
    start INTEGER, quantile INTEGER, label TINYINT, prediction TINYINT,
    prob DOUBLE);  -- the scorer's continuous score: P(1), cosine similarity, loss reduction, ...

CREATE TABLE IF NOT EXISTS llm_calls (
    artifact_stage VARCHAR, artifact_key VARCHAR, sae_key VARCHAR, call_id VARCHAR,
    stage VARCHAR, latent BIGINT, model VARCHAR, attempt INTEGER, status VARCHAR, error VARCHAR,
    prompt_tokens BIGINT, completion_tokens BIGINT, latency_s DOUBLE, created_at DOUBLE);

-- Best decoder-cosine match of each latent of sae_a among the latents of sae_b (same model and
-- hookpoint), from a match artifact (interp.analysis.matching); one row per direction.
CREATE TABLE IF NOT EXISTS latent_matches (
    sae_a VARCHAR, latent_a INTEGER, sae_b VARCHAR, latent_b INTEGER, cosine FLOAT);
