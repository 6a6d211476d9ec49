-- Migration 6: the dark-matter analysis of each SAE (interp/analysis/dark_matter.py) and, for SAEs of
-- attention head outputs (hook_z), each latent's share of squared decoder norm per head.
CREATE TABLE IF NOT EXISTS sae_error_stats (
    sae_key VARCHAR, dark_matter_key VARCHAR, hookpoint VARCHAR, eval_split VARCHAR,
    fit_tokens INTEGER, eval_tokens INTEGER, ridge DOUBLE, r2_error DOUBLE, r2_norm DOUBLE,
    nonlinear_frac DOUBLE, nonlinear_fvu DOUBLE, error_fvu DOUBLE, mean_error_norm DOUBLE,
    mean_nonlinear_norm DOUBLE);
CREATE TABLE IF NOT EXISTS token_errors (
    sae_key VARCHAR, seq_id INTEGER, position INTEGER, split VARCHAR, error_norm DOUBLE,
    nonlinear_norm DOUBLE, x_norm DOUBLE, rel_error DOUBLE);
CREATE TABLE IF NOT EXISTS head_shares (sae_key VARCHAR, latent INTEGER, head INTEGER, share DOUBLE);
